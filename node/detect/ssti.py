"""Server-side template injection by structure: template expressions found by their
delimiters, then judged by what they evaluate.

Expressions: `{{...}}` (Jinja, Twig, Handlebars, Go, AngularJS), `{%...%}` statements,
`${...}` (Freemarker, Spring/JSP EL, Mako, Thymeleaf; also `$\\X{...}`, EL that a filter
escaped), `#{...}`, `*{...}`, `@{...}`, `~{...}`,
`<%...%>` / `<%=...%>` (ERB, JSP, EJS, ASP), `@(...)` (Razor). Thymeleaf's inlining
(`[[${...}]]`) is found by its inner `${`: `[[` alone is every JSON array of arrays. An expression is an injection when it

* computes with literals only: `{{7*7}}`, `{{(7)*(7)}}`, `{{7*'7'}}`, `{{'a'~'b'}}` (the probes
  every scanner sends first; a template in user text computes with names, `{{ price * qty }}`);
* reaches Python's object model: a dunder (`__class__`, `__globals__`...), a dunder or
  `constructor` built from string literals;
* starts from an object that leads to code: `config`, `self`, `request`, `lipsum`, `cycler`,
  `joiner`, `namespace`, `url_for`, `get_flashed_messages`, `_self`, `_context`;
* calls or reaches a code-execution name (`popen`, `system`, `getRuntime`, `forName`,
  `registerUndefinedFilterCallback`...), a Freemarker `?new()` / `?api`, a Spring type
  reference `T(java...)`, `|attr(...)`, or a filter that calls a function by name
  (`|filter('system')`);
* is a statement that loads code or prints the context (`{% import %}`, `{% debug %}`,
  `{% include '../x' %}`), or ERB/Ruby code that runs commands (`` `id` ``, `system`, `IO.popen`).

Outside delimiters: Freemarker directives (`<#assign x="freemarker...Execute"?new()>`),
Velocity (`#set($x=...)`, `$x.getClass().forName(...)`, `$class.inspect`), Smarty (`{php}`,
`{system('id')}`, `{$smarty.version}`).

`{{name}}`, `{{ user.name }}`, `{% for item in items %}`, `${HOME}` and `Hello {name}` pass: a
template in ordinary text is no injection by itself.

Linear: the delimiters are found in one left-to-right pass (an expression's body belongs to it
alone), each body is judged by single-pass regular expressions, and a long value is read in
overlapping windows (node/detect/windows.py), the caller's time bound checked between them.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from node.detect.literals import Literals
from node.detect.windows import Gate, judge_windows, normalise

MAX_SSTI_LEN = 2048

# openers and closers, in one alternation (longest first where they share a prefix)
_DELIM_RE = re.compile(r"\{\{|\}\}|\{%|%\}|%>|<%[=\-#]?|[$#*@~]\{|\$\\+[a-zA-Z]?\{|@\(|\}|\)")
_CLOSERS = {
    "{{": ("}}",), "{%": ("%}",), "<%": ("%>",), "${": ("}", "}}"), "#{": ("}", "}}"),
    "*{": ("}", "}}"), "@{": ("}", "}}"), "~{": ("}", "}}"), "@(": (")",),
}
_LITERAL = r"""(?:\d+(?:\.\d+)?|'[^'\n]{0,64}'|"[^"\n]{0,64}")"""
# literal OP literal (parens removed first): 7*7, (7)*(7), 7*'7', 'a'~'b', "a"+"b"
_URL_ESCAPE_RE = re.compile(r"[0-9a-f]{2}", re.I)
# (a date, 2012-10-17, is no arithmetic probe)
_LITERAL_ARITH_RE = re.compile(rf"(?<![\w.$])(?<!\d-)(?!\d{{4}}-\d\d(?!\d))(?!\d\d-\d\d-\d{{4}}){_LITERAL}\s*(?:\*\*?|//?|[+\-%~])\s*{_LITERAL}")
_DUNDER_RE = re.compile(r"__[a-z][a-z0-9_]{0,40}__|['\"](?:constructor|prototype)['\"]|\[\s*['\"]__", re.I)
_ROOT_RE = re.compile(
    r"(?<![\w.$])(?:config|self|_self|_context|request|lipsum|cycler|joiner|namespace|url_for|"
    r"get_flashed_messages|application|session|runtime|facescontext|pagecontext|settings|\$smarty)\s*(?:\.|\[|\||\(|$)",
    re.I,
)
_CODE_RE = re.compile(
    r"\b(?:popen|system|exec|eval|subprocess|__import__|getattr|globals|builtins|getruntime|"
    r"processbuilder|forname|getclass|newinstance|registerundefinedfiltercallback|getfilter|"
    r"inspect|subclasses|execute|objectconstructor|jythonruntime|spawn|passthru|shell_exec|"
    r"import_module|check_output|setattribute|getmethod|invoke|loadclass|defineclass|getclassloader)\s*\(|"
    r"\.\s*(?:os|sys|env|popen|system|class|classloader|module|mro|subclasses|getruntime|exec|"
    r"environ|application|builtins|globals)\b|"
    r"\?\s*(?:new|api|eval|interpret)\b|freemarker\s*\.|\bnew\s+[a-z_]+\.[a-z_]+|"
    r"\|\s*attr\b|\|\s*(?:filter|map|reduce|sort|select|reject|each)\s*\(\s*['\"](?:system|exec|passthru|shell_exec|popen|proc_open|call_user_func|assert|eval|pcntl_exec)",
    re.I,
)
# a Spring type reference: T(java.lang.Runtime); upper case (t('key') is an i18n helper)
_TYPE_REF_RE = re.compile(r"(?<![\w.])T\s*\(\s*[a-zA-Z_]+\s*\.")
# Ruby (ERB, #{...}): commands in backticks or %x(...), process and file APIs
_RUBY_RE = re.compile(
    r"`[^`]+`|%x[({\[]|\b(?:system|exec|spawn|syscall|open|require|load|eval|fork)\s*[(\s'\"]|"
    r"\b(?:io|file|dir|kernel|process|open3|pty|runtime)\s*(?:\.|::)\s*[a-z]",
    re.I,
)
_STATEMENT_RE = re.compile(r"[\s\-+~]*(\w+)\s*(.*)", re.S)
_LOADING_STATEMENTS = frozenset({"import", "from", "debug"})
_INCLUDING_STATEMENTS = frozenset({"include", "extends", "embed", "source", "use"})
_PATHISH_RE = re.compile(r"\.\.|/etc/|://|\\|^\s*['\"]/", re.M)
# outside delimiters
_FREEMARKER_RE = re.compile(r"[<\[]#(?:assign|local|global|setting|import|include|attempt|list|if)\b([^>\]]{0,256})", re.I)
_VELOCITY_RE = re.compile(
    r"#set\s*\(\s*\$|#(?:evaluate|include|parse|define)\s*\(|"
    r"\$!?\{?\w+(?:\.\w+(?:\([^()]{0,64}\))?){0,8}\.(?:getclass|class|forname|inspect|getruntime|exec|newinstance|invoke|getmethod)\b",
    re.I,
)
_SMARTY_RE = re.compile(
    r"\{\s*/?php\s*\}|\{\s*\$smarty\s*\.|\{\s*(?:system|exec|passthru|shell_exec|popen|eval|include_php|fetch)\s*[(\s]|"
    r"\{\s*self::|\{\s*smarty_internal",
    re.I,
)
_RAZOR_RE = re.compile(r"@[\s(]*system\s*\.\s*(?:diagnostics|io|reflection)", re.I)
_QUICK_RE = re.compile(r"[{}%\[\]()]|#set|\$\w", re.I)


def detect_ssti(value: str, kind: str = "query", out_of_time: Callable[[], bool] | None = None,
                gate: Gate | None = None) -> str | None:
    """A rule name if `value` injects a template expression, else None (also when
    `out_of_time()` stopped the windows of a long value)."""
    text = normalise(value)
    if len(text) < 4:
        return None
    size = len(text)
    return judge_windows(text, MAX_SSTI_LEN, lambda window, start, _owned: _detect_window(window, start + len(window) == size),
                         out_of_time, gate)


def _detect_window(text: str, ends_value: bool = True) -> str | None:
    if _QUICK_RE.search(text) is None:
        return None
    for opener, body in expressions(text, ends_value):
        rule = judge_expression(opener, body)
        if rule:
            return rule
    if "#" in text:
        for m in _FREEMARKER_RE.finditer(text):
            rule = _judge_body(m.group(1))
            if rule:
                return "freemarker-" + rule
        if _VELOCITY_RE.search(text):
            return "velocity"
    if "$" in text and _VELOCITY_RE.search(text):
        return "velocity"
    if "{" in text and _SMARTY_RE.search(text):
        return "smarty"
    if "@" in text and _RAZOR_RE.search(text):
        return "razor"
    return None


def expressions(text: str, ends_value: bool = True) -> list[tuple[str, str]]:
    """(opener, body) of each template expression, left to right; one expression open at a
    time (delimiters inside it are its text). An expression still open at the end is no
    expression (the engine would refuse it), unless `text` is a window that a longer value
    goes on after: then it runs to the window's end (its head is judged; a long expression
    is never skipped for being long)."""
    out: list[tuple[str, str]] = []
    opener = ""
    start = 0
    closers: tuple[str, ...] = ()
    pos = 0
    for m in _DELIM_RE.finditer(text):
        tok = m.group()
        if m.start() < pos:
            continue  # inside a Razor expression already read
        if opener:
            if tok in closers:
                out.append((opener, text[start : m.start()]))
                opener = ""
            continue
        # `$\\A{...}`: Java EL past a filter that escaped `${` (Hibernate Validator messages)
        key = "${" if tok[:2] == "$\\" else tok[:2]
        if key == "{%" and _URL_ESCAPE_RE.match(text, m.end()):
            continue  # `{%20`: URL-encoded text, not a statement
        if key == "@(":
            # Razor's @(...) nests parentheses: its end is found by a walk over them alone
            end = _matching_paren(text, m.end())
            if end >= 0 or not ends_value:
                out.append(("@(", text[m.end() : end if end >= 0 else len(text)]))
            pos = end + 1 if end >= 0 else len(text)
            continue
        if key in _CLOSERS:
            opener, start, closers = key, m.end(), _CLOSERS[key]
    if opener and not ends_value:
        out.append((opener, text[start:]))
    return out


_PAREN_RE = re.compile(r"[()]")


def _matching_paren(text: str, start: int) -> int:
    """The index of the `)` closing a `(` just before `start`, or -1."""
    depth = 1
    for m in _PAREN_RE.finditer(text, start):
        depth += 1 if m.group() == "(" else -1
        if not depth:
            return m.start()
    return -1


def judge_expression(opener: str, body: str) -> str | None:
    if not body.strip():
        return None
    if opener == "{%":
        m = _STATEMENT_RE.match(body)
        if m:
            word = m.group(1).lower()
            if word in _LOADING_STATEMENTS:
                return "statement-" + word
            if word in _INCLUDING_STATEMENTS and _PATHISH_RE.search(m.group(2)):
                return "statement-include"
    rule = _judge_body(body)
    if rule:
        return rule
    if opener in ("<%", "#{") and _RUBY_RE.search(body):
        return "ruby-code"
    return None


# Substrings without which the regular expression of the same name cannot match: a few C-speed
# substring searches spare a case-insensitive scan of every position against dozens of names
_ROOT_HINTS = ("config", "self", "_context", "request", "lipsum", "cycler", "joiner", "namespace", "url_for",
               "get_flashed", "application", "session", "runtime", "context", "settings", "$smarty")
_CODE_HINTS = ("popen", "system", "exec", "eval", "subprocess", "import", "getattr", "globals", "builtins",
               "runtime", "processbuilder", "forname", "getclass", "newinstance", "filtercallback", "getfilter",
               "inspect", "subclasses", "constructor", "jython", "spawn", "passthru", "check_output",
               "setattribute", "getmethod", "invoke", "loadclass", "defineclass", ".", "?", "|", "freemarker", "new")
_ROOT_LITERALS = Literals(_ROOT_HINTS)
_CODE_LITERALS = Literals(_CODE_HINTS)
_ARITH_HINTS = tuple("0123456789'\"")


def _judge_body(body: str) -> str | None:
    """An expression's text: literal arithmetic, the object model, code-leading objects or calls."""
    if any(h in body for h in _ARITH_HINTS):
        flat = body.replace("(", " ").replace(")", " ") if "(" in body else body
        if _LITERAL_ARITH_RE.search(flat):
            return "literal-arithmetic"
    low = body.lower()
    if "__" in body or "constructor" in low or "prototype" in low:
        if _DUNDER_RE.search(body):
            return "object-model"
    if _ROOT_LITERALS.any_in(low) and _ROOT_RE.search(body):
        return "global-object"
    if (_CODE_LITERALS.any_in(low) and _CODE_RE.search(body)) or ("T" in body and _TYPE_REF_RE.search(body)):
        return "code-call"
    return None
