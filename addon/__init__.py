"""Wallarm-style connector for mitmproxy: consults a security node for every request."""

from wallarm_wire.version import __version__

__all__ = ["__version__"]
