#!/usr/bin/env python3
"""Move a config between a real Kong (decK YAML) and this connector.

    # this connector's state as decK YAML (from its Admin API, or from its declarative file)
    python scripts/deck_convert.py to-deck --admin http://127.0.0.1:8001 [--token T] [-o kong.yaml] [--with-id]
    python scripts/deck_convert.py to-deck --file kong.json [-o kong.yaml]
    # decK YAML (e.g. `deck gateway dump` of a real Kong) as the connector's declarative file
    python scripts/deck_convert.py from-deck kong.yaml -o kong.json

`from-deck` validates with the connector's declarative model and writes atomically under the
same lock as the Admin API, so it can target the file a running connector watches (the change
is applied within the watcher's poll). What cannot be carried is listed on stderr.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from addon.admin_store import encode_document, is_yaml  # noqa: E402
from addon.atomic_file import locked, write_atomically  # noqa: E402
from addon.config import ConfigError  # noqa: E402
from addon.deck import entities_from_admin, entities_from_file, from_deck, to_deck  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    out = sub.add_parser("to-deck", help="the connector's state as decK YAML")
    src = out.add_mutually_exclusive_group(required=True)
    src.add_argument("--admin", help="Admin API base URL, e.g. http://127.0.0.1:8001")
    src.add_argument("--file", type=Path, help="the connector's declarative file")
    out.add_argument("--token", help="Kong-Admin-Token for an Admin API off loopback")
    out.add_argument("--with-id", action="store_true", help="keep ids and timestamps (decK's --with-id)")
    out.add_argument("-o", "--output", type=Path, help="write here instead of stdout")
    inp = sub.add_parser("from-deck", help="decK YAML as the connector's declarative file")
    inp.add_argument("deck_file", type=Path)
    inp.add_argument("-o", "--output", type=Path, required=True, help="declarative file to write (.json/.yaml)")
    a = ap.parse_args(argv)

    try:
        if a.command == "to-deck":
            entities = entities_from_admin(a.admin, a.token) if a.admin else entities_from_file(a.file)
            text, notes = to_deck(entities, with_ids=a.with_id)
            if a.output:
                write_atomically(a.output, text.encode())
            else:
                sys.stdout.write(text)
        else:
            base = a.output.resolve().parent
            doc, notes = from_deck(a.deck_file.read_text("utf-8"), base, source=str(a.deck_file))
            with locked(a.output):
                write_atomically(a.output, encode_document(doc, is_yaml(a.output)))
    except (ConfigError, ValueError, OSError) as e:
        print(f"deck_convert: {e}", file=sys.stderr)
        return 1
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
