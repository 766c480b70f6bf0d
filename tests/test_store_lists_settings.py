"""Both stores (SQLite, PostgreSQL): IP list entries and persisted mode settings."""

from __future__ import annotations

import asyncio
import sqlite3
import time

import pytest

from node.store.base import IPEntry, ModeOverride, ModeSettings
from node.rules.networks import parse_network
from node.store.ipkeys import ip_key


@pytest.fixture
async def store(stores):
    return await stores.open("lists")


@pytest.mark.parametrize("given,normalised", [
    ("203.0.113.7", "203.0.113.7/32"),
    (" 203.0.113.7 ", "203.0.113.7/32"),
    ("10.1.2.3/8", "10.0.0.0/8"),  # host bits dropped
    ("2001:DB8::1", "2001:db8::1/128"),
    ("2001:db8:0:0:1::/64", "2001:db8::/64"),
    ("::ffff:198.51.100.4", "198.51.100.4/32"),  # IPv4-mapped becomes the IPv4 address
    ("::ffff:198.51.100.0/120", "198.51.100.0/24"),
    ("0.0.0.0/0", "0.0.0.0/0"),
])
async def test_networks_are_normalised(store, given, normalised):
    assert str(parse_network(given)) == normalised
    entry = await store.add_ip_entry(IPEntry(list="deny", network=given))
    assert entry.network == normalised and entry.id is not None and entry.created_at > 0
    assert [e.network for e in await store.list_ip_entries("deny")] == [normalised]


@pytest.mark.parametrize("bad", ["", "nonsense", "300.1.2.3", "1.2.3.4/33", "2001:db8::/129", "1.2.3.4/-1",
                                 "1.2.3.4; DROP TABLE ip_entries", "x" * 500])
async def test_invalid_networks_are_rejected_with_a_clear_message(store, bad):
    with pytest.raises(ValueError, match="invalid IP network"):
        await store.add_ip_entry(IPEntry(list="allow", network=bad))
    assert await store.list_ip_entries(include_expired=True) == []


async def test_invalid_list_expiry_and_comment_are_rejected(store):
    with pytest.raises(ValueError, match="list must be one of"):
        await store.add_ip_entry(IPEntry(list="black", network="1.2.3.4"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="expires_at"):
        await store.add_ip_entry(IPEntry(list="deny", network="1.2.3.4", expires_at=float("nan")))
    with pytest.raises(ValueError, match="expires_at"):
        await store.add_ip_entry(IPEntry(list="deny", network="1.2.3.4", expires_at="tomorrow"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="comment"):
        await store.add_ip_entry(IPEntry(list="deny", network="1.2.3.4", comment="c" * 501))
    with pytest.raises(ValueError, match="list must be one of"):
        await store.list_ip_entries("black")  # type: ignore[arg-type]


async def test_add_list_delete_by_list(store):
    a = await store.add_ip_entry(IPEntry(list="allow", network="198.51.100.1", comment="office"))
    d = await store.add_ip_entry(IPEntry(list="deny", network="203.0.113.0/24"))
    g = await store.add_ip_entry(IPEntry(list="gray", network="2001:db8::/32"))
    assert len({a.id, d.id, g.id}) == 3
    assert [e.network for e in await store.list_ip_entries("allow")] == ["198.51.100.1/32"]
    assert [e.comment for e in await store.list_ip_entries("allow")] == ["office"]
    assert [e.list for e in await store.list_ip_entries()] == ["allow", "deny", "gray"]
    assert await store.delete_ip_entry(d.id) is True
    assert await store.delete_ip_entry(d.id) is False
    assert await store.delete_ip_entry(99999) is False
    assert [e.list for e in await store.list_ip_entries()] == ["allow", "gray"]
    with pytest.raises(ValueError):
        await store.delete_ip_entry("1")  # type: ignore[arg-type]


async def test_expired_entries_are_hidden_unless_asked(store):
    now = time.time()
    await store.add_ip_entry(IPEntry(list="deny", network="203.0.113.1", expires_at=now - 1))
    await store.add_ip_entry(IPEntry(list="deny", network="203.0.113.2", expires_at=now + 3600))
    await store.add_ip_entry(IPEntry(list="deny", network="203.0.113.3"))
    assert [e.network for e in await store.list_ip_entries("deny")] == ["203.0.113.2/32", "203.0.113.3/32"]
    every = await store.list_ip_entries("deny", include_expired=True)
    assert [e.network for e in every] == ["203.0.113.1/32", "203.0.113.2/32", "203.0.113.3/32"]
    assert every[0].expires_at == pytest.approx(now - 1)


async def test_an_entry_expires_while_the_store_runs(store):
    await store.add_ip_entry(IPEntry(list="gray", network="203.0.113.5", expires_at=time.time() + 0.3))
    assert len(await store.list_ip_entries("gray")) == 1
    deadline = time.time() + 5
    while await store.list_ip_entries("gray"):
        assert time.time() < deadline, "the entry never expired"
        await asyncio.sleep(0.05)


async def test_adding_a_listed_network_again_updates_it(store):
    first = await store.add_ip_entry(IPEntry(list="deny", network="203.0.113.9", comment="scanner"))
    again = await store.add_ip_entry(IPEntry(list="deny", network="203.0.113.9/32", expires_at=time.time() + 60,
                                             comment="scanner, 1 min"))
    assert again.id == first.id and again.created_at == first.created_at
    entries = await store.list_ip_entries("deny")
    assert len(entries) == 1 and entries[0].comment == "scanner, 1 min" and entries[0].expires_at is not None
    other = await store.add_ip_entry(IPEntry(list="allow", network="203.0.113.9"))  # another list: another entry
    assert other.id != first.id


async def test_entries_survive_a_restart(stores):
    s = await stores.open("restart")
    await s.add_ip_entry(IPEntry(list="deny", network="2001:db8::dead:beef", comment="ipv6"))
    await s.close()
    s = await stores.open("restart")
    [entry] = await s.list_ip_entries()
    assert (entry.list, entry.network, entry.comment) == ("deny", "2001:db8::dead:beef/128", "ipv6")


def test_ip_keys_order_and_map_ipv4():
    assert ip_key("203.0.113.7") == ip_key("::ffff:203.0.113.7") == ip_key(" 203.0.113.7")
    assert ip_key("10.0.0.1") < ip_key("10.0.0.2") < ip_key("2001:db8::1")
    assert ip_key("fe80::1%eth0") == ip_key("fe80::1")
    for bad in ("", "host.example", "1.2.3.4\x00", "1.2.3"):
        assert ip_key(bad) is None


async def test_mode_settings_absent_at_first(store):
    assert await store.load_mode_settings() is None


async def test_mode_settings_persist_across_reopen(stores):
    settings = ModeSettings(default="monitoring", overrides=[
        ModeOverride(mode="block", host="shop.example.org"),
        ModeOverride(mode="off", path_prefix="/health"),
        ModeOverride(mode="safe_blocking", host="api.example.com", path_prefix="/api/admin"),
    ])
    s = await stores.open("mode")
    await s.save_mode_settings(settings)
    assert await s.load_mode_settings() == settings
    await s.save_mode_settings(ModeSettings(default="block"))  # replaces, not appends
    await s.save_mode_settings(settings)
    await s.close()
    s = await stores.open("mode")
    assert await s.load_mode_settings() == settings


    # The value validates itself when built (node/rules/modes.py): nothing invalid reaches the store.
async def test_invalid_mode_settings_are_rejected_and_not_saved(store):
    await store.save_mode_settings(ModeSettings(default="block"))
    with pytest.raises(ValueError, match="mode must be one of"):
        await store.save_mode_settings(ModeSettings(default="paranoid"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="mode must be one of"):
        await store.save_mode_settings(ModeSettings(default="block", overrides=[ModeOverride(mode="x")]))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="host, a path_prefix"):
        await store.save_mode_settings(ModeSettings(default="block", overrides=[ModeOverride(mode="off")]))
    assert await store.load_mode_settings() == ModeSettings(default="block")


async def test_unreadable_saved_settings_are_ignored_not_fatal(stores, caplog):
    s = await stores.open("corrupt")
    await s.save_mode_settings(ModeSettings(default="block"))
    await s.close()
    edit = "UPDATE settings SET value = '{\"default\": \"bogus\"' WHERE key = 'mode_settings'"
    location = stores.location("corrupt")
    if stores.backend == "sqlite":  # somebody edited the file by hand
        with sqlite3.connect(location) as conn:
            conn.execute(edit)
    else:  # or the table
        import psycopg

        with psycopg.connect(location, autocommit=True) as conn:
            conn.execute(edit)
    s = await stores.open("corrupt")
    assert await s.load_mode_settings() is None
    assert "unreadable saved mode settings" in caplog.text
