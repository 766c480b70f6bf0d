"""Run by tests/test_system_imports.py with a fresh venv's Python: standard library only.

Imports every module of the installed packages and lists the third-party distributions their
source imports that the project's metadata does not declare. Prints one JSON object.
"""

from __future__ import annotations

import ast
import importlib
import json
import pkgutil
import re
import sys
from importlib import metadata
from pathlib import Path

PROJECT = "wallarm-mitmproxy-connector"
PACKAGES = ("wallarm_wire", "addon", "node")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared_runtime(dist: str = PROJECT) -> set[str]:
    """Distributions in Requires-Dist without an `extra ==` marker."""
    names = set()
    for line in metadata.requires(dist) or []:
        requirement, _, marker = line.partition(";")
        if "extra" in marker:
            continue
        match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
        if match:
            names.add(canonical(match.group(1)))
    return names


def third_party_imports(root: Path) -> dict[str, set[str]]:
    """{top-level module: files importing it} for absolute imports outside the stdlib and the project."""
    found: dict[str, set[str]] = {}
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in PACKAGES and top != "__future__":
                    found.setdefault(top, set()).add(str(path.relative_to(root.parent)))
    return found


def undeclared(imports: dict[str, set[str]], declared: set[str]) -> dict[str, str]:
    """{module: why} for each import whose distribution is not declared (or not installed at all)."""
    dists = metadata.packages_distributions()
    out = {}
    for module, files in sorted(imports.items()):
        owners = {canonical(d) for d in dists.get(module, [])}
        if not owners:
            out[module] = f"no installed distribution provides it (imported by {', '.join(sorted(files))})"
        elif not owners & declared:
            out[module] = f"from {', '.join(sorted(owners))}, not declared (imported by {', '.join(sorted(files))})"
    return out


def import_everything() -> dict[str, str]:
    """{module: error} for each module of PACKAGES that does not import (`__main__` is skipped:
    importing it runs the program)."""
    errors = {}
    for package in PACKAGES:
        pkg = importlib.import_module(package)
        for info in pkgutil.walk_packages(pkg.__path__, package + "."):
            if info.name.endswith(".__main__"):
                continue
            try:
                importlib.import_module(info.name)
            except Exception as err:  # noqa: BLE001 - each failure is reported, not raised
                errors[info.name] = f"{type(err).__name__}: {err}"
    return errors


def main() -> None:
    locations = {p: str(Path(importlib.import_module(p).__file__).parent) for p in PACKAGES}  # type: ignore[arg-type]
    imports: dict[str, set[str]] = {}
    for location in locations.values():
        for module, files in third_party_imports(Path(location)).items():
            imports.setdefault(module, set()).update(files)
    print(json.dumps({
        "locations": locations,
        "import_errors": import_everything(),
        "undeclared": undeclared(imports, declared_runtime()),
        "third_party": sorted(imports),
        "version": metadata.version(PROJECT),
    }))


if __name__ == "__main__":
    main()
