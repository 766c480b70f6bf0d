"""The `mitmdump -s addon/wallarm.py` entry: a thin shim over the installed package.

mitmproxy executes `-s` scripts outside `sys.modules`, so the real code lives in the
installed `addon` package and this file only exposes it.
"""

from addon.connector import WallarmConnector

addons = [WallarmConnector()]
