#!/usr/bin/env python3
"""Generate development certificates: a local CA, the node's server certificate and the proxy's.

Files written to the output directory (default `certs/`):
  ca.pem, ca-key.pem      the local development CA (trust it with `node_ca_file: "certs/ca.pem"`)
  node.pem, node-key.pem  the node's TLS certificate (SANs localhost, 127.0.0.1, ::1, node)
  proxy.pem               cert + key in one PEM for `mitmdump --certs '*=certs/proxy.pem'`
                          (SANs localhost, 127.0.0.1, proxy)

Idempotent: existing files that still form a valid chain (signed by ca.pem, not expiring within
30 days, the right SANs, matching keys) are kept; anything missing or invalid is regenerated.
`--force` regenerates everything. Keys are written with mode 0600.

Built with the `cryptography` library that pyOpenSSL is built on (pyOpenSSL >= 24 no longer
builds extensions itself); the chain check uses pyOpenSSL's X509Store.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import crypto

log = logging.getLogger("gen_certs")

CA_DAYS = 3650
LEAF_DAYS = 825  # the longest validity browsers and macOS accept for a server certificate
RENEW_BEFORE = dt.timedelta(days=30)


@dataclass(frozen=True, slots=True)
class LeafSpec:
    """One server certificate to issue from the development CA."""

    name: str  # common name and file stem
    dns: tuple[str, ...]
    ips: tuple[str, ...]
    cert_file: str
    key_file: str | None  # None: the key is appended to cert_file (mitmproxy's --certs format)


NODE = LeafSpec("node", ("localhost", "node"), ("127.0.0.1", "::1"), "node.pem", "node-key.pem")
PROXY = LeafSpec("proxy", ("localhost", "proxy"), ("127.0.0.1",), "proxy.pem", None)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write(path: Path, data: bytes, secret: bool) -> None:
    """Write atomically; secrets get 0600 from the start (never world-readable, even briefly)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if secret else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def make_ca() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "wallarm-mitmproxy dev"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "wallarm-mitmproxy development CA")])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def make_leaf(spec: LeafSpec, ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey
              ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _new_key()
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in spec.dns]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in spec.ips]
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, spec.name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=LEAF_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False,
                                     content_commitment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=False, crl_sign=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


# ---------------------------------------------------------------- checks for idempotency

def _load_ca(out: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
    try:
        cert = x509.load_pem_x509_certificate((out / "ca.pem").read_bytes())
        key = serialization.load_pem_private_key((out / "ca-key.pem").read_bytes(), None)
    except (OSError, ValueError, TypeError) as e:
        log.debug("CA not reusable: %s", e)
        return None
    if cert.public_key().public_numbers() != key.public_key().public_numbers():  # type: ignore[union-attr]
        log.info("ca-key.pem does not match ca.pem")
        return None
    if cert.not_valid_after_utc - RENEW_BEFORE < _now():
        log.info("ca.pem expires soon")
        return None
    return cert, key  # type: ignore[return-value]


def _leaf_ok(spec: LeafSpec, out: Path, ca_cert: x509.Certificate) -> bool:
    """True when the leaf files exist, chain to ca.pem, match their key and carry spec's SANs."""
    try:
        cert_bytes = (out / spec.cert_file).read_bytes()
        key_bytes = (out / spec.key_file).read_bytes() if spec.key_file else cert_bytes
        cert = x509.load_pem_x509_certificate(cert_bytes)
        key = serialization.load_pem_private_key(key_bytes, None)
    except (OSError, ValueError, TypeError) as e:
        log.debug("%s not reusable: %s", spec.cert_file, e)
        return False
    if cert.public_key().public_numbers() != key.public_key().public_numbers():  # type: ignore[union-attr]
        return False
    if cert.not_valid_after_utc - RENEW_BEFORE < _now():
        return False
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    have = set(san.get_values_for_type(x509.DNSName)) | {str(i) for i in san.get_values_for_type(x509.IPAddress)}
    if not set(spec.dns) | set(spec.ips) <= have:
        return False
    store = crypto.X509Store()
    store.add_cert(crypto.X509.from_cryptography(ca_cert))
    try:
        crypto.X509StoreContext(store, crypto.X509.from_cryptography(cert)).verify_certificate()
    except crypto.X509StoreContextError:
        return False
    return True


# ---------------------------------------------------------------- main

def generate(out: Path, force: bool = False) -> list[str]:
    """Ensure every file exists and is valid; return the names of the files written."""
    out.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    ca = None if force else _load_ca(out)
    if ca is None:
        ca = make_ca()
        _write(out / "ca-key.pem", _key_pem(ca[1]), secret=True)
        _write(out / "ca.pem", ca[0].public_bytes(serialization.Encoding.PEM), secret=False)
        written += ["ca.pem", "ca-key.pem"]
        force = True  # leaves signed by an old CA no longer chain
    ca_cert, ca_key = ca
    for spec in (NODE, PROXY):
        if not force and _leaf_ok(spec, out, ca_cert):
            continue
        cert, key = make_leaf(spec, ca_cert, ca_key)
        cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        if spec.key_file:
            _write(out / spec.key_file, _key_pem(key), secret=True)
            _write(out / spec.cert_file, cert_pem, secret=False)
            written += [spec.cert_file, spec.key_file]
        else:
            _write(out / spec.cert_file, cert_pem + _key_pem(key), secret=True)
            written.append(spec.cert_file)
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "certs",
                    help="output directory (default: the repository's certs/)")
    ap.add_argument("--force", action="store_true", help="regenerate every file")
    ap.add_argument("--quiet", action="store_true", help="print only when files are written")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="gen_certs: %(message)s")
    try:
        written = generate(args.out, args.force)
    except OSError as e:
        print(f"gen_certs: cannot write to {args.out}: {e}", file=sys.stderr)
        return 1
    if written:
        print(f"gen_certs: wrote {', '.join(written)} in {args.out}")
    elif not args.quiet:
        print(f"gen_certs: certificates in {args.out} are valid, nothing to do (--force regenerates)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
