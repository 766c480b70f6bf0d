"""Hostile inputs through a real node's endpoint (issue 13): every shape gets a verdict, fast,
and the time grows linearly with the size.

A CI-sized subset of scripts/bench_hostile.py: the key shapes at 64 KB and 1 MB, the best of
three tries (the machine is shared). Linear: the 1 MB time is at most 2 x 16 (the size ratio)
the 64 KB time plus a floor for fixed costs; an absolute ceiling catches what is simply slow.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.support.node import NodeClient, start_node
from tests.support.procs import REPO

sys.path.insert(0, str(REPO / "scripts"))
from bench_hostile import send  # noqa: E402
from hostile_shapes import build  # noqa: E402

pytestmark = pytest.mark.e2e

KEY_SHAPES = ["run:word", "run:a=b;", "run:percent", "run:secret-words", "nested:url", "deep:json-objects",
              "deep:xml", "many:form-fields", "many:headers", "padded:form", "padded:header", "padded:cookie",
              "padded:path", "many:repeated-names", "run:fullwidth-prose"]
SMALL, LARGE = 64 * 1024, 1024 * 1024
CEILING_S = 2.0  # issue 13's "no request over 2 s"; the bench's goal is 50 ms
FLOOR_S = 0.05  # fixed costs (sending 1 MB, scheduling) that do not scale with the shape


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory):
    node = start_node(tmp_path_factory.mktemp("hostile"), mode="block")
    try:
        with NodeClient(node) as c:
            yield c
    finally:
        node.stop()


def best_of(client: NodeClient, shape: str, size: int, tries: int = 3) -> float:
    msg = build(shape, size)
    best = float("inf")
    for _ in range(tries):
        status, seconds = send(client, msg)
        assert status in (200, 403), (shape, size, status)  # a verdict, not a refusal or a 5xx
        best = min(best, seconds)
    return best


@pytest.mark.parametrize("shape", KEY_SHAPES)
def test_hostile_shape_is_judged_in_linear_time(client: NodeClient, shape: str) -> None:
    small, large = best_of(client, shape, SMALL), best_of(client, shape, LARGE)
    assert large < CEILING_S, (shape, small, large)
    assert large <= 2 * (LARGE / SMALL) * small + FLOOR_S, (shape, small, large)


def test_the_issue_13_stall_is_gone(client: NodeClient) -> None:
    # ~8 KB form value `AAAA...;<script>alert(1);</script>` froze the node for 10 s (masking)
    for size in (8 * 1024, 64 * 1024):
        assert best_of(client, "run:word", size, tries=1) < CEILING_S
