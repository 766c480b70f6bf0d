"""Wallarm-style connector for mitmproxy: consults a security node for every request."""

__version__ = "0.1.0"
