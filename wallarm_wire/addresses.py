"""Listen and node addresses: `HOST:PORT` parsing, formatting, and what counts as loopback.

Both sides and the scripts read addresses the same way; IPv6 hosts are written `[addr]:PORT`.
"""

from __future__ import annotations

import ipaddress


def parse_hostport(value: str) -> tuple[str, int]:
    """`127.0.0.1:5050`, `[::1]:5050`, `localhost:5050` -> (host, port); ValueError says why."""
    value = value.strip()
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ValueError(f"bad address {value!r} (want [IPv6]:PORT)")
        port_text = rest[1:]
    else:
        host, sep, port_text = value.rpartition(":")
        if not sep or not host:
            raise ValueError(f"bad address {value!r} (want HOST:PORT)")
        if ":" in host:
            raise ValueError(f"bad address {value!r} (write IPv6 hosts as [addr]:PORT)")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"bad port in {value!r}")
    return host, int(port_text)


def format_hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def connect_host(host: str) -> str:
    """Where to connect to reach a listener bound on `host` (a wildcard bind is reached locally)."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)


def is_loopback_host(host: str) -> bool:
    """`localhost`, `*.localhost` (RFC 6761) and loopback IP literals."""
    host = host.lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
