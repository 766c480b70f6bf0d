"""XML external entities and friends (node/detect/xxe.py): entities, external DTDs, XInclude
under any prefix, schema locations; SOAP envelopes, XHTML and Spring schemas pass."""

from __future__ import annotations

import pytest

from node.detect.engine import Engine
from node.detect.xxe import detect_xxe
from tests.support.grammar import PLACES, xxe_attacks
from tests.support.grammar_checks import assert_all_blocked, assert_benign_pass


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine()


@pytest.mark.parametrize("where", (*PLACES, "xmlbody"))
def test_declarations_blocked(engine: Engine, where: str) -> None:
    assert_all_blocked(engine, xxe_attacks(), where)


@pytest.mark.parametrize("where", (*PLACES, "xmlbody"))
def test_look_alikes_pass(engine: Engine, where: str) -> None:
    assert_benign_pass(engine, "xxe", where)


@pytest.mark.parametrize(("value", "rule"), [
    ('<!DOCTYPE a [<!ENTITY % p SYSTEM "http://x.example/a.dtd"> %p;]>', "parameter-entity"),
    ('<!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/hostname">]><a>&x;</a>', "external-entity"),
    ('<!DOCTYPE a SYSTEM "http://x.example/a.dtd"><a/>', "external-dtd"),
    ('<a xmlns:q="http://www.w3.org/2001/XInclude"><q:include href="/etc/hostname"/></a>', "xinclude"),
    ('<a xsi:schemaLocation="urn:x file:///etc/hostname"/>', "schema-location"),
    ('<a xsi:noNamespaceSchemaLocation="order.xsd"/>', None),
    ('<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" "http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd"><svg/>', None),
])
def test_rules(value: str, rule: str | None) -> None:
    assert detect_xxe(value) == rule
