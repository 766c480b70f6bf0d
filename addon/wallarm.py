"""The `mitmdump -s addon/wallarm.py` entry: a thin shim over the installed package.

mitmproxy executes `-s` scripts outside `sys.modules`, so the real code lives in the
installed `addon` package and this file only exposes it.
"""

from addon.connector import WallarmConnector

# One addon: mitmproxy walks every addon of the chain for every hook of every flow, so the log
# format option is the connector's (addon/logformat.py, applied before the connector's own options).
addons = [WallarmConnector()]
