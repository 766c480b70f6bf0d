"""The corpus: every class's attacks in every placement x encoding, and the benign
look-alikes, as records in the ../shared/corpus format plus `placement` and `encoding`.

Deterministic: one seed fixes every draw (each class and each context stream has its own
generator seeded from it, so a change to one grammar does not reshuffle the others)."""

from __future__ import annotations

import base64
import random
from collections.abc import Iterator

from owncorpus import benign, ldapi, log4shell, nosqli, ptrav, rce, sqli, ssrf, ssti, xml, xss
from owncorpus.encoders import ENCODERS
from owncorpus.grammar import DOCUMENT, STRUCT, Attack
from owncorpus.placements import (
    ENCODINGS_BY_PLACEMENT, PLACEMENTS_ORDER, TEXT_RENDERERS, Context, Rendered, document_native, struct_native,
)

DEFAULT_SEED = 14
ATTACKS_PER_CLASS = 240
SOURCE = "own"
CLASS_MODULES = (sqli, xss, rce, ssti, ptrav, ssrf, nosqli, ldapi, xml, log4shell)
CLASSES = tuple(m.CLASS for m in CLASS_MODULES)

HOSTS = ("shop.example.com", "api.example.com", "app.example.org", "portal.example.net", "www.example.com")
USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4_1) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "okhttp/4.12.0", "python-requests/2.31.0", "curl/8.5.0",
)


def class_attacks(seed: int = DEFAULT_SEED, per_class: int = ATTACKS_PER_CLASS) -> dict[str, list[Attack]]:
    return {m.CLASS: m.attacks(random.Random(f"{seed}:{m.CLASS}"), per_class) for m in CLASS_MODULES}


def context(rng: random.Random, names: tuple[str, ...]) -> Context:
    return Context(host=rng.choice(HOSTS), user_agent=rng.choice(USER_AGENTS), name=rng.choice(names),
                   token=f"{rng.getrandbits(128):032x}")


def render_attack(attack: Attack, placement: str, encoding: str, ctx: Context) -> Rendered | None:
    """The request carrying `attack` in `placement` under `encoding`; None where the placement
    cannot carry it (a line break in a header, a NUL in XML)."""
    if attack.shape == STRUCT and attack.struct is not None:
        native = struct_native(attack.struct, placement, encoding, ctx)
        if native is not None:
            return native
    if attack.shape == DOCUMENT:
        native = document_native(attack.payload, attack.prolog, placement, encoding, ctx)
        if native is not None:
            return native
    return TEXT_RENDERERS[placement](ENCODERS[encoding](attack.payload), encoding, ctx)


def record(rid: str, label: str, cls: str, placement: str, encoding: str, r: Rendered) -> dict:
    return {"id": rid, "source": SOURCE, "label": label, "class": cls, "method": r.method, "uri": r.target,
            "headers": [[k, v] for k, v in r.headers], "body_b64": base64.b64encode(r.body).decode("ascii"),
            "placement": placement, "encoding": encoding}


def attack_records(seed: int = DEFAULT_SEED, per_class: int = ATTACKS_PER_CLASS,
                   classes: tuple[str, ...] | None = None) -> Iterator[tuple[dict, Attack, Rendered]]:
    for cls, attacks in class_attacks(seed, per_class).items():
        if classes and cls not in classes:
            continue
        rng = random.Random(f"{seed}:{cls}:context")
        for i, attack in enumerate(attacks):
            for placement in PLACEMENTS_ORDER:
                for encoding in ENCODINGS_BY_PLACEMENT[placement]:
                    ctx = context(rng, attack.params)
                    rendered = render_attack(attack, placement, encoding, ctx)
                    if rendered is not None:
                        rid = f"own:attack:{cls}:{placement}:{encoding}:{i:04d}"
                        yield record(rid, "attack", cls, placement, encoding, rendered), attack, rendered


def benign_records(seed: int = DEFAULT_SEED) -> Iterator[tuple[dict, benign.Benign, Rendered]]:
    rng = random.Random(f"{seed}:benign:context")
    for i, item in enumerate(benign.look_alikes(random.Random(f"{seed}:benign"))):
        ctx = context(rng, (item.name,))
        rendered = benign.render(item, ctx)
        if rendered is not None:
            rid = f"own:benign:{item.group}:{item.placement}:{item.encoding}:{i:05d}"
            yield record(rid, "benign", item.group, item.placement, item.encoding, rendered), item, rendered


def records(seed: int = DEFAULT_SEED, per_class: int = ATTACKS_PER_CLASS) -> Iterator[dict]:
    for rec, _, _ in attack_records(seed, per_class):
        yield rec
    for rec, _, _ in benign_records(seed):
        yield rec
