"""The `mitmdump -s addon/wallarm.py` entry: a thin shim over the installed package.

mitmproxy executes `-s` scripts outside `sys.modules`, so the real code lives in the
installed `addon` package and this file only exposes it.
"""

from addon.connector import WallarmConnector
from addon.logformat import LogFormat

# LogFormat first: the connector's own first lines (config loaded) already come out in the chosen format
addons = [LogFormat(), WallarmConnector()]
