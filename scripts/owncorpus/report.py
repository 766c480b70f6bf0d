"""The own corpus's report: attacks blocked per class x placement x encoding, benign blocked
per placement (issue 14: every cell with >= 20 cases at >= 98%, benign blocked <= 0.5%).

Engine-neutral: it takes the records' labels, classes, placements and encodings and which
were blocked; scripts/bench_detect.py calls it once per engine."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Protocol

from owncorpus.encoders import ENCODERS_ORDER
from owncorpus.placements import PLACEMENTS_ORDER

MIN_CELL = 20  # cases a cell needs before its rate is judged
TARGET = 0.98  # attacks blocked a judged cell must reach
BENIGN_TARGET = 0.005  # benign blocked at most
MISSED_SHOWN = 3  # ids of missed attacks kept per flagged cell, to look into


class Labelled(Protocol):
    id: str
    label: str
    cls: str
    placement: str
    encoding: str


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _counts() -> dict:
    return {"n": 0, "blocked": 0}


def own_report(records: Sequence[Labelled], blocked: Sequence[bool]) -> dict:
    cells: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(_counts)))
    missed: dict[str, list[str]] = defaultdict(list)
    benign: dict = defaultdict(_counts)
    for rec, b in zip(records, blocked):
        if rec.label == "attack":
            c = cells[rec.cls][rec.placement][rec.encoding]
            c["n"] += 1
            c["blocked"] += b
            if not b:
                missed[f"{rec.cls}/{rec.placement}/{rec.encoding}"].append(rec.id)
        else:
            benign[rec.placement]["n"] += 1
            benign[rec.placement]["blocked"] += b
    out_cells: dict = {}
    flagged: list[str] = []
    judged = 0
    for cls in sorted(cells):
        out_cells[cls] = {}
        for placement in _ordered(cells[cls], PLACEMENTS_ORDER):
            out_cells[cls][placement] = {}
            for encoding in _ordered(cells[cls][placement], ENCODERS_ORDER):
                c = cells[cls][placement][encoding]
                rate = _rate(c["blocked"], c["n"])
                is_judged = c["n"] >= MIN_CELL
                judged += is_judged
                flag = is_judged and rate is not None and rate < TARGET
                if flag:
                    flagged.append(f"{cls}/{placement}/{encoding}")
                out_cells[cls][placement][encoding] = {"attacks": c["n"], "blocked": c["blocked"], "rate": rate,
                                                       "flagged": flag}
    benign_total = {"benign": sum(c["n"] for c in benign.values()),
                    "blocked": sum(c["blocked"] for c in benign.values())}
    benign_total["rate_blocked"] = _rate(benign_total["blocked"], benign_total["benign"])
    return {
        "cells": out_cells,
        "classes": _margin(cells, lambda cls, p, e: cls),
        "placements": {p: m for p, m in sorted(_margin(cells, lambda cls, p, e: p).items(),
                                                key=lambda kv: _order_key(kv[0], PLACEMENTS_ORDER))},
        "encodings": _margin(cells, lambda cls, p, e: e),
        "class_placement": _nest(_margin(cells, lambda cls, p, e: (cls, p))),
        "class_encoding": _nest(_margin(cells, lambda cls, p, e: (cls, e))),
        "judged_cells": judged,
        "flagged_cells": flagged,
        "missed_examples": {k: missed[k][:MISSED_SHOWN] for k in flagged},
        "benign": {p: {"benign": benign[p]["n"], "blocked": benign[p]["blocked"],
                       "rate_blocked": _rate(benign[p]["blocked"], benign[p]["n"])}
                   for p in _ordered(benign, PLACEMENTS_ORDER)},
        "benign_total": benign_total,
        "rule": {"min_cell": MIN_CELL, "target": TARGET, "benign_target": BENIGN_TARGET},
    }


def _order_key(key: str, order: Sequence[str]) -> tuple[int, str]:
    return (order.index(key), "") if key in order else (len(order), key)


def _ordered(keys: object, order: Sequence[str]) -> list[str]:
    known = [k for k in order if k in keys]  # type: ignore[operator]
    return known + sorted(k for k in keys if k not in order)  # type: ignore[union-attr]


def _nest(flat: dict) -> dict:
    out: dict = defaultdict(dict)
    for (a, b), v in flat.items():
        out[a][b] = v
    return dict(out)


def _margin(cells: dict, key) -> dict:
    acc: dict = defaultdict(_counts)
    for cls, by_p in cells.items():
        for p, by_e in by_p.items():
            for e, c in by_e.items():
                a = acc[key(cls, p, e)]
                a["n"] += c["n"]
                a["blocked"] += c["blocked"]
    return {k: {"attacks": v["n"], "blocked": v["blocked"], "rate": _rate(v["blocked"], v["n"])}
            for k, v in sorted(acc.items())}


# ---------------------------------------------------------------------------- text


def _pct(rate: float | None, flagged: bool = False) -> str:
    if rate is None:
        return "      -"
    return f"{100 * rate:6.1f}" + ("!" if flagged else " ")


SHORT = {"Base64Flat": "B64Flat", "JSUnicode": "JSUni", "XMLEntity": "XMLEnt", "HTMLMultipartForm": "Multipart"}


def format_own(name: str, rep: dict) -> str:
    """The table as text: per class, a placement x encoding matrix of attacks blocked (%),
    `!` on a cell with >= MIN_CELL cases under TARGET; then benign blocked per placement."""
    lines = [f"own corpus, {name}: attacks blocked % per class x placement x encoding "
             f"('!': >= {MIN_CELL} cases and < {100 * TARGET:.0f}%)"]
    encodings = _ordered({e for by_p in rep["cells"].values() for by_e in by_p.values() for e in by_e}, ENCODERS_ORDER)
    head = f"{'':20}" + "".join(f"{SHORT.get(e, e):>8}" for e in encodings) + f"{'n':>7}"
    for cls, by_p in rep["cells"].items():
        m = rep["classes"][cls]
        lines.append(f"{cls} - {100 * m['rate']:.2f}% of {m['attacks']}" if m["rate"] is not None else cls)
        lines.append(head)
        for placement, by_e in by_p.items():
            row = f"  {SHORT.get(placement, placement):18}"
            for e in encodings:
                c = by_e.get(e)
                row += " " + (_pct(c["rate"], c["flagged"]) if c else "      -")
            row += f"{sum(c['attacks'] for c in by_e.values()):7}"
            lines.append(row)
    lines.append("by encoding: " + ", ".join(f"{e} {100 * m['rate']:.2f}%" for e, m in
                                             ((e, rep["encodings"][e]) for e in encodings)))
    lines.append("by placement: " + ", ".join(f"{SHORT.get(p, p)} {100 * m['rate']:.2f}%"
                                              for p, m in rep["placements"].items()))
    lines.append(f"cells judged (>= {MIN_CELL} cases): {rep['judged_cells']}, under {100 * TARGET:.0f}%: "
                 f"{len(rep['flagged_cells'])}")
    bt = rep["benign_total"]
    lines.append(f"benign blocked: {bt['blocked']} of {bt['benign']}"
                 + (f" ({100 * bt['rate_blocked']:.2f}%; target <= {100 * BENIGN_TARGET:.1f}%)" if bt["benign"] else ""))
    lines.append("  " + ", ".join(f"{SHORT.get(p, p)} {c['blocked']}/{c['benign']}" for p, c in rep["benign"].items()))
    return "\n".join(lines)


def markdown_own(rep: dict) -> str:
    """The same table in Markdown: a class x encoding summary, a class x placement summary, and
    every class x placement row with its encodings (**bold**: a judged cell under TARGET)."""
    encodings = _ordered({e for by_p in rep["cells"].values() for by_e in by_p.values() for e in by_e}, ENCODERS_ORDER)
    placements = list(rep["placements"])

    def cell(c: dict | None) -> str:
        if not c:
            return "-"
        text = f"{100 * c['rate']:.1f}"
        return f"**{text}**" if c.get("flagged") else text

    out = ["| class | all | " + " | ".join(encodings) + " |", "|---|---:|" + "---:|" * len(encodings)]
    for cls in rep["cells"]:
        out.append(f"| {cls} | {cell(rep['classes'][cls])} | "
                   + " | ".join(cell(rep["class_encoding"][cls].get(e)) for e in encodings) + " |")
    out += ["", "| class | " + " | ".join(SHORT.get(p, p) for p in placements) + " |",
            "|---|" + "---:|" * len(placements)]
    for cls in rep["cells"]:
        out.append(f"| {cls} | " + " | ".join(cell(rep["class_placement"][cls].get(p)) for p in placements) + " |")
    out += ["", "| class | placement | " + " | ".join(encodings) + " |", "|---|---|" + "---:|" * len(encodings)]
    for cls, by_p in rep["cells"].items():
        for p, by_e in by_p.items():
            out.append(f"| {cls} | {p} | " + " | ".join(cell(by_e.get(e)) for e in encodings) + " |")
    bt = rep["benign_total"]
    out += ["", "| benign | " + " | ".join(SHORT.get(p, p) for p in rep["benign"]) + " | all |",
            "|---|" + "---:|" * (len(rep["benign"]) + 1),
            "| blocked | " + " | ".join(f"{c['blocked']}/{c['benign']}" for c in rep["benign"].values())
            + f" | {bt['blocked']}/{bt['benign']} ({100 * (bt['rate_blocked'] or 0):.2f}%) |"]
    return "\n".join(out) + "\n"
