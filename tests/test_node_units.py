"""In-process tests of the node's small parts: policy, IP lists, pairing, masking, settings, metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from wallarm_wire.protocol import RequestMessage
from node.masking import MASK, mask_body, mask_header_value, mask_hits, mask_text, request_excerpt
from node.metrics import NodeMetrics
from node.pairing import Pairing, RequestSeen, ResponseSeen
from node.policy import IPLists, ModeTable, Policy
from node.rules.paths import normalise_path
from node.rules.modes import normalise_host
from node.settings import SettingsError, load_settings, parse_hostport
from node.store.base import Hit, IPEntry, ModeOverride, ModeSettings
from tests.support.metrics import samples

# ------------------------------------------------------------------------- policy


@pytest.mark.parametrize("mode,lists,attack,sync,want", [
    ("off", {"deny"}, True, True, (False, False, "mode off")),
    ("block", {"allow", "deny"}, True, True, (False, True, "allowlist")),  # allow beats deny
    ("block", {"allow"}, False, True, (False, False, "allowlist")),
    ("monitoring", {"deny"}, False, True, (True, True, "denylist")),
    ("safe_blocking", {"deny"}, False, True, (True, True, "denylist")),
    ("block", {"deny"}, False, False, (False, True, "denylist")),  # async: recorded, not blocked
    ("block", set(), False, True, (False, False, "")),
    ("block", set(), True, True, (True, True, "attack")),
    ("block", set(), True, False, (False, True, "attack")),
    ("monitoring", set(), True, True, (False, True, "attack")),
    ("safe_blocking", set(), True, True, (False, True, "attack")),
    ("safe_blocking", {"gray"}, True, True, (True, True, "attack")),
    ("safe_blocking", {"gray"}, False, True, (False, False, "")),
    ("block", {"gray"}, False, True, (False, False, "")),
])
def test_decision_table(mode, lists, attack, sync, want):
    d = Policy.decide(mode, frozenset(lists), attack, sync)
    assert (d.block, d.record, d.reason) == want
    assert d.stored_action == ("blocked" if d.block else "monitored")


def test_ip_lists_v4_v6_cidr_and_expiry():
    lists = IPLists([
        IPEntry("deny", "203.0.113.0/24"), IPEntry("deny", "2001:db8::/32"),
        IPEntry("gray", "198.51.100.7/32", expires_at=100.0), IPEntry("allow", "0.0.0.0/0"),
        IPEntry("allow", "10.0.0.1/32"),
    ])
    assert lists.lists_for("203.0.113.255", now=0) == {"deny", "allow"}
    assert lists.lists_for("2001:db8:ffff::1", now=0) == {"deny"}
    assert lists.lists_for("2001:db9::1", now=0) == frozenset()
    assert lists.lists_for("::ffff:203.0.113.1", now=0) == {"deny", "allow"}
    assert lists.lists_for("198.51.100.7", now=99) == {"gray", "allow"}
    assert lists.lists_for("198.51.100.7", now=100) == {"allow"}  # expired at its expiry time
    assert lists.lists_for("not an ip", now=0) == frozenset()


def test_mode_table_specificity():
    table = ModeTable(ModeSettings("block", [
        ModeOverride("monitoring", path_prefix="/api"),
        ModeOverride("off", host="API.Example.com"),
        ModeOverride("safe_blocking", host="api.example.com", path_prefix="/api/v2"),
        ModeOverride("monitoring", path_prefix="/api/v2/long"),
    ]))
    assert table.mode_for("other", "/api/x") == "monitoring"
    assert table.mode_for("other", "/apix") == "block"
    assert table.mode_for("api.example.com", "/x") == "off"
    assert table.mode_for("api.example.com", "/api/v2/long/y") == "safe_blocking"  # host beats path length
    assert table.mode_for("other", "/api/v2/long/y") == "monitoring"


@pytest.mark.parametrize("target,want", [
    ("/a/b?x=1", "/a/b"), ("/%61dmin/", "/admin/"), ("/a/../b", "/b"), ("//x//y", "/x/y"),
    ("http://h/p?q", "/p"), ("/%252e%252e/etc", "/etc"), ("*", "/*"), ("/", "/"),
])
def test_normalise_path(target, want):
    assert normalise_path(target) == want


def test_normalise_host():
    assert normalise_host("API.Example.com:8443") == "api.example.com"
    assert normalise_host("[::1]:80") == "::1"
    assert normalise_host("example.com.") == "example.com"
    assert normalise_host(None) == ""


# ------------------------------------------------------------------------- pairing


def _seen(recorded: bool = True) -> RequestSeen:
    return RequestSeen(0.0, "192.0.2.1", "h", "GET", "/", "block", "i", recorded)


def test_pairing_in_both_orders():
    p = Pairing(ttl_seconds=10, max_entries=10)
    assert p.request_seen("a", _seen(), now=0) is None
    assert p.response_seen("a", ResponseSeen(200), now=1).path == "/"
    assert p.response_seen("b", ResponseSeen(404), now=2) is None
    assert p.request_seen("b", _seen(), now=3).status == 404
    assert len(p) == 0 and p.joined == 2


def test_pairing_ttl_and_cap_evictions_are_counted():
    seen: list[tuple[str, str]] = []
    p = Pairing(ttl_seconds=5, max_entries=2, on_evict=lambda r, s: seen.append((r, s)))
    p.request_seen("a", _seen(), now=0)
    p.response_seen("b", ResponseSeen(200), now=1)
    p.request_seen("c", _seen(), now=2)  # over the cap: "a" goes
    assert seen == [("capacity", "request")]
    p.sweep(now=6.5)  # "b" (t=1) is past its TTL, "c" (t=2) is not
    assert seen == [("capacity", "request"), ("expired", "response")]
    assert p.response_seen("c", ResponseSeen(500), now=6.6) is not None
    assert p.evictions == {("capacity", "request"): 1, ("expired", "response"): 1}


def test_same_side_twice_replaces_instead_of_joining():
    p = Pairing()
    p.request_seen("a", _seen(False), now=0)
    assert p.request_seen("a", _seen(True), now=1) is None
    assert p.response_seen("a", ResponseSeen(200), now=2).recorded is True


# ------------------------------------------------------------------------- masking


def test_mask_headers():
    assert mask_header_value("Authorization", "Basic dXNlcjpwYXNz") == f"Basic {MASK}"
    assert mask_header_value("Cookie", "a=1; b=2") == f"a={MASK}; b={MASK}"
    assert mask_header_value("Set-Cookie", "sid=abc; Path=/; HttpOnly") == f"sid={MASK}; Path=/; HttpOnly"
    assert mask_header_value("X-Auth-Token", "t") == MASK
    assert mask_header_value("X-Client-Secret", "t") == MASK
    assert mask_header_value("User-Agent", "curl/8") == "curl/8"


def test_mask_bodies():
    body = json.dumps({"user": {"name": "n", "Password": "p", "api_key": 5}, "items": [{"token": "t"}],
                       "author": "kept", "bypass": "kept"}).encode()
    masked = json.loads(mask_body(body, "application/json; charset=utf-8"))
    assert masked == {"user": {"name": "n", "Password": MASK, "api_key": MASK}, "items": [{"token": MASK}],
                      "author": "kept", "bypass": "kept"}
    assert mask_body(b"a=1&pass=x&client_secret=y", "application/x-www-form-urlencoded") == f"a=1&pass={MASK}&client_secret={MASK}"
    assert mask_body(b"<pwd>x</pwd> password: hunter2", "text/plain") == f"<pwd>x</pwd> password: {MASK}"
    assert mask_body(b'{"token": "cut-off secret', "application/json") == f'{{"token": "{MASK}"'  # unparsable JSON


def test_mask_text_handles_quotes_and_separators():
    assert mask_text('"secret":"a\\"b", "x": 1') == f'"secret":"{MASK}", "x": 1'
    assert mask_text("refresh_token=abc&x=1") == f"refresh_token={MASK}&x=1"


def test_mask_hits_and_excerpt():
    hits = mask_hits([Hit("sqli", "form.password", "r", "' or 1=1"), Hit("xss", "query.q", "r", "<script>"),
                      Hit("sqli", "header.authorization", "r", "x"), Hit("sqli", "cookie.sid", "r", "x")])
    assert [h.excerpt for h in hits] == [MASK, "<script>", MASK, MASK]
    msg = RequestMessage("GET", "/p?a=1&apikey=k", [(b"Host", b"h"), (b"Cookie", b"s=v")], b"x" * 5000)
    text = request_excerpt(msg)
    assert text.startswith(f"GET /p?a=1&apikey={MASK} HTTP/1.1\r\nHost: h\r\nCookie: s={MASK}\r\n\r\n")
    assert text.endswith("... [5000 bytes]") and len(text) < 2200


# ------------------------------------------------------------------------- settings


def test_settings_sqlite_url_paths_resolve_like_plain_paths(tmp_path: Path):
    cfg = tmp_path / "node.yaml"
    cfg.write_text("db: sqlite:///data/n.db\n")
    assert load_settings(cfg).db == "sqlite:///" + str(tmp_path / "data/n.db")
    cfg.write_text("db: sqlite:////abs/n.db\n")
    assert load_settings(cfg).db == "sqlite:////abs/n.db"


def test_settings_postgresql_store_and_node_id(tmp_path: Path):
    cfg = tmp_path / "node.yaml"
    cfg.write_text("db: postgresql://node:pw@db.internal:5432/wallarm\ninstance: edge\nlisten: 127.0.0.1:5077\n")
    s = load_settings(cfg)
    assert s.db == "postgresql://node:pw@db.internal:5432/wallarm"  # a DSN is not a path to resolve
    assert s.shared_store and s.db_file is None
    assert s.node_name == "edge:5077"  # default node id: instance (the host name) and port
    assert load_settings(cfg, {"node_id": "node-a"}).node_name == "node-a"
    cfg.write_text("db: n.db\n")
    s = load_settings(cfg)
    assert not s.shared_store and s.db_file == tmp_path / "n.db"


def test_a_postgresql_node_needs_a_configured_console_token(monkeypatch):
    from node.console.auth import ENV_TOKEN, resolve_console_token

    monkeypatch.delenv(ENV_TOKEN, raising=False)
    with pytest.raises(ValueError, match="with a PostgreSQL store, set console_token"):
        resolve_console_token(None, None)
    assert resolve_console_token("a-shared-token-0123456789", None) == "a-shared-token-0123456789"


def test_settings_file_and_overrides(tmp_path: Path):
    cfg = tmp_path / "node.yaml"
    cfg.write_text("mode: monitoring\ndb: data/n.db\ntls_cert: c.pem\ntls_key: k.pem\nlisten: 0.0.0.0:5050\n"
                   "overrides:\n  - {host: A.test, mode: off}\nip_lists:\n  deny: [203.0.113.7, {network: '2001:db8::1/32', ttl_seconds: 5}]\n")
    s = load_settings(cfg, {"mode": "block", "listen": None})
    assert s.mode == "block" and s.listen == "0.0.0.0:5050"
    assert s.db == str(tmp_path / "data/n.db") and s.tls_cert == tmp_path / "c.pem"
    assert s.mode_settings().overrides[0].host == "a.test"
    entries = s.seed_ip_entries(now=1000)
    assert [(e.network, e.expires_at) for e in entries] == [("203.0.113.7/32", None), ("2001:db8::/32", 1005)]


@pytest.mark.parametrize("data,needle", [
    ({"mode": "blocking"}, "mode:"),
    ({"listen": "0.0.0.0:1"}, "plain HTTP is allowed only on loopback"),
    ({"tls_cert": "/c.pem"}, "tls_cert and tls_key must be given together"),
    ({"overrides": [{"mode": "off"}]}, "needs a host, a path_prefix or both"),
    ({"overrides": [{"mode": "off", "path_prefix": "api"}]}, "must start with '/'"),
    ({"ip_lists": {"deny": ["300.1.1.1"]}}, "not an IP address or CIDR"),
    ({"colour": "blue"}, "colour: unknown field"),
    ({"listen": "localhost"}, "want HOST:PORT"),
    ({"db": "mysql://db/x"}, "unsupported store URL scheme"),
    ({"db": "postgresql://"}, "bad PostgreSQL URL"),
    ({"node_id": ""}, "node_id"),
])
def test_settings_errors_name_the_problem(tmp_path: Path, data, needle):
    cfg = tmp_path / "node.json"
    cfg.write_text(json.dumps(data))
    with pytest.raises(SettingsError) as err:
        load_settings(cfg)
    assert needle in str(err.value) and str(cfg) in str(err.value)


def test_parse_hostport():
    assert parse_hostport("[::1]:5050") == ("::1", 5050)
    assert parse_hostport("localhost:0") == ("localhost", 0)
    with pytest.raises(ValueError):
        parse_hostport("::1:5050")


# ------------------------------------------------------------------------- metrics


def test_metrics_render():
    m = NodeMetrics()
    m.messages.inc("request", "sync")
    m.attacks.inc('we"ird\ntype')
    m.analysis.observe(0.0003)
    m.analysis.observe(5.0)
    got = samples(m.render())
    assert got['wallarm_node_messages_total{type="request",delivery="sync"}'] == 1
    assert got['wallarm_node_attacks_total{type="we\\"ird\\ntype"}'] == 1
    assert got['wallarm_node_analysis_seconds_bucket{le="0.0005"}'] == 1
    assert got['wallarm_node_analysis_seconds_bucket{le="1.0"}'] == 1
    assert got['wallarm_node_analysis_seconds_bucket{le="+Inf"}'] == 2


def test_histogram_bucket_edges_are_inclusive():
    m = NodeMetrics()
    for v in (0.0005, 0.0007, 0.001, 3.0):
        m.analysis.observe(v)
    got = samples(m.render())  # le=0.0005 holds 0.0005 exactly; le=0.001 adds 0.0007 and 0.001
    assert [got[f'wallarm_node_analysis_seconds_bucket{{le="{b}"}}'] for b in ("0.0005", "0.001", "1.0", "+Inf")] == [1, 3, 3, 4]


def test_example_config_loads_and_says_what_the_defaults_are():
    from node.settings import NodeSettings

    example = load_settings(Path(__file__).resolve().parents[1] / "node.example.yaml")
    defaults = NodeSettings()
    for name in ("listen", "console_listen", "mode", "max_body_bytes", "pairing", "retention", "log_level",
                 "shutdown_timeout_seconds", "overrides", "ip_lists", "mode_forced"):
        assert getattr(example, name) == getattr(defaults, name), name


@pytest.mark.parametrize("build,needle", [
    (lambda: ModeSettings("paranoid"), "mode must be one of"),  # type: ignore[arg-type]
    (lambda: ModeOverride("block"), "needs a host, a path_prefix or both"),
    (lambda: ModeOverride("off", path_prefix="admin"), "must start with '/'"),
    (lambda: ModeOverride("off", host="a b"), "is not a host name"),
    (lambda: ModeSettings("block", [ModeOverride("off", host="A"), ModeOverride("block", host="a.")]), "duplicate"),
    (lambda: IPEntry("deny", "::ffff:1.2.3.4/129"), "invalid IP network"),
    (lambda: IPEntry("black", "1.2.3.4"), "list must be one of"),  # type: ignore[arg-type]
])
def test_invalid_mode_settings_and_ip_entries_cannot_be_built(build, needle):
    with pytest.raises(ValueError, match=needle):
        build()


def test_rules_normalise_what_they_keep():
    o = ModeOverride("off", host=" API.Example.com:8443 ", path_prefix=" /admin ")
    assert (o.host, o.path_prefix) == ("api.example.com", "/admin")
    e = IPEntry("allow", "::ffff:10.1.2.3/120", comment=" office ")
    assert (e.network, e.comment) == ("10.1.2.0/24", "office")


async def test_set_mode_settings_saves_then_applies(tmp_path: Path):
    from node.store.sqlite import SQLiteStore

    store = SQLiteStore(tmp_path / "n.db")
    await store.open()
    try:
        policy = Policy(store, ModeSettings("block"))
        assert await store.load_mode_settings() is None
        good = ModeSettings("monitoring", [ModeOverride("block", host="A.test", path_prefix="/x")])
        await policy.set_mode_settings(good)
        assert await store.load_mode_settings() == good
        assert policy.mode_for("a.test", "/x/y") == "block" and policy.mode_for("b", "/") == "monitoring"
    finally:
        await store.close()


@pytest.mark.parametrize("forced", [False, True])
async def test_another_nodes_changes_are_reloaded_unless_the_mode_is_forced(tmp_path: Path, forced: bool):
    from node.store.base import CHANGE_ALL, CHANGE_IP_LISTS, CHANGE_MODES
    from node.store.sqlite import SQLiteStore

    store = SQLiteStore(tmp_path / "n.db")
    await store.open()
    try:
        policy = Policy(store, ModeSettings("block"))
        await policy.load(ModeSettings("block"), forced=forced)
        # another node wrote these to the shared store
        await store.save_mode_settings(ModeSettings("monitoring"))
        await store.add_ip_entry(IPEntry("deny", "198.51.100.5"))
        await policy.on_store_change(CHANGE_IP_LISTS)
        assert policy.lists_for("198.51.100.5") == {"deny"} and policy.mode_for("a", "/") == "block"
        await policy.on_store_change(CHANGE_MODES)
        assert policy.mode_for("a", "/") == ("block" if forced else "monitoring")  # --mode keeps its own
        await store.save_mode_settings(ModeSettings("off"))
        await store.add_ip_entry(IPEntry("allow", "198.51.100.6"))
        await policy.on_store_change(CHANGE_ALL)
        assert policy.mode_for("a", "/") == ("block" if forced else "off")
        assert policy.lists_for("198.51.100.6") == {"allow"}
    finally:
        await store.close()


# ---------------------------------------------------------------------------- partial inspection

@pytest.mark.parametrize("mode,lists,action,want", [
    ("block", (), "block", (True, True, "blocked", "partial")),
    ("block", (), "monitor", (False, True, "monitored", "partial")),
    ("safe_blocking", (), "block", (False, True, "monitored", "partial")),
    ("safe_blocking", ("gray",), "block", (True, True, "blocked", "partial")),
    ("monitoring", (), "block", (False, True, "monitored", "partial")),
    ("block", ("allow",), "block", (False, True, "monitored", "allowlist")),
    ("off", (), "block", (False, False, "monitored", "mode off")),
])
def test_a_partial_inspection_is_decided_by_partial_inspection_and_the_mode(mode, lists, action, want) -> None:
    d = Policy.decide(mode, frozenset(lists), False, True, partial=True, partial_inspection=action)
    assert (d.block, d.record, d.stored_action, d.reason) == want
    # an attack stays an attack whatever partial_inspection says
    assert Policy.decide(mode, frozenset(lists), True, True, True, "monitor").reason in ("attack", "allowlist", "mode off")


def test_overrides_carry_partial_inspection_and_a_body_limit() -> None:
    table = ModeTable(ModeSettings("block", [
        ModeOverride("block", path_prefix="/upload", max_body_bytes=4096),
        ModeOverride("monitoring", host="tele.example", partial_inspection="monitor"),
    ], partial_inspection="block"))
    up, tele, other = table.rules_for("a", "/upload/x"), table.rules_for("tele.example", "/"), table.rules_for("a", "/")
    assert (up.mode, up.partial_inspection, up.max_body_bytes) == ("block", "block", 4096)
    assert (tele.mode, tele.partial_inspection, tele.max_body_bytes) == ("monitoring", "monitor", None)
    assert (other.mode, other.partial_inspection, other.max_body_bytes) == ("block", "block", None)


@pytest.mark.parametrize("config,message", [
    ({"partial_inspection": "drop"}, "partial_inspection"),
    ({"overrides": [{"path_prefix": "/a", "mode": "block", "partial_inspection": "maybe"}]}, "partial_inspection"),
    ({"max_body_bytes": 1000, "overrides": [{"path_prefix": "/a", "mode": "block", "max_body_bytes": 2000}]},
     "over max_body_bytes"),
    ({"overrides": [{"path_prefix": "/a", "mode": "block", "max_body_bytes": 0}]}, "max_body_bytes"),
])
def test_partial_inspection_settings_are_checked(tmp_path: Path, config: dict, message: str) -> None:
    path = tmp_path / "node.json"
    path.write_text(json.dumps(config))
    with pytest.raises(SettingsError, match=message):
        load_settings(path)
