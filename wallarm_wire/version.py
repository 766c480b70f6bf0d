"""The project's version: the one place it is written.

pyproject.toml reads it (`[tool.setuptools.dynamic]`), the connector sends it to the node
(`X-Wallarm-Connector-Version`) and `wallarm-node --version` prints it.
"""

__version__ = "0.1.0"
