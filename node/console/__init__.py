"""The Attacks console: pages, static files and the JSON API on the node's console listener."""

from node.console.app import setup_console
from node.console.auth import resolve_console_token

__all__ = ["resolve_console_token", "setup_console"]
