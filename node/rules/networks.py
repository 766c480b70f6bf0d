"""IP addresses and networks: the one place that says what they are and how they are written.

An IPv4-mapped IPv6 address (`::ffff:203.0.113.7`) is the IPv4 address: a client seen over a
dual-stack socket must match the same list entry as over IPv4.
"""

from __future__ import annotations

import ipaddress

from node.rules import RuleError

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_TEXT = 100  # longer than any address with a prefix; refuse before parsing


def parse_network(text: str) -> IPNetwork:
    """`203.0.113.7` -> 203.0.113.7/32; `10.1.2.3/8` -> 10.0.0.0/8 (host bits dropped); an
    IPv4-mapped IPv6 address or network becomes the IPv4 one. `str()` of the result is the
    canonical text every list entry is stored under. Raises RuleError (a ValueError)."""
    if not isinstance(text, str):
        raise RuleError("network", f"invalid IP network {text!r}: not an IP address or CIDR (want a string like 203.0.113.0/24)")
    value = text.strip()
    if not value or len(value) > MAX_TEXT:
        raise RuleError("network", f"invalid IP network {text[:MAX_TEXT]!r}: not an IP address or CIDR like 203.0.113.0/24")
    try:
        net = ipaddress.ip_network(value, strict=False)
    except ValueError as err:
        raise RuleError("network", f"invalid IP network {text!r}: not an IP address or CIDR ({err})") from None
    if isinstance(net, ipaddress.IPv6Network) and net.prefixlen >= 96:
        mapped = net.network_address.ipv4_mapped
        if mapped is not None:
            net = ipaddress.IPv4Network((mapped, net.prefixlen - 96))
    return net


def parse_address(text: str) -> IPAddress | None:
    """The address in `text`, or None when it is not one (a client IP may be garbage)."""
    if not isinstance(text, str) or not text or len(text) > MAX_TEXT:
        return None
    try:
        addr = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr
