"""The SSTI detector (node/detect/ssti.py) on families generated from the template languages'
grammars: every delimiter x literal arithmetic shape, object-model chains built from the
code-leading globals, filters and string concatenation, statements, and the Java/Ruby/PHP
engines' own syntax; and ordinary text with templates in it that must pass."""

from __future__ import annotations

import itertools
import random

import pytest

from node.detect.engine import Engine
from node.detect.ssti import detect_ssti, expressions

DELIMS = [("{{", "}}"), ("${", "}"), ("#{", "}"), ("*{", "}"), ("<%=", "%>"), ("<%", "%>"), ("@(", ")"),
          ("{{ ", " }}"), ("${{", "}}"), ("[[${", "}]]"), ("__${", "}__::.x")]
NUMBERS = ["7", "(7)", "1337", "9", "'7'", '"7"', "2.5"]
OPS = ["*", "+", "/", "%", "**", "-", " * ", "~"]
STRINGS = ["'a'", '"a"', "'__cla'", "'ss__'"]

GLOBALS = ["config", "self", "request", "lipsum", "cycler", "joiner", "namespace", "url_for", "get_flashed_messages",
           "self._TemplateReference__context", "request.application", "_self.env"]
CHAINS = [".__class__", ".__init__.__globals__", ".__class__.__mro__[1].__subclasses__()", ".items()",
          "['__globals__']['os'].popen('id').read()", "|attr('__class__')", ".__dict__", ".environ",
          "|attr('application')|attr('\\x5f\\x5fglobals\\x5f\\x5f')", ".registerUndefinedFilterCallback('exec')"]
ROOTS_FOR_CHAINS = ["''", "()", "[]", "x", "foo.bar", "1", "{}"]
CODE_CALLS = ["os.popen('id').read()", "__import__('os').system('id')", "getattr(x,'__class__')",
              "T(java.lang.Runtime).getRuntime().exec('id')", "\"freemarker.template.utility.Execute\"?new()(\"id\")",
              "x?api.class.forName('java.lang.Runtime')", "new java.lang.ProcessBuilder('id').start()",
              "''.getClass().forName('java.lang.Runtime')", "['id']|filter('system')", "['id']|map('passthru')|join"]


def _sample(items: list, n: int, seed: int) -> list:
    return items if len(items) <= n else random.Random(seed).sample(items, n)


def arithmetic_family() -> list[str]:
    out = []
    for (o, c), a, op, b in itertools.product(DELIMS, NUMBERS, OPS, NUMBERS):
        if op == "~" and o not in ("{{", "{{ ", "${{"):
            continue
        out.append(f"{o}{a}{op}{b}{c}")
    for (o, c), a, b in itertools.product(DELIMS[:3], STRINGS, STRINGS):
        out.append(f"{o}{a}~{b}{c}" if o.startswith("{{") else f"{o}{a}+{b}{c}")
    return _sample(out, 400, 11)


def object_model_family() -> list[str]:
    out = []
    for g, ch, (o, c) in itertools.product(GLOBALS, CHAINS, DELIMS[:2] + [("{{ ", " }}"), ("{%print ", "%}")]):
        out.append(f"{o}{g}{ch}{c}")
    for r, ch in itertools.product(ROOTS_FOR_CHAINS, [c for c in CHAINS if "__" in c]):
        out.append("{{" + r + ch + "}}")
    for glued in ["('__cla'~'ss__')", "['__cl'+'ass__']", "|attr(['_'*2,'class','_'*2]|join)"]:
        out.append("{{()" + glued + "}}" if glued.startswith("|") else "{{''[" + glued + "]}}")
    return _sample(out, 400, 12)


def code_call_family() -> list[str]:
    out = []
    for code, (o, c) in itertools.product(CODE_CALLS, DELIMS[:4] + [("{{ ", " }}"), ("<%= ", " %>")]):
        out.append(f"{o}{code}{c}")
    return out


def statement_and_engine_family() -> list[str]:
    out = []
    for dash, body in itertools.product(["", "-", "+"], ["import os", "from os import popen", "debug",
                                                        "include '../../etc/passwd'", "extends '/etc/passwd'",
                                                        "for c in ''.__class__.__mro__[1].__subclasses__()",
                                                        "set x = config.items()", "if self.__dict__", "print 7*7"]):
        out.append(f"{{%{dash} {body} {dash}%}}")
    for name in ["ex", "x", "value"]:
        out.append(f'<#assign {name}="freemarker.template.utility.Execute"?new()>${{{name}("id")}}')
        out.append(f'[#assign {name}="freemarker.template.utility.ObjectConstructor"?new()]')
        out.append(f"#set(${name}=7*7)${name}")
        out.append(f'#set(${name}="")${name}.class.forName("java.lang.Runtime")')
        out.append(f"${name}.getClass().forName('java.lang.Runtime').getRuntime()")
    out += ['$class.inspect("java.lang.Runtime")', "{php}echo `id`;{/php}", "{system('id')}", "{$smarty.version}",
            "{self::getStreamVariable('file:///etc/passwd')}", "<%= `id` %>", "<%= system('id') %>",
            "<%= IO.popen('id').readlines() %>", "<%= File.open('/etc/passwd').read %>", "#{`id`}", "#{%x(id)}",
            "@System.Diagnostics.Process.Start(\"cmd.exe\")", "*{T(java.lang.Runtime).getRuntime()}",
            "{{#with \"s\" as |string|}}{{#with \"e\"}}{{this.pop}}{{lookup string.sub \"constructor\"}}{{/with}}{{/with}}"]
    return out


FAMILIES = {
    "arithmetic": arithmetic_family,
    "object-model": object_model_family,
    "code-call": code_call_family,
    "statements-and-engines": statement_and_engine_family,
}

BENIGN = [
    "{{ user.name }}", "Hello {{name}}, welcome back", "{{ price | currency }} per month", "{{ items|length }} items",
    "{% for item in items %}{{ item }}{% endfor %}", "{% if user %}Hi{% endif %}", "{{ t('greeting') }}",
    "${HOME}/projects", "Hello {name}, your order #1234 is ready", "Total: ${total}", "${user.firstName}",
    "#{id}", "Price: $5 (tax incl.)", "email me @(home) or at work", "<%= user.name %>", "{{ 'Hello' }}",
    "Released 2012-10-17, see {{ release.notes }}", '{"a": [[1, 2], [3-4]]}', "{%20%22Version%22:%20%222012-10-17%22}",
    "{{ count }} of {{ total }}", "CSS: .a{color:red} .b{margin:0}", "f(x) = x * (x + 1)", "a {{ b",
    "Use {{#each items}}{{this}}{{/each}} in Handlebars", "`Hello ${name}`", "<#if user??>hi</#if>",
    "$5.99 and $10.50", "Math: 7*7=49", "{{7}} is a number", "@(Model.Title)",
]


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine()


@pytest.mark.parametrize("family", list(FAMILIES))
def test_detector_finds_every_member_of_a_family(family: str) -> None:
    members = FAMILIES[family]()
    assert len(members) >= 20
    missed = [m for m in members if not detect_ssti(m)]
    assert not missed, f"{family}: missed {len(missed)} of {len(members)}: {missed[:8]}"


@pytest.mark.parametrize("family", list(FAMILIES))
def test_engine_blocks_every_member_of_a_family(engine: Engine, family: str) -> None:
    members = FAMILIES[family]()
    missed = [m for m in members if not engine.analyze_value(m).is_attack]
    assert not missed, f"{family}: missed {len(missed)} of {len(members)}: {missed[:8]}"


@pytest.mark.parametrize("value", BENIGN)
def test_templates_in_ordinary_text_pass(engine: Engine, value: str) -> None:
    assert detect_ssti(value) is None
    assert not engine.analyze_value(value).is_attack


def test_expressions_are_read_left_to_right_once() -> None:
    assert expressions("a {{ x }} b ${y} c <%= z %>") == [("{{", " x "), ("${", "y"), ("<%", " z ")]
    assert expressions("{{ a ${b} }}") == [("{{", " a ${b} ")]  # one expression open at a time
    assert expressions("{{ never closed") == []  # no engine evaluates it
    assert expressions("{{ cut by a window", ends_value=False) == [("{{", " cut by a window")]


def test_payload_after_padding_is_found() -> None:
    for pad in ("a" * 10_000, "{{ name }} " * 1_500, "x" * 3_000 + "{{"):
        assert detect_ssti(pad + " {{''.__class__}}"), len(pad)


def test_time_bound_is_respected() -> None:
    calls = []

    def out_of_time() -> bool:
        calls.append(1)
        return len(calls) > 3

    assert detect_ssti("{{ name }} " * 100_000, "query", out_of_time) is None
    assert len(calls) == 4
