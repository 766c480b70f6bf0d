"""The SQL analyser's shapes added for issue 14 (node/detect/sqli.py), as families generated
from the grammar: contexts (as is, after a quote, after a double quote, a path segment) x
separators (spaces, tabs, line breaks, comments) x conditions (EXISTS subqueries, IN lists,
functions around SQL calls, PROCEDURE ANALYSE, UNION with a subquery); and the look-alikes
that must pass."""

from __future__ import annotations

import itertools

import pytest

from node.detect.sqli import detect_sqli

SEPARATORS = [" ", "\t", "\n", "/**/", "/*x*/", "/*!*/", "  "]
LOGIC = ["AND", "and", "Or", "||", "&&"]
CONDITIONS = [
    "EXISTS(SELECT * FROM users)", "exists (select 1 from dual)", "NOT EXISTS(SELECT id FROM t)",
    "1 IN (1,2)", "'a' in ('a','b')",
    "GTID_SUBSET(CONCAT(0x7e,(SELECT user())),1)", "JSON_KEYS((SELECT CONVERT((SELECT @@version) USING utf8)))",
    "polygon((select*from(select user())a))",
]
PREFIXES = [("'", "-- x"), ('"', "#"), ("1'", "-- -"), ("')", "/*"), ("1", "--"), ("-1", "")]


def _sep(text: str, sep: str) -> str:
    return text.replace(" ", sep)


def condition_family() -> list[str]:
    out = []
    for (pre, post), logic, cond, sep in itertools.product(PREFIXES, LOGIC, CONDITIONS, SEPARATORS[:5]):
        out.append(_sep(f"{pre} {logic} {cond}{post}", sep))
    return out


def clause_family() -> list[str]:
    out = []
    for num, sep, tail in itertools.product(["1", "9999", "-1", "0"], SEPARATORS, ["/*", "--", "#", ""]):
        out.append(_sep(f"{num} PROCEDURE ANALYSE(){tail}", sep))
        out.append(_sep(f"{num} uNIoN(sEleCT+1,2,3){tail}", sep))
        out.append(_sep(f"{num} UNION ALL SELECT (SELECT @@version),1,2{tail}", sep))
    return out


def path_family() -> list[str]:
    out = []
    for prefix, payload, sep in itertools.product(
        ["/api/v1/files/", "/items/", "/a/b/c/d/e/"],
        ["-1 AND length(database())>1", "0 OR not 1=2--", "1 Or TRuE#", "1) AND 1=0 OR 1=1", "-1;SHUTDOWN",
         "9999 or 0x41=0x41 --"],
        SEPARATORS[:4],
    ):
        out.append(prefix + _sep(payload, sep))
    return out


def column_expression_family() -> list[str]:
    """UNION SELECT whose first column is an expression: the concatenation PortSwigger's labs
    teach (`username || '~' || password`), MSSQL's `+`, arithmetic."""
    out = []
    columns = ["username || '~' || password", "username||':'||password", "user + ':' + pass", "a*2, b",
               "name || 0x3a || email, NULL"]
    for (pre, post), col, sep in itertools.product(PREFIXES, columns, SEPARATORS[:5]):
        out.append(_sep(f"{pre} UNION SELECT {col} FROM users{post}", sep))
    return out


FAMILIES = {"conditions": condition_family, "clauses": clause_family, "column-expressions": column_expression_family}

BENIGN = [
    "O'Reilly", "union was a great select", "1 or 2 apples", "Select all", "it's -- great",
    "document.querySelector('#title').textContent = 'Hi';", "$('#menu').toggle()", "See '#section-2' below",
    "exists in 3 colors", "1 in 10 people agree", "Is 1 in 2 a fair chance?",
    "select apples + oranges from the store", "Select one - from the list", "please select name + surname from the form",
]
BENIGN_PATHS = ["/blog/2024/05/or-and-not", "/v1/items/1 or 2 apples", "/docs/select-a-plan/2", "/users/42/orders/7",
                "/files/1-2-3/and-more", "/api/v2/(legacy)/list"]


@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_member_of_a_family_is_found(family: str) -> None:
    members = FAMILIES[family]()
    assert len(members) >= 20
    missed = [m for m in members if not detect_sqli(m)]
    assert not missed, f"{family}: missed {len(missed)} of {len(members)}: {missed[:8]}"


def test_path_segments_are_values() -> None:
    members = path_family()
    missed = [m for m in members if not detect_sqli(m, "path")]
    assert not missed, missed[:8]


@pytest.mark.parametrize("value", BENIGN)
def test_look_alikes_pass(value: str) -> None:
    assert detect_sqli(value, "json") is None


@pytest.mark.parametrize("path", BENIGN_PATHS)
def test_benign_paths_pass(path: str) -> None:
    assert detect_sqli(path, "path") is None


@pytest.mark.parametrize("value", ["SELECT name FROM users;", "UPDATE accounts SET balance = balance - 10 WHERE id = ?;",
                                   "The query SELECT * FROM orders WHERE id = 42 returned nothing, can you check?",
                                   "&lt;pre&gt;&lt;code&gt;SELECT name FROM users;&lt;/code&gt;&lt;/pre&gt;"])
def test_statements_written_out_in_documents_are_text(value: str) -> None:
    assert detect_sqli(value, "json") is None
    assert detect_sqli(value, "xml") is None


@pytest.mark.parametrize("value", ["SELECT name FROM users;", "select * from users where id = 1"])
def test_statements_in_parameters_are_injected_sql(value: str) -> None:
    assert detect_sqli(value, "query")
    assert detect_sqli(value, "form")


@pytest.mark.parametrize("value", ["1; DROP TABLE users", "x; select * from users", "'; drop table users--",
                                   "1 union select password from users", "' or 1=1--"])
def test_stacked_and_broken_out_statements_are_injections_in_documents_too(value: str) -> None:
    assert detect_sqli(value, "json")
