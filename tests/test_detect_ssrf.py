"""SSRF (node/detect/ssrf.py): internal and metadata addresses in every IPv4/IPv6 spelling,
dangerous schemes; public URLs, developer callbacks and bare addresses (X-Forwarded-For) pass."""

from __future__ import annotations

import pytest

from node.detect.engine import Engine
from node.detect.ssrf import classify_host, detect_ssrf
from tests.support.grammar import PLACES, ipv4_spellings, placed, ssrf_attacks
from tests.support.grammar_checks import assert_all_blocked, assert_benign_pass
from wallarm_wire.protocol import RequestMessage


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine()


@pytest.mark.parametrize("where", PLACES)
def test_internal_urls_blocked(engine: Engine, where: str) -> None:
    assert_all_blocked(engine, ssrf_attacks(), where)


@pytest.mark.parametrize("encoding", ["base64", "url-double"])
def test_internal_urls_blocked_encoded(engine: Engine, encoding: str) -> None:
    assert_all_blocked(engine, ssrf_attacks(), "query", encoding)


@pytest.mark.parametrize("where", PLACES)
def test_look_alikes_pass(engine: Engine, where: str) -> None:
    assert_benign_pass(engine, "ssrf", where)


@pytest.mark.parametrize("address", ["169.254.169.254", "127.0.0.1", "10.1.2.3", "192.168.0.1"])
def test_every_spelling_reads_as_the_address(address: str) -> None:
    for spelling in ipv4_spellings(address):
        verdict, usual = classify_host(spelling)
        assert verdict in ("metadata", "internal"), spelling
        assert usual == (spelling == address) or address == "169.254.169.254", spelling


def test_public_hosts_are_not_internal() -> None:
    for host in ("8.8.8.8", "134744072", "0x08080808", "example.com", "[2001:4860:4860::8888]"):
        assert classify_host(host)[0] is None, host


def test_forwarded_for_is_no_url(engine: Engine) -> None:
    msg = RequestMessage("GET", "/", [(b"Host", b"app.example"), (b"X-Forwarded-For", b"10.0.0.1, 127.0.0.1")])
    assert not engine.analyze_request(msg).is_attack
    assert detect_ssrf("http://localhost:3000/callback") is None
    assert engine.analyze_request(placed("http://0251.0376.0251.0376/latest/", "query")).is_attack


@pytest.mark.parametrize("url", ["http://[::]:80/", "http://[0000::1]:80/", "http://0.0.0.0:8000/",
                                 "http://0/", "http://[0:0:0:0:0:0:0:1]/"])
def test_unspecified_and_respelled_loopback_block(url: str) -> None:
    assert detect_ssrf(url) == "obfuscated-internal"
