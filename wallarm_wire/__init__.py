"""The wire contract shared by the connector (`addon/`) and the node (`node/`).

It sits at the bottom of the import graph: it imports neither side, both import it.
"""
