"""Exceptions ("not an attack here"): the model validates itself, the policy's table matches
findings, the config and the CLI read and write them (a real SQLite store, the real engine)."""

from __future__ import annotations

import asyncio
import io

import pytest
import yaml

from node.detect.engine import Engine
from node.exceptions_cli import main as exceptions_main
from node.policy import ExceptionTable
from node.rules import RuleError
from node.rules.exceptions import ExceptionRule, exception_from_mapping, exception_to_mapping, exceptions_from_list
from node.settings import NodeSettings, SettingsError, load_settings
from node.store.base import Hit
from node.store.sqlite import SQLiteStore
from wallarm_wire.protocol import RequestMessage

SQLI = Hit("sqli", "query.q", "sqli.structure.breakout-tautology", "1' OR 1=1--", 10)


def rule(i: int = 1, **kw) -> ExceptionRule:  # noqa: ANN003
    return ExceptionRule(**{"attack_type": "sqli", **kw, "id": i})


# ---------------------------------------------------------------------------- the model


def test_normalises_what_it_keeps() -> None:
    r = ExceptionRule(attack_type="SQLi", host="Shop.Example.com:8443", path_prefix="/a/%62/../c",
                      location=" query.q ", comment="  search box ")
    assert (r.attack_type, r.host, r.path_prefix, r.location, r.comment) == ("sqli", "shop.example.com", "/a/c",
                                                                               "query.q", "search box")
    assert r.created_by == "unknown" and r.created_at > 0


@pytest.mark.parametrize("any_value", [None, "", "  ", "*"])
def test_blank_or_star_means_any(any_value) -> None:  # noqa: ANN001
    r = ExceptionRule(rule_id="xss.script-tag", host=any_value, path_prefix=any_value, location=any_value)
    assert (r.host, r.path_prefix, r.location) == (None, None, None)
    assert ExceptionRule(rule_id="x", path_prefix="/").path_prefix is None  # "/" is every path


@pytest.mark.parametrize("fields,field", [
    ({}, "exception"),
    ({"rule_id": "a", "attack_type": "sqli"}, "exception"),
    ({"rule_id": "a b"}, "rule_id"),
    ({"attack_type": "partial_inspection"}, "exception"),
    ({"rule_id": "partial.fields"}, "exception"),
    ({"rule_id": "a", "host": "not a host"}, "host"),
    ({"rule_id": "a", "path_prefix": "api"}, "path_prefix"),
    ({"rule_id": "a", "path_prefix": "/a b"}, "path_prefix"),
    ({"rule_id": "a", "path_prefix": "/" + "x" * 2000}, "path_prefix"),
    ({"rule_id": "a", "location": "query q"}, "location"),
    ({"rule_id": "a", "location": ".q"}, "location"),
    ({"rule_id": "a", "location": "query."}, "location"),
    ({"rule_id": "a", "comment": "x" * 501}, "comment"),
    ({"rule_id": "a", "comment": 5}, "comment"),
    ({"rule_id": "a", "created_at": -1}, "created_at"),
    ({"rule_id": "a", "created_at": True}, "created_at"),
])
def test_refuses_what_it_cannot_use(fields, field) -> None:  # noqa: ANN001
    with pytest.raises(RuleError) as err:
        ExceptionRule(**fields)
    assert err.value.field == field


def test_mapping_round_trip_and_unknown_fields() -> None:
    r = exception_from_mapping({"rule_id": "xss.js-sink", "host": "a.example", "location": "json.a.b",
                                "comment": "cms"}, created_by="config")
    assert r.created_by == "config"
    again = exception_from_mapping(exception_to_mapping(r))
    assert again.key == r.key and again.created_at == r.created_at and again.created_by == "config"
    with pytest.raises(RuleError, match="unknown field"):
        exception_from_mapping({"rule_id": "a", "id": 3})
    with pytest.raises(RuleError, match="must be an object"):
        exception_from_mapping(["rule_id", "a"])


def test_a_list_is_validated_whole_and_without_duplicates() -> None:
    with pytest.raises(RuleError, match=r"exceptions\[1\]: rule_id"):
        exceptions_from_list([{"rule_id": "ok"}, {"rule_id": "not ok"}])
    with pytest.raises(RuleError, match=r"exceptions\[1\] is the same as exceptions\[0\]"):
        exceptions_from_list([{"attack_type": "sqli", "host": "A.example"}, {"attack_type": "SQLI", "host": "a.example:80"}])
    with pytest.raises(RuleError, match="must be a list"):
        exceptions_from_list({"rule_id": "a"})


# ---------------------------------------------------------------------------- matching


@pytest.mark.parametrize("kw,host,path,hit,excepted", [
    ({}, "any.example", "/x", SQLI, True),
    ({"attack_type": None, "rule_id": SQLI.rule_id}, "a", "/", SQLI, True),
    ({"attack_type": None, "rule_id": "sqli.other"}, "a", "/", SQLI, False),
    ({"attack_type": "xss"}, "a", "/", SQLI, False),
    ({"host": "shop.example"}, "shop.example", "/", SQLI, True),
    ({"host": "shop.example"}, "api.shop.example", "/", SQLI, False),
    ({"path_prefix": "/search"}, "a", "/search", SQLI, True),
    ({"path_prefix": "/search"}, "a", "/search/deep", SQLI, True),
    ({"path_prefix": "/search"}, "a", "/searchx", SQLI, False),
    ({"path_prefix": "/search/"}, "a", "/search", SQLI, True),
    ({"location": "query.q"}, "a", "/", SQLI, True),
    ({"location": "query"}, "a", "/", SQLI, True),  # a parent covers its children
    ({"location": "query.qq"}, "a", "/", SQLI, False),
    ({"location": "query.q.x"}, "a", "/", SQLI, False),
    ({"location": "json.q"}, "a", "/", SQLI, False),
])
def test_what_an_exception_covers(kw, host, path, hit, excepted) -> None:  # noqa: ANN001
    table = ExceptionTable([rule(**kw)])
    kept, gone = table.apply(host, path, [hit], 10)
    assert (not kept, bool(gone)) == (excepted, excepted)
    if excepted:
        assert gone[0].hit == hit and gone[0].exception_id == 1


def test_no_exceptions_returns_the_findings_untouched() -> None:
    hits = [SQLI]
    kept, gone = ExceptionTable([]).apply("a", "/", hits, 10)
    assert kept is hits and gone == []


def test_the_rest_of_a_group_stays_an_attack_only_if_it_reaches_the_threshold() -> None:
    # the real engine's findings for a script tag: several xss rules at one location, scored together
    engine = Engine()
    det = engine.analyze_request(RequestMessage("GET", "/p?x=%3Cscript%3Ealert(1)%3C/script%3E", [(b"Host", b"a")], b""))
    hits = list(det.attacks)
    by_rule = {h.rule_id: h for h in hits}
    assert {"xss.script-tag", "xss.js-sink", "xss.breakout"} <= set(by_rule), hits
    strong = ExceptionTable([rule(attack_type=None, rule_id="xss.script-tag")])
    kept, gone = strong.apply("a", "/p", hits, det.threshold)
    assert sum(h.score for h in kept) >= det.threshold  # js-sink + breakout still agree: an attack
    assert [g.hit.rule_id for g in gone] == ["xss.script-tag"]
    # a rule that the others needed: without it the rest is below the threshold, so not an attack
    weak_rest = [by_rule["xss.js-sink"], by_rule["xss.breakout"]]  # two weak rules that agree
    only_two = ExceptionTable([rule(attack_type=None, rule_id="xss.js-sink")])
    kept, gone = only_two.apply("a", "/p", weak_rest, det.threshold)
    assert kept == [] and {g.hit.rule_id for g in gone} == {h.rule_id for h in weak_rest}
    assert all(g.exception_id == 1 for g in gone)


def test_findings_of_other_locations_stay() -> None:
    other = Hit("sqli", "query.id", "sqli.structure.breakout-tautology", "1 OR 1=1", 10)
    kept, gone = ExceptionTable([rule(location="query.q")]).apply("a", "/", [SQLI, other], 10)
    assert kept == [other] and [g.hit for g in gone] == [SQLI]


# ---------------------------------------------------------------------------- config and CLI


def test_the_config_reads_an_exceptions_list(tmp_path) -> None:  # noqa: ANN001
    cfg = tmp_path / "node.yaml"
    cfg.write_text("exceptions:\n  - {attack_type: sqli, path_prefix: /search, location: query.q}\n"
                   "  - {rule_id: xss.js-sink, host: cms.example}\n")
    s = load_settings(cfg)
    assert [e.key for e in s.exceptions] == [(None, "sqli", None, "/search", "query.q"),
                                             ("xss.js-sink", None, "cms.example", None, None)]
    assert {e.created_by for e in s.exceptions} == {"config"}
    cfg.write_text("exceptions:\n  - {attack_type: sqli, where: /x}\n")
    with pytest.raises(SettingsError, match=r"exceptions.*unknown field\(s\): where"):
        load_settings(cfg)
    assert NodeSettings().exceptions == []


def test_export_then_import_into_another_store(tmp_path, capsys) -> None:  # noqa: ANN001
    src, dst = tmp_path / "a.db", tmp_path / "b.db"
    cfg = tmp_path / "node.yaml"
    cfg.write_text("exceptions:\n  - {attack_type: sqli, path_prefix: /search, location: query.q, comment: box}\n"
                   "  - {rule_id: xss.js-sink, host: cms.example}\n")
    assert exceptions_main(["--db", str(src), "import", str(cfg)]) == 0
    assert "2 exception(s) added" in capsys.readouterr().err
    out = io.StringIO()
    assert exceptions_main(["--db", str(src), "export"], out) == 0
    exported = yaml.safe_load(out.getvalue())
    assert [e.get("rule_id") or e.get("attack_type") for e in exported["exceptions"]] == ["sqli", "xss.js-sink"]
    assert exported["exceptions"][0]["comment"] == "box"
    assert exported["exceptions"][0]["created_by"].startswith("import by ")
    dump = tmp_path / "export.yaml"
    dump.write_text(out.getvalue())
    assert exceptions_main(["--db", str(dst), "import", str(dump)]) == 0
    out2 = io.StringIO()
    assert exceptions_main(["--db", str(dst), "export"], out2) == 0
    assert yaml.safe_load(out2.getvalue()) == exported  # who and when travel with them
    # again: nothing new; with --replace, what the file does not list goes
    dump.write_text(yaml.safe_dump({"exceptions": exported["exceptions"][:1]}))
    assert exceptions_main(["--db", str(dst), "import", "--replace", str(dump)]) == 0
    assert "0 exception(s) added, 1 already there, 1 deleted" in capsys.readouterr().err


def test_an_invalid_import_changes_nothing(tmp_path, capsys) -> None:  # noqa: ANN001
    db = tmp_path / "n.db"
    good = tmp_path / "good.yaml"
    good.write_text("exceptions: [{rule_id: keep.me}]\n")
    assert exceptions_main(["--db", str(db), "import", str(good)]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("exceptions:\n  - {rule_id: new.one}\n  - {rule_id: new.two, host: 'bad host'}\n")
    assert exceptions_main(["--db", str(db), "import", "--replace", str(bad)]) == 2
    assert "exceptions[1]: host" in capsys.readouterr().err
    (tmp_path / "none.yaml").write_text("mode: block\n")
    assert exceptions_main(["--db", str(db), "import", str(tmp_path / "none.yaml")]) == 2
    assert [e.rule_id for e in asyncio.run(stored(db))] == ["keep.me"]


async def stored(db) -> list[ExceptionRule]:  # noqa: ANN001
    store = SQLiteStore(db)
    await store.open()
    try:
        return await store.list_exceptions()
    finally:
        await store.close()
