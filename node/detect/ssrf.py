"""Server-side request forgery: URLs whose host, read the way resolvers read it, is internal.

Each URL of a value (`scheme://authority`) has its host parsed as `inet_aton` and browsers
parse IPv4 (one to four parts, each decimal, octal with a leading 0 or hex with 0x, the last
part filling the remaining bytes: `2852039166`, `0251.0376.0251.0376`, `0xa9fea9fe`,
`0xa9.254.0251.0xfe`, `127.1`, `0`), as IPv6 in brackets (zone ids dropped; IPv4-mapped
`::ffff:7f00:1`, IPv4-compatible `::127.0.0.1` and NAT64 `64:ff9b::` read as their IPv4),
after NFKC (`①②⑦.⓪.⓪.①`) and without a trailing dot; or as a name (`localhost`,
`*.localhost`, `metadata.google.internal`, `127.0.0.1.nip.io`...).

What blocks:
* a cloud metadata address or name, in any form (`169.254.169.254`, `fd00:ec2::254`,
  `100.100.100.200`, `metadata.google.internal`);
* an internal address (loopback, private, link-local, unspecified, shared, unique-local)
  written in any form but the usual dotted quad, or through a wildcard-DNS name: nobody links
  to `http://0177.1/` by accident;
* a scheme servers fetch but browsers never link (`gopher` `dict` `ldap` `tftp` `file`
  `netdoc` `jar`...) to any internal host, and `ftp` to an internal one;
* an internal host in its usual form with a port of an internal service (Redis, memcached,
  Docker, Elasticsearch, the kubelet, SSH...) or an administrative path.

`http://localhost:3000/callback` (an OAuth redirect on a developer's machine), a bare
`10.0.0.1` (an `X-Forwarded-For`: no URL context) and URLs to public hosts pass.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Callable, Iterator

from node.detect.candidates import first_rule
from node.detect.windows import Gate, normalise

# scheme://[userinfo@]host[:port][/path]; the host may be bracketed IPv6
_URL_PATTERN = (
    # scheme:// (or :/ :\\ as lenient parsers read it), or a protocol-relative //host (not
    # \\host: JSON inside JSON is full of escaped backslashes)
    r"(?:([a-z][a-z0-9+.\-]{0,15}):[/\\]{1,3}|LOOKBEHIND()/{2,})"
    r"([^\s/\\?#@\"'<>]*+@)?(\[[^\]\s/]{1,80}\]|[^\s/\\?#:@\"'<>]{0,255})(?::(\d{0,6}))?([^\s\"'<>]{0,64})"
)
_URL_RE = re.compile(_URL_PATTERN.replace("LOOKBEHIND", r"(?<![\w:/\\])"), re.I)
# in a path, '//host' may follow any segment (/fetch//10.0.0.1/: proxies that route on it)
_PATH_URL_RE = re.compile(_URL_PATTERN.replace("LOOKBEHIND", r"(?<![:/\\])"), re.I)
_FETCH_SCHEMES = frozenset("gopher dict ldap ldaps tftp file netdoc jar sftp ssh2 rtsp telnet smb php expect phar".split())
_METADATA_V4 = frozenset({"169.254.169.254", "169.254.170.2", "100.100.100.200", "192.0.0.192", "169.254.169.123"})
_METADATA_V6 = frozenset({ipaddress.IPv6Address("fd00:ec2::254"), ipaddress.IPv6Address("fd00:ec2::23")})
_METADATA_NAMES = frozenset({"metadata.google.internal", "metadata", "instance-data", "instance-data.ec2.internal",
                             "metadata.azure.com", "metadata.tencentyun.com", "metadata.packet.net"})
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback",
                             "localtest.me", "lvh.me", "vcap.me", "lacolhost.com", "127-0-0-1.org.uk"})
# wildcard DNS services that answer with the address written in the name
_WILDCARD_DNS_RE = re.compile(r"^(.*?)[.\-](?:nip\.io|xip\.io|sslip\.io|traefik\.me|localtest\.me|xip\.name|nip\.direct)$")
# ports of services that only listen inside (not 80/443/8080/3000...: developers' own servers)
_INTERNAL_PORTS = frozenset({22, 23, 25, 111, 135, 139, 445, 2375, 2376, 2379, 3306, 4369, 5432, 5984, 6379,
                             6443, 8500, 9000, 9042, 9200, 9300, 10250, 10255, 11211, 15672, 27017, 50070})
_ADMIN_PATH_RE = re.compile(
    r"/(?:admin|actuator|server-status|server-info|manager/html|jmx-console|console|_cat|_cluster|_nodes|_all_dbs"
    r"|latest/|computemetadata|metadata|openstack|meta[-_]data|v1/(?:secrets|kv|agent)|v2/keys|api/v1/(?:namespaces|pods|secrets)"
    r"|pods|debug/pprof|\.env|env\b|heapdump|jolokia|containers/json|info\b|stats\b|solr/|druid/|phpmyadmin)",
    re.I,
)
_PART_RE = re.compile(r"0x[0-9a-f]*|0[0-7]*|[1-9]\d*", re.I)


def _ipv4_number(host: str) -> int | None:
    """`host` as inet_aton reads it (None if it is not such a number)."""
    parts = host.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    numbers = []
    for part in parts:
        if not part or len(part) > 34 or _PART_RE.fullmatch(part) is None:
            return None
        low = part.lower()
        if low.startswith("0x"):
            numbers.append(int(low[2:] or "0", 16))
        elif low.startswith("0") and len(low) > 1:
            numbers.append(int(low, 8))
        else:
            numbers.append(int(low))
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (5 - len(numbers)):
        return None
    value = 0
    for n in head:
        value = value * 256 + n
    return (value << (8 * (5 - len(numbers)))) + last


def _classify_v4(addr: ipaddress.IPv4Address) -> str | None:
    if str(addr) in _METADATA_V4:
        return "metadata"
    if addr.is_loopback or addr.is_private or addr.is_link_local or addr.is_unspecified or addr.is_reserved \
            or addr in _SHARED:
        return "internal"
    return None


_SHARED = ipaddress.IPv4Network("100.64.0.0/10")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def _embedded_v4(addr: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv4-mapped, IPv4-compatible or NAT64 address stands for."""
    if addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    if (int(addr) >> 32 == 0 or addr in _NAT64) and int(addr) > 1:
        return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    return None


def _classify_v6(addr: ipaddress.IPv6Address) -> str | None:
    if addr in _METADATA_V6:
        return "metadata"
    if addr.is_loopback or addr.is_unspecified or addr.is_link_local or addr.is_private or addr.is_site_local:
        return "internal"
    return None


def classify_host(host: str) -> tuple[str | None, bool]:
    """("metadata" | "internal" | None, whether the host was written the usual way)."""
    written = host.lower()
    if not host.isascii():
        host = unicodedata.normalize("NFKC", host)
    host = host.lower().rstrip(".")
    if "%" in host:
        host = host.split("%", 1)[0] + ("]" if host.startswith("[") else "")
    if host.startswith("[") and host.endswith("]"):
        try:
            addr6 = ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return None, True
        embedded = _embedded_v4(addr6)
        if embedded is not None:  # ::ffff:7f00:1 is 127.0.0.1 spelled to slip past filters
            return _classify_v4(embedded), False
        # [::] reaches the local host like 0.0.0.0; [0000::1] is ::1 spelled to pass a filter
        return _classify_v6(addr6), host[1:-1] == addr6.compressed and not addr6.is_unspecified
    if host in _METADATA_NAMES:
        return "metadata", True
    if host in _LOOPBACK_NAMES or host.endswith(".localhost"):
        return "internal", host == "localhost"
    number = _ipv4_number(host)
    if number is not None and number < 2 ** 32:
        addr = ipaddress.IPv4Address(number)
        # 0.0.0.0 reaches the local host on Linux: a loopback spelled to pass filters
        return _classify_v4(addr), str(addr) == written and number != 0
    wildcard = _WILDCARD_DNS_RE.match(host)
    if wildcard:
        # app.10.0.0.1.nip.io, 10-0-0-1.nip.io, 7f000001.sslip.io: the address is the last labels
        parts = wildcard.group(1).replace("-", ".").split(".")
        label = "0x" + parts[-1] if re.fullmatch(r"[0-9a-f]{8}", parts[-1]) else ".".join(parts[-4:])
        number = _ipv4_number(label)
        if number is not None and number < 2 ** 32:
            return _classify_v4(ipaddress.IPv4Address(number)), False
    return None, True


def judge_url(scheme: str | None, userinfo: str | None, host: str, port: str | None, path: str) -> str | None:
    verdict, usual = classify_host(host)
    if verdict is None:
        return None
    if verdict == "metadata":
        return "metadata"
    if not usual or userinfo or host != host.lower():
        # 0x7f.1, LOCALHOST, trusted.example@10.0.0.1: spelled to pass a filter
        return "obfuscated-internal"
    scheme = scheme or ""
    scheme = scheme.lower()
    if scheme in _FETCH_SCHEMES or scheme == "ftp":
        return "scheme-internal"
    if port and port.isdigit() and int(port) in _INTERNAL_PORTS:
        return "internal-service"
    if path and _ADMIN_PATH_RE.search(path):
        return "internal-admin"
    return None


# http://a#@b, http://a?@b, http://a\\@b: a parser that reads '@' before '#', '?' or '\\' takes b
# for the host, one that follows the standard takes a: a filter passes the one, the fetch uses
# the other
_SECOND_HOST_RE = re.compile(r"[#?\\][^\s/@]{0,64}@(\[[^\]\s/]{1,80}\]|[^\s/\\?#:@\"'<>]{1,255})")


def _judge_match(m: re.Match[str]) -> str | None:
    scheme, _relative, userinfo, host, port, path = m.groups()
    rule = judge_url(scheme, userinfo, host, port, path)
    if rule is None and path and "@" in path:
        second = _SECOND_HOST_RE.match(path)
        if second and (classify_host(host)[0] or classify_host(second.group(1))[0]):
            return "obfuscated-internal"  # judged under both readings: one of them is inside
    return rule


def detect_ssrf(value: str, kind: str = "query", out_of_time: Callable[[], bool] | None = None,
                gate: Gate | None = None) -> str | None:
    """A rule name if a URL in `value` points at a metadata service or, suspiciously, inside.
    The whole value, URL by URL (no windows: `gate` is not needed)."""
    pattern = _PATH_URL_RE if kind == "path" else _URL_RE
    return first_rule(_urls(pattern, normalise(value)), _judge_match, out_of_time)


# where a URL can be: the URL pattern is only tried near these (its own scan tries a scheme at
# every letter of the text: 10 ms on a 200 KB JSON document, this one ~0.1 ms)
_URL_ANCHOR_RE = re.compile(r":[/\\]{1,3}(?=[^\s/\\\"'<>])|//(?=[^\s/\\\"'<>])")  # a host follows
MAX_SCHEME = 16


def _urls(pattern: re.Pattern[str], text: str) -> Iterator[re.Match[str]]:
    end = 0
    for anchor in _URL_ANCHOR_RE.finditer(text):
        at = anchor.start()
        if at < end:
            continue
        m = pattern.search(text, max(end, at - MAX_SCHEME - 1), anchor.end() + 2)
        if m is None:
            continue
        full = pattern.match(text, m.start())  # the whole URL, past the bounded search window
        if full is None:
            continue
        end = full.end()
        yield full
