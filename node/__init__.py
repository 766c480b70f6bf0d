"""The security node: detection, modes, IP lists, attack store and console."""

from wallarm_wire.version import __version__

__all__ = ["__version__"]
