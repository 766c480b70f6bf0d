"""Attack detection: request in, findings out. Entry point: `node.detect.engine.Engine`.

The package's modules may be compiled to C extensions (setup.py, mypyc; docs/decisions.md):
Python imports an extension before the source beside it. The build records the SHA-256 of
each source it compiled (_native.json); when the extensions here were built from other
sources than these (a source edited since `make native`, or no record), the whole package is
imported from its sources instead, with a warning: compiled modules call each other
directly, so one stale module cannot be swapped for its source alone.
WALLARM_DETECT_SOURCES=1 imports the sources in any case (the tests that patch the modules'
internals run so: a compiled module calls its functions directly, past any patch).
A helper written in C (_b64scan.c, _sqltok.c; recorded like the modules) runs only beside
compiled modules (c_helper); with the sources, its module uses the Python reference beside it.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import logging
import os
import sys
from pathlib import Path
from types import ModuleType

_HERE = Path(__file__).resolve().parent
RECORD = "_native.json"


def _compiled() -> list[str]:
    """The modules of this package that have an extension beside their source."""
    return sorted({p.name.split(".", 1)[0] for suffix in importlib.machinery.EXTENSION_SUFFIXES
                   for p in _HERE.glob(f"*{suffix}")})


def stale_modules(compiled: list[str]) -> list[str]:
    """Of the `compiled` modules, those whose source differs from the one their build recorded."""
    try:
        record = json.loads((_HERE / RECORD).read_text())
    except (OSError, ValueError):
        return compiled
    stale = []
    for name in compiled:
        source = _HERE / f"{name}.py"
        if not source.exists():
            source = _HERE / f"{name}.c"  # a helper written in C (_b64scan.c)
        digest = hashlib.sha256(source.read_bytes()).hexdigest() if source.exists() else None
        if digest is None or record.get(name) != digest:
            stale.append(name)
    return stale


class _SourceFinder:
    """Finds node.detect's modules as their sources, ahead of the extensions beside them."""

    @staticmethod
    def find_spec(fullname: str, path: object = None, target: object = None) -> importlib.machinery.ModuleSpec | None:
        prefix, _, name = fullname.rpartition(".")
        if prefix != __name__ or not (_HERE / f"{name}.py").exists():
            return None
        return importlib.util.spec_from_file_location(fullname, _HERE / f"{name}.py")


def _import_sources_if_stale() -> bool:
    """Whether the compiled modules are the ones imported."""
    compiled = _compiled()
    if not compiled:
        return False
    if os.environ.get("WALLARM_DETECT_SOURCES", "") not in ("", "0"):
        sys.meta_path.insert(0, _SourceFinder())
        return False
    stale = stale_modules(compiled)
    if not stale:
        return True
    logging.getLogger(__name__).warning(
        "node/detect: compiled modules built from other sources (%s); importing the sources "
        "instead (`make native` rebuilds them)", ", ".join(stale))
    sys.meta_path.insert(0, _SourceFinder())
    return False


COMPILED = _import_sources_if_stale()


def c_helper(name: str) -> ModuleType | None:
    """The helper written in C `name` (node/detect/<name>.c) when the package runs compiled and
    it was built with it; None when the sources run (make test's second pass) or it is missing:
    its caller then runs the Python reference beside it."""
    if not COMPILED:
        return None
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ImportError:
        return None
