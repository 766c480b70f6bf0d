"""Sortable 16-byte keys for IP addresses and networks, as the SQLite store indexes them.

Every address gets a 16-byte key (IPv4 mapped into ::ffff:0:0/96), so one index serves
IPv4 and IPv6 and a CIDR filter becomes a byte range. What an address or a network is, is
`node.rules.networks`'s job.
"""

from __future__ import annotations

import ipaddress
import socket

from node.rules.networks import IPAddress, IPNetwork, parse_address

_V4_MAPPED_PREFIX = b"\x00" * 10 + b"\xff\xff"


def address_key(addr: IPAddress) -> bytes:
    if isinstance(addr, ipaddress.IPv4Address):
        return _V4_MAPPED_PREFIX + addr.packed
    return addr.packed


def ip_key(text: str) -> bytes | None:
    """16-byte sortable key of an address, or None when `text` is not an address.

    Runs for every stored attack, so the common spellings take the C fast path (inet_pton,
    ~20x cheaper than ipaddress); an IPv4-mapped IPv6 address gets the same key as its IPv4."""
    try:
        return _V4_MAPPED_PREFIX + socket.inet_pton(socket.AF_INET, text)
    except (OSError, TypeError, ValueError):
        pass
    try:
        return socket.inet_pton(socket.AF_INET6, text)
    except (OSError, TypeError, ValueError):
        pass
    addr = parse_address(text)  # scope ids, surrounding blanks, ...
    return None if addr is None else address_key(addr)


def network_key_range(net: IPNetwork) -> tuple[bytes, bytes]:
    """Lowest and highest address keys inside `net` (inclusive)."""
    return address_key(net.network_address), address_key(net.broadcast_address)
