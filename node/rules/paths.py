"""Request paths as the node's rules see them: the one place that says how a path is compared.

Overrides and exceptions match on this form, so `/%61dmin/../admin/x` cannot slip past an
`/admin` rule and a rule written with the path as the console shows it matches the request.
"""

from __future__ import annotations

import posixpath
from urllib.parse import unquote


def normalise_path(target: str) -> str:
    """The path part of a request target, percent-decoded with dot segments resolved."""
    path = target.split("?", 1)[0].split("#", 1)[0]
    if "://" in path:  # absolute-form target: keep only the path
        path = "/" + path.split("://", 1)[1].partition("/")[2]
    path = unquote(unquote(path), errors="replace")
    if not path.startswith("/"):
        path = "/" + path
    trailing = path.endswith("/") and len(path) > 1
    path = posixpath.normpath(path)
    if path.startswith("//"):  # normpath keeps a leading double slash (POSIX rule)
        path = "/" + path.lstrip("/")
    return path + "/" if trailing and path != "/" else path


def prefix_matches(prefix: str, path: str) -> bool:
    """Segment-aware: "/api" matches "/api" and "/api/x", not "/apix"."""
    if prefix.endswith("/"):
        return path.startswith(prefix) or path == prefix[:-1]
    return path == prefix or path.startswith(prefix + "/")
