#!/bin/sh
# Print the path of a Python >= 3.12 (mitmproxy 12 needs it; under 3.11 pip silently
# installs mitmproxy 11). Order: $PYTHON, python3.12..3.14, python3, then pyenv's versions.
# Exit 1 with a clear message when none is found.
ok() { [ -n "$1" ] && "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1; }

for c in "${PYTHON:-}" python3.12 python3.13 python3.14 python3; do
    [ -n "$c" ] || continue
    p=$(command -v "$c" 2>/dev/null) || continue
    # A pyenv shim for a version that is not selected fails the check above; skip it then.
    if ok "$p"; then "$p" -c 'import sys; print(sys.executable)'; exit 0; fi
done

# pyenv's versions, even when pyenv is not on PATH (CI runs with a minimal environment).
roots="${PYENV_ROOT:-} $(pyenv root 2>/dev/null || true) ${HOME:-/root}/.pyenv"
for root in $roots; do
    for v in "$root"/versions/3.12* "$root"/versions/3.13* "$root"/versions/3.14*; do
        p="$v/bin/python3"
        if [ -x "$p" ] && ok "$p"; then echo "$p"; exit 0; fi
    done
done

echo "error: no Python >= 3.12 found (tried \$PYTHON, python3.12-3.14, python3, pyenv in: $roots)." >&2
echo "       Install one (e.g. 'pyenv install 3.12'), or run: make PYTHON=/path/to/python3.12 ..." >&2
exit 1
