"""enable-plugin.json validation: the seed loads unchanged, extensions, Kong-like errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from addon.config import ConfigError, load_config, parse_config

SEED = ('{"name": "wallarm-plugin", "instance_name": "wallarm-protection", "protocols": ["http", "https"], '
        '"enabled": true, "config": {"blocking": true, "wallarm_node_address": "https://node.example:5050", '
        '"timeout_ms": 500}}')


def _make_ca_pem() -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    import datetime

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "test ca")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


CA_PEM = _make_ca_pem()


def cfg(**settings: object) -> dict:
    base = json.loads(SEED)
    top = {k: settings.pop(k) for k in ("name", "protocols", "enabled", "instance_name") if k in settings}
    base.update(top)
    base["config"].update(settings)
    return base


def parse(data: dict):
    return parse_config(json.dumps(data))


def test_seed_file_loads_unchanged(tmp_path: Path) -> None:
    p = tmp_path / "enable-plugin.json"
    p.write_text(SEED)
    c = load_config(p)
    assert c.name == "wallarm-plugin" and c.instance_name == "wallarm-protection"
    assert c.protocols == ["http", "https"] and c.enabled is True
    s = c.config
    assert s.blocking is True and s.timeout_ms == 500
    [addr] = s.wallarm_node_address
    assert (addr.scheme, addr.host, addr.port, addr.path) == ("https", "node.example", 5050, "/")
    # extensions default to the seed's behaviour
    assert s.fail_open is True and s.node_ca_file is None and s.trusted_proxies == []
    assert s.block_status == 403 and s.block_page is None and s.inspect_response is True


def test_repo_enable_plugin_json_loads(tmp_path: Path) -> None:
    """The repo's own example config, with its relative CA path resolved next to the file."""
    repo_file = Path(__file__).resolve().parents[1] / "enable-plugin.json"
    copy = tmp_path / "enable-plugin.json"
    copy.write_bytes(repo_file.read_bytes())
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "ca.pem").write_text(CA_PEM)
    c = load_config(copy)
    assert c.name == "wallarm-plugin"
    assert c.config.node_ca_file == str(tmp_path / "certs" / "ca.pem")


@pytest.mark.parametrize("field", ["bogus", "timeout"])
def test_unknown_config_field_is_named(field: str) -> None:
    with pytest.raises(ConfigError, match=rf"config\.{field}: unknown field"):
        parse(cfg(**{field: 1}))


def test_unknown_top_level_field_is_named() -> None:
    data = cfg()
    data["routes"] = "x"
    with pytest.raises(ConfigError, match=r"routes: unknown field"):
        parse(data)


@pytest.mark.parametrize(("override", "message"), [
    ({"name": "other-plugin"}, r"name: must be 'wallarm-plugin'"),
    ({"protocols": []}, r"protocols"),
    ({"protocols": ["tcp"]}, r"protocols\.0"),
    ({"protocols": ["http", "http"]}, r"duplicate"),
    ({"timeout_ms": 0}, r"config\.timeout_ms"),
    ({"timeout_ms": -5}, r"config\.timeout_ms"),
    ({"timeout_ms": 1.5}, r"config\.timeout_ms"),
    ({"timeout_ms": "500"}, r"config\.timeout_ms"),
    ({"blocking": "yes"}, r"config\.blocking"),
    ({"enabled": 1}, r"enabled"),
    ({"wallarm_node_address": "http://node.example:5050"}, r"plain http is allowed only to a loopback"),
    ({"wallarm_node_address": "ftp://node.example"}, r"https:// URL"),
    ({"wallarm_node_address": ""}, r"at least one node address"),
    ({"wallarm_node_address": 5}, r"config\.wallarm_node_address"),
    ({"block_status": 200}, r"config\.block_status"),
    ({"max_body_bytes": -1}, r"config\.max_body_bytes"),
    ({"trusted_proxies": ["not-a-net"]}, r"is not a CIDR"),
    ({"node_ca_file": "/nonexistent/ca.pem"}, r"config\.node_ca_file: '/nonexistent/ca.pem' is not a readable"),
    ({"node_ca_file": __file__}, r"config\.node_ca_file: .* not a usable PEM CA bundle"),
])
def test_invalid_values_give_clear_errors(override: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse(cfg(**override))


def test_missing_required_node_address() -> None:
    data = cfg()
    del data["config"]["wallarm_node_address"]
    with pytest.raises(ConfigError, match=r"config\.wallarm_node_address: Field required"):
        parse(data)


def test_bad_json_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="invalid JSON"):
        parse_config("{nope")
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.json")


def test_loopback_http_allowed_and_address_lists() -> None:
    c = parse(cfg(wallarm_node_address="http://127.0.0.1:5050, https://node-b.example/wallarm,http://[::1]:7"))
    addrs = c.config.wallarm_node_address
    assert [(a.scheme, a.host, a.port, a.path) for a in addrs] == [
        ("http", "127.0.0.1", 5050, "/"), ("https", "node-b.example", 443, "/wallarm"), ("http", "::1", 7, "/")]
    c2 = parse(cfg(wallarm_node_address=["http://localhost:1", "https://n.example"]))
    assert len(c2.config.wallarm_node_address) == 2


def test_extensions_are_accepted(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text(CA_PEM)
    p = tmp_path / "plugin.json"
    p.write_text(json.dumps(cfg(inspect_response=False, max_body_bytes=10, fail_open=False,
                                node_ca_file="ca.pem", trusted_proxies=["10.0.0.0/8", "::1"],
                                block_status=451, block_page="<p>no {request_id}</p>")))
    s = load_config(p).config
    assert s.inspect_response is False and s.max_body_bytes == 10 and s.fail_open is False
    assert s.node_ca_file == str(tmp_path / "ca.pem")  # relative to the config file's directory
    assert [str(n) for n in s.trusted_proxies] == ["10.0.0.0/8", "::1/128"]
    assert s.block_status == 451 and s.block_page == "<p>no {request_id}</p>"


def test_public_dict_masks_secret() -> None:
    c = parse(cfg(node_secret="s3cret"))
    d = c.public_dict()
    assert d["config"]["node_secret"] == "***" and d["name"] == "wallarm-plugin"
    assert d["config"]["wallarm_node_address"] == ["https://node.example:5050"]
