"""The security node: detection, modes, IP lists, attack store and console."""

__version__ = "0.1.0"
