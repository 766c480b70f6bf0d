"""The project's own labelled corpus (scripts/owncorpus, issue 14 item 3).

The generator is deterministic; every class has >= 200 distinct attacks; every placement x
encoding renders a request that the node's HTTP/1.1 parser and Werkzeug (behind h11, the way a
Python backend reads it) both accept, with the payload arriving in that placement, as the
node's field extraction and as Werkzeug's args / form / headers / JSON / XML / raw body; benign
look-alikes exist in every placement; bench_detect --own reports its table. No detection rates
are asserted here.
"""

from __future__ import annotations

import html
import io
import json
import sys
import urllib.parse
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import h11
import pytest
from werkzeug.wrappers import Request

from node.detect.request import extract
from tests.support.inprocess_http1 import feed
from tests.support.procs import REPO
from wallarm_wire.protocol import RequestMessage

sys.path.insert(0, str(REPO / "scripts"))
import gen_corpus  # noqa: E402
from owncorpus import render  # noqa: E402
from owncorpus.benign import Benign  # noqa: E402
from owncorpus.encoders import ENCODERS_ORDER  # noqa: E402
from owncorpus.grammar import DOCUMENT, STRUCT, Attack  # noqa: E402
from owncorpus.placements import (  # noqa: E402
    ENCODINGS_BY_PLACEMENT, HEADER, HTMLFORM, JSONBODY, JSONREQUEST, MULTIPART, PLACEMENTS_ORDER, RAWREQUEST,
    SOAPBODY, URLPARAM, URLPATH, USERAGENT, XMLBODY, Rendered,
)

REQUIRED_CLASSES = {"sqli", "xss", "rce", "ssti", "ptrav", "ssrf", "nosqli", "ldapi", "xml"}
# every (placement, encoding) pair the corpus renders
COMBOS = [(p, e) for p in PLACEMENTS_ORDER for e in ENCODINGS_BY_PLACEMENT[p]]


@pytest.fixture(scope="module")
def attacks() -> dict[str, list[Attack]]:
    return render.class_attacks()


@pytest.fixture(scope="module")
def benign() -> list[tuple[dict, Benign, Rendered]]:
    return list(render.benign_records())


# ---------------------------------------------------------------------------- generator


def test_same_seed_same_corpus_other_seed_other_corpus():
    first = list(render.records(seed=3, per_class=30))
    assert first == list(render.records(seed=3, per_class=30))
    assert first != list(render.records(seed=4, per_class=30))
    assert len({r["id"] for r in first}) == len(first)


def test_gen_corpus_writes_the_same_bytes_for_the_same_seed(tmp_path: Path):
    a, b = tmp_path / "a.jsonl.gz", tmp_path / "b.jsonl.gz"
    counts = gen_corpus.write(a, 5, 20)
    gen_corpus.write(b, 5, 20)
    assert a.read_bytes() == b.read_bytes()
    assert counts["attack"] > 20 * len(REQUIRED_CLASSES) * len(COMBOS) * 0.9 and counts["benign"] >= 1500
    rec = json.loads(__import__("gzip").decompress(a.read_bytes()).splitlines()[0])
    assert set(rec) == {"id", "source", "label", "class", "method", "uri", "headers", "body_b64", "placement", "encoding"}
    assert rec["source"] == "own"


def test_every_class_has_at_least_200_distinct_attacks(attacks):
    assert REQUIRED_CLASSES <= set(attacks)
    for cls, items in attacks.items():
        assert len({a.payload for a in items}) >= 200, cls
        assert all(a.cls == cls and a.payload for a in items)


def test_nosql_operators_and_xml_documents_have_their_native_shapes(attacks):
    assert sum(a.shape == STRUCT for a in attacks["nosqli"]) >= 100
    assert all(a.shape == DOCUMENT and a.payload.startswith(a.prolog) for a in attacks["xml"])


def test_every_placement_and_encoding_is_rendered_for_every_class():
    seen = Counter((rec["class"], rec["placement"], rec["encoding"])
                   for rec, _, _ in render.attack_records(per_class=30))
    for cls in render.CLASSES:
        for p, e in COMBOS:
            # a placement may refuse an attack it cannot carry (a line break in a header), never most of them
            assert seen[(cls, p, e)] >= 15, (cls, p, e)


def test_benign_look_alikes_in_every_placement(benign):
    per_placement = Counter(rec["placement"] for rec, _, _ in benign)
    assert sum(per_placement.values()) >= 1500
    for placement in PLACEMENTS_ORDER:
        assert per_placement[placement] >= 40, placement
    assert {rec["label"] for rec, _, _ in benign} == {"benign"}
    assert len({rec["encoding"] for rec, _, _ in benign}) == len(ENCODERS_ORDER)


# ---------------------------------------------------------------------------- parsers


def raw_request(r: Rendered) -> bytes:
    head = f"{r.method} {r.target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in r.headers) + "\r\n"
    return head.encode("ascii") + r.body


def node_parse(raw: bytes) -> RequestMessage:
    seen, transport = feed(raw)
    assert seen, f"the node's parser did not accept it: {bytes(transport.out[:80])!r}"
    m = seen[0]
    return RequestMessage(m.method, m.target, [(k.encode(), v.encode("latin-1")) for k, v in m.headers.items()], m.body)


def werkzeug_parse(raw: bytes) -> Request:
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(raw)
    head, body = None, b""
    while True:
        event = conn.next_event()
        if isinstance(event, h11.Request):
            head = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            break
        else:
            raise AssertionError(f"h11 did not accept it: {event!r}")
    assert head is not None
    path, _, query = head.target.decode("ascii").partition("?")
    environ = {
        "REQUEST_METHOD": head.method.decode(), "SCRIPT_NAME": "",
        "PATH_INFO": urllib.parse.unquote_to_bytes(path).decode("latin-1"), "QUERY_STRING": query,
        "SERVER_NAME": "upstream", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body), "wsgi.errors": sys.stderr, "wsgi.version": (1, 0),
        "wsgi.multithread": False, "wsgi.multiprocess": False, "wsgi.run_once": True,
    }
    for name, value in head.headers:
        key = name.decode().upper().replace("-", "_")
        if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            environ[key] = value.decode("latin-1")
        else:
            environ["HTTP_" + key] = value.decode("latin-1")
    return Request(environ)


def _xml_text_of(body: bytes, name: str) -> str:
    root = ET.fromstring(body)
    for el in list(root.iter())[1:]:  # the payload's element, not the root (which may share its name)
        if el.tag == name or el.tag.endswith("}" + name):
            return el.text or ""
    raise AssertionError(f"no <{name}> in {body[:120]!r}")


def check_werkzeug(placement: str, r: Rendered, req: Request) -> None:
    """The payload arrives where the placement says, as Werkzeug reads the request."""
    arrives = r.arrives
    if isinstance(arrives, str) and "\ufffd" in arrives:
        # not UTF-8 once percent-decoded (overlong `%c0%af`): Werkzeug keeps those escapes as
        # they are; the payload is there, under its name
        if placement == URLPATH:
            assert req.path.startswith("/api/v1/files/")
        else:
            assert r.key in (req.args if placement == URLPARAM else req.form)
        return
    if isinstance(arrives, list):  # bracketed keys
        multi = req.args if placement == URLPARAM else req.form
        for key, value in arrives:
            assert value in multi.getlist(key), (key, value, multi)
    elif placement == URLPATH:
        assert req.path == "/api/v1/files/" + arrives
    elif placement == URLPARAM:  # once: a repeated name is read as its last value by PHP
        assert req.args.getlist(r.key) == [arrives]
    elif placement in (HEADER, USERAGENT):
        assert req.headers[r.key] == arrives
    elif placement in (HTMLFORM, MULTIPART):
        assert req.form.getlist(r.key) == [arrives]
    elif placement == JSONREQUEST:
        assert req.get_json()[r.key] == arrives
    elif placement == JSONBODY:
        assert req.get_json() == arrives
    elif placement in (SOAPBODY, XMLBODY):
        if r.key:
            assert _xml_text_of(req.get_data(), r.key) == arrives
        else:  # a whole document (its DTD is not for a test's parser to load): carried as sent
            assert arrives in req.get_data(as_text=True)
    else:
        assert placement == RAWREQUEST
        assert req.get_data(as_text=True) == arrives


NODE_KINDS = {URLPATH: {"path"}, URLPARAM: {"query", "key"}, HEADER: {"header"}, USERAGENT: {"header"},
              HTMLFORM: {"form", "key"}, MULTIPART: {"multipart", "key"}, JSONREQUEST: {"json", "key"},
              JSONBODY: {"json", "key"}, SOAPBODY: {"xml", "body", "doctype"}, XMLBODY: {"xml", "body", "doctype"},
              RAWREQUEST: {"body"}}


def _strings(obj: object) -> list[str]:
    if isinstance(obj, dict):
        return [s for k, v in obj.items() for s in [k, *_strings(v)]]
    if isinstance(obj, list):
        return [s for v in obj for s in _strings(v)]
    return [obj] if isinstance(obj, str) else []


def _json_object(text: str) -> dict | None:
    try:
        obj = json.loads(text)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


def check_node(placement: str, r: Rendered, msg: RequestMessage) -> None:
    """The payload arrives in the placement as the node's field extraction reads it."""
    values = {html.unescape(v).strip() for kind, _, v in extract(msg).fields if kind in NODE_KINDS[placement]}
    values |= {v for kind, _, v in extract(msg).fields if kind in NODE_KINDS[placement]}
    arrives = r.arrives
    if placement == RAWREQUEST and _json_object(arrives) is not None:
        # a text/plain body that is JSON: the node reads it as JSON too (as lenient backends do)
        values |= {v for kind, _, v in extract(msg).fields if kind in ("json", "key")}
        arrives = _json_object(arrives)
    if isinstance(arrives, list):
        wanted = [s for kv in arrives for s in kv if s]
    elif isinstance(arrives, str):
        wanted = [arrives]
    else:
        wanted = _strings(arrives)
    for text in wanted:
        if "\ufffd" in text:  # not UTF-8 once decoded: each side keeps the bytes its own way
            continue
        if placement == URLPATH or (placement in (SOAPBODY, XMLBODY) and not r.key):
            assert any(text.strip() in v for v in values), (text, values)
        else:
            assert text.strip() in values or text in values, (text, values)


def check_both(what: str, placement: str, r: Rendered) -> None:
    raw = raw_request(r)
    try:
        check_node(placement, r, node_parse(raw))
        check_werkzeug(placement, r, werkzeug_parse(raw))
    except AssertionError as exc:
        raise AssertionError(f"{what}: {raw[:300]!r}") from exc


def _one_per_class(attacks: dict[str, list[Attack]], placement: str, encoding: str):
    """Per class: its first attack, and its first of each other shape (a NoSQL value, ...)."""
    rng = __import__("random").Random(f"test:{placement}:{encoding}")
    for cls, items in attacks.items():
        firsts: dict[str, Attack] = {}
        for a in items:
            firsts.setdefault(a.shape, a)
        for a in firsts.values():
            ctx = render.context(rng, a.params)
            r = render.render_attack(a, placement, encoding, ctx)
            if r is None:  # this attack cannot travel here: take the first that can
                r = next(x for x in (render.render_attack(b, placement, encoding, ctx) for b in items) if x)
            yield cls, r


@pytest.mark.parametrize(("placement", "encoding"), COMBOS, ids=[f"{p}-{e}" for p, e in COMBOS])
def test_attacks_arrive_in_their_placement_for_node_and_werkzeug(attacks, placement, encoding):
    for cls, r in _one_per_class(attacks, placement, encoding):
        check_both(f"{cls} {placement} {encoding}", placement, r)


def test_benign_requests_parse_and_arrive_in_their_placement(benign):
    by_combo: dict[tuple[str, str, str], Rendered] = {}
    for rec, item, r in benign:
        by_combo.setdefault((item.group, rec["placement"], rec["encoding"]), r)
    for (group, placement, encoding), r in by_combo.items():
        check_both(f"{group} {placement} {encoding}", placement, r)


# ---------------------------------------------------------------------------- report


def test_bench_detect_own_reports_class_placement_encoding_and_benign(tmp_path: Path):
    import bench_detect

    out, md = tmp_path / "own.json", tmp_path / "own.md"
    assert bench_detect.main(["--own", "--own-per-cell", "1", "--no-progress", "--json", str(out),
                              "--own-markdown", str(md)]) == 0
    table = md.read_text()
    assert all(f"| {cls} | {p} |" in table for cls in render.CLASSES for p in PLACEMENTS_ORDER)
    own = json.loads(out.read_text())["engines"]["node"]["own"]
    assert set(own["cells"]) == set(render.CLASSES)
    for cls, by_p in own["cells"].items():
        assert set(by_p) == set(PLACEMENTS_ORDER), cls
        for p, by_e in by_p.items():
            assert set(by_e) == set(ENCODINGS_BY_PLACEMENT[p]), (cls, p)
            assert all(c["attacks"] == 1 and 0 <= c["blocked"] <= 1 and not c["flagged"] for c in by_e.values())
    assert set(own["benign"]) == set(PLACEMENTS_ORDER)
    assert own["benign_total"]["benign"] >= 1500
    assert own["rule"] == {"min_cell": 20, "target": 0.98, "benign_target": 0.005}


def test_the_payload_name_is_never_repeated_in_the_request(attacks):
    """JSON parsers and PHP read a repeated name's last value: an ordinary field of the same
    name after the payload would drop it (`{"lang": <payload>, "lang": "en"}`)."""
    rng = __import__("random").Random(1)
    for items in attacks.values():
        attack = next(a for a in items if a.shape != STRUCT)  # operator objects name their own keys
        for name in attack.params:
            ctx = render.context(rng, (name,))
            for placement in (URLPARAM, HTMLFORM, JSONREQUEST):
                r = render.render_attack(attack, placement, "Plain", ctx)
                req = werkzeug_parse(raw_request(r))
                if placement == JSONREQUEST:
                    assert req.get_data(as_text=True).count(f'"{name}":') == 1, (name, r.body)
                else:
                    assert len((req.args if placement == URLPARAM else req.form).getlist(name)) == 1, name


def test_gen_corpus_shows_a_record_as_its_http_request(capsys):
    rec = next(render.records(per_class=5))
    assert gen_corpus.show([rec["id"]], render.DEFAULT_SEED, 5) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"# {rec['id']}\n{rec['method']} {rec['uri']} HTTP/1.1\n")
    assert gen_corpus.show(["own:attack:no-such-record"], render.DEFAULT_SEED, 5) == 1


def test_bench_detect_own_classes_keeps_those_attacks_and_every_benign_request(tmp_path: Path):
    import bench_detect

    out = tmp_path / "own.json"
    assert bench_detect.main(["--own", "--own-classes", "ssti,xml", "--own-per-cell", "1", "--no-progress",
                              "--json", str(out)]) == 0
    own = json.loads(out.read_text())["engines"]["node"]["own"]
    assert set(own["cells"]) == {"ssti", "xml"}
    assert own["benign_total"]["benign"] >= 1500
