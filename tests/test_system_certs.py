"""scripts/gen_certs.py: a CA-verified chain with the right SANs, idempotent, keys private."""

from __future__ import annotations

import importlib.util
import socket
import ssl
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from cryptography import x509

from tests.support.procs import REPO, child_env

spec = importlib.util.spec_from_file_location("gen_certs", REPO / "scripts" / "gen_certs.py")
gen_certs = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
sys.modules["gen_certs"] = gen_certs  # dataclasses look their module up there
spec.loader.exec_module(gen_certs)  # type: ignore[union-attr]

FILES = {"ca.pem", "ca-key.pem", "node.pem", "node-key.pem", "proxy.pem"}


@pytest.fixture()
def certs(tmp_path: Path) -> Path:
    out = tmp_path / "certs"
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "gen_certs.py"), "--out", str(out)],
                       capture_output=True, text=True, env=child_env(), timeout=60)
    assert r.returncode == 0, r.stderr
    assert "wrote" in r.stdout
    return out


def _handshake(certfile: Path, keyfile: Path | None, cafile: Path, connect: str, server_name: str) -> None:
    """A real TLS handshake on loopback: server with the generated cert, client verifying with ca.pem."""
    family = socket.AF_INET6 if ":" in connect else socket.AF_INET
    srv_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    srv_ctx.load_cert_chain(str(certfile), str(keyfile) if keyfile else None)
    listener = socket.socket(family)
    listener.bind((connect, 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    errors: list[BaseException] = []

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            with srv_ctx.wrap_socket(conn, server_side=True) as s:
                s.sendall(b"ok")
        except (ssl.SSLError, OSError) as e:  # the client refused: expected in negative cases
            errors.append(e)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        cli_ctx = ssl.create_default_context(cafile=str(cafile))
        with socket.create_connection((connect, port), timeout=5) as raw:
            with cli_ctx.wrap_socket(raw, server_hostname=server_name) as s:
                assert s.recv(2) == b"ok"
    finally:
        t.join(5)
        listener.close()


def _ipv6_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def test_writes_all_files_with_private_keys(certs: Path) -> None:
    assert {p.name for p in certs.iterdir()} == FILES
    for name in ("ca-key.pem", "node-key.pem", "proxy.pem"):
        assert stat.S_IMODE((certs / name).stat().st_mode) == 0o600, name
    assert stat.S_IMODE((certs / "ca.pem").stat().st_mode) == 0o644


@pytest.mark.parametrize("connect,name", [("127.0.0.1", "localhost"), ("127.0.0.1", "127.0.0.1"),
                                          ("127.0.0.1", "node"), ("::1", "::1")])
def test_node_cert_verifies_against_ca(certs: Path, connect: str, name: str) -> None:
    if ":" in connect and not _ipv6_available():
        pytest.skip("no IPv6 loopback on this machine")
    _handshake(certs / "node.pem", certs / "node-key.pem", certs / "ca.pem", connect, name)


@pytest.mark.parametrize("name", ["localhost", "127.0.0.1", "proxy"])
def test_proxy_pem_is_cert_and_key_in_one_file(certs: Path, name: str) -> None:
    _handshake(certs / "proxy.pem", None, certs / "ca.pem", "127.0.0.1", name)


def test_wrong_name_and_foreign_ca_are_refused(certs: Path, tmp_path: Path) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(certs / "node.pem", certs / "node-key.pem", certs / "ca.pem", "127.0.0.1", "evil.example")
    other = tmp_path / "other"
    gen_certs.generate(other)
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(certs / "node.pem", certs / "node-key.pem", other / "ca.pem", "127.0.0.1", "localhost")


def test_sans_and_ca_constraints(certs: Path) -> None:
    def sans(path: Path) -> set[str]:
        c = x509.load_pem_x509_certificate(path.read_bytes())
        ext = c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        return set(ext.get_values_for_type(x509.DNSName)) | {str(i) for i in ext.get_values_for_type(x509.IPAddress)}

    assert sans(certs / "node.pem") == {"localhost", "node", "127.0.0.1", "::1"}
    assert sans(certs / "proxy.pem") == {"localhost", "proxy", "127.0.0.1"}
    ca = x509.load_pem_x509_certificate((certs / "ca.pem").read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    leaf = x509.load_pem_x509_certificate((certs / "node.pem").read_bytes())
    assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False


def test_idempotent_keeps_valid_files(certs: Path) -> None:
    before = {p.name: p.read_bytes() for p in certs.iterdir()}
    assert gen_certs.generate(certs) == []
    assert {p.name: p.read_bytes() for p in certs.iterdir()} == before


def test_repairs_only_what_is_broken(certs: Path) -> None:
    before = {p.name: p.read_bytes() for p in certs.iterdir()}
    (certs / "node.pem").write_text("not a certificate")
    assert sorted(gen_certs.generate(certs)) == ["node-key.pem", "node.pem"]
    after = {p.name: p.read_bytes() for p in certs.iterdir()}
    assert after["ca.pem"] == before["ca.pem"] and after["proxy.pem"] == before["proxy.pem"]
    assert after["node.pem"] != before["node.pem"]
    _handshake(certs / "node.pem", certs / "node-key.pem", certs / "ca.pem", "127.0.0.1", "localhost")


def test_new_ca_reissues_leaves(certs: Path) -> None:
    (certs / "ca-key.pem").unlink()
    written = gen_certs.generate(certs)
    assert set(written) == FILES
    _handshake(certs / "node.pem", certs / "node-key.pem", certs / "ca.pem", "127.0.0.1", "node")


def test_force_regenerates_everything(certs: Path) -> None:
    before = {p.name: p.read_bytes() for p in certs.iterdir()}
    assert set(gen_certs.generate(certs, force=True)) == FILES
    after = {p.name: p.read_bytes() for p in certs.iterdir()}
    assert all(after[n] != before[n] for n in FILES)


def test_unwritable_output_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "gen_certs.py"), "--out", str(blocker / "certs")],
                       capture_output=True, text=True, env=child_env(), timeout=60)
    assert r.returncode == 1
    assert "cannot write" in r.stderr and "Traceback" not in r.stderr
