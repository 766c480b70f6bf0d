"""OS command injection by structure: a command separator followed by a real command.

A value is an injection when, after a shell separator (`;` `|` `||` `&` `&&` newline,
backtick, `$(`), or at its very start, comes a known command name (optionally with a path,
quotes or escapes inside the name, as in `c''at` or `/bin/c\\at`) whose next character
is what a shell would accept: end of value, a separator, or an argument that looks like
one (`-x`, `/path`, `$VAR`, a quote, a redirection, a URL, `${IFS}`). Prose fails it:
`cats & dogs`, `Tom & Jerry`, `rock|paper` (no command) or `I love dogs; cat lovers too`
(`cat` followed by a plain word).

The whole value is judged: normalised and, past MAX_SHELL_LEN characters, window by window
(node/detect/windows.py).
"""

from __future__ import annotations

import bisect
import functools
import itertools
import re
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass

from node.detect.literals import Literals
from node.detect.windows import Gate, judge_windows, normalise

MAX_SHELL_LEN = 2048
# commands that are plain English words too: they need an argument that looks like one
_AMBIGUOUS = frozenset(
    "cat ls id echo dir type sleep more less head tail find sort kill env set time date touch "
    "who w ps top pwd which tee grep awk sed cp mv ln mail print copy del exit ping host "
    "file sh nc net dig su more cut tr od xxd rev wc nl uniq diff cd rm expr eval exec "
    "source test true false yes read printf chmod chown mkdir rmdir tar zip unzip gzip "
    "base64 curl wget telnet ftp ssh scp php perl ruby python python3 python2 node lua "
    "java bash zsh ksh csh tcsh dash busybox sudo nohup timeout start call ver vol tasklist "
    "systeminfo whoami hostname uname ifconfig ipconfig netstat nslookup traceroute tracert "
    "route arp passwd useradd usermod crontab history shutdown reboot halt lsof strace "
    "mknod mkfifo socat xterm powershell cmd certutil bitsadmin wmic reg sc schtasks "
    "net1 findstr icacls attrib getent id uptime last lastlog finger pkill killall "
    "ncat netcat openssl gcc cc make env printenv export unset alias xargs nmap".split()
)
# commands that are almost never English: end of value or a separator after them suffices
_DISTINCT = frozenset(
    "whoami uname ifconfig ipconfig netstat nslookup tracert systeminfo tasklist wget curl "
    "ncat netcat busybox powershell certutil bitsadmin wmic mkfifo socat getent printenv "
    "lsof strace crontab useradd uptime xterm nmap bash zsh ksh csh tcsh "
    "dash ls id pwd ps dir env mshta rundll32 regsvr32 cscript wscript msiexec certreq forfiles".split()
)
# a value that is nothing but one of these is a probe (`cmd=whoami`)
ALONE_COMMANDS = _ALONE = frozenset("whoami ifconfig ipconfig systeminfo tasklist netstat uname printenv".split())
_COMMANDS = _AMBIGUOUS | _DISTINCT

# separators; a literal backslash-n counts too (payloads written for echo -e / printf)
# (the value's start is one too: _separators; without a `^` alternative first, sre jumps from
# one separator character to the next instead of trying every alternative at each position)
_SEP_RE = re.compile(r";|\|\|?|&&?|\n|\r|\\n|`|\$\(|\$\{ifs\}|\$ifs\b|\{(?=[a-z/])", re.I)
# in free text (JSON strings, bodies) a line break is just a line break
_TEXT_SEP_RE = re.compile(r";|\|\|?|&&?|`|\$\(|\$\{ifs\}|\$ifs\b|\{(?=[a-z/])", re.I)
TEXT_KINDS = frozenset({"json", "body", "multipart", "xml"})
# a line break followed, on its line, by what a command line of free text needs (a redirection,
# a variable, a glob, a quote or escape in the word, a number ending the line)
# (a real line break: the two characters backslash-n are everywhere in JSON inside JSON)
# (or a shell terminator ending the line: `;`, `&`, `|`, or a ` #` comment cutting off the rest)
_LINE_CANDIDATE_RE = re.compile(r"[\n\r]\s*(?=[^\n\r]{0,80}?(?:[>$?*'\"\\^]|\d\s*(?:$|[;|&#\n\r])|(?:[;&|]|\s#)[ \t]{0,16}(?:$|[\n\r])))")
# a command line of free text that ends where an injected one ends: a terminator or a comment
# closing the line, after which the backend's own command line (or nothing) follows
_TERMINATED_RE = re.compile(r"[^\n\r;&|#`]{0,80}?(?:[;&|]|(?<=\s)#)[ \t]{0,16}(?:$|[\n\r])")
# an argument no line of text has: a redirection into a file, a variable, a lone number that
# ends the line (`sleep 10`); not an option or a path (`ls -la` on a line of a README)
_STRONG_ARG_RE = re.compile(r"(?:\s|\$\{ifs\})+(?:\$[\w{(]|>{1,2}\s?[/\w]|[\w.\-]{1,64}\s?>{1,2}\s?[/\w]|\d+\s*(?:$|[;|&\n#]))", re.I)
# a command word: optional junk a shell ignores ($u empty variables, quotes, braces, +),
# shell keywords, optional path, letters with quoting tricks inside (c''at, c\at, c"a"t)
_CMD_RE = re.compile(
    r"(?:[\s'\"{(<+]|\$[a-z_]\w*(?=[\s+/]))*(?:[a-z_]+=[^\s;|&`]*+\s+)?(?:(?:then|else|do|elif|if|while|until|!|\{)\s+)?"
    # an optional path, globbed or not (/b??/, /???/, /bi[n]/)
    r"((?:/[\w.\-?*]*(?:\[[\w\-]{1,8}\][\w.\-?*]*)*)*/)?"
    # the name, with what the shell removes inside it: \\, '', "", 'x', "x", $@, ${x}, cmd's ^,
    # and glob characters that the shell expands (c?t, ca[t])
    r"((?:[a-z0-9_.\-]|\\(?=[a-z])(?!n(?![a-z\\]))|''|\"\"|'[a-z0-9_.\-]{1,12}'|\"[a-z0-9_.\-]{1,12}\"|['\"](?=[a-z0-9])|\^(?=[a-z\"])"
    r"|\$@|\$(?!\{?ifs)\{?\w?\}?(?=[a-z])|[?*]|\[[a-z0-9\-]{1,8}\])+)",
    re.I,
)
# what follows a command when it is used as one: an option, a path, a variable, a quote...
_ARG_RE = re.compile(
    # one separator unit per repetition (no nested quantifier: "\\s+" inside "(...)+" is
    # exponential on a long run of spaces); an option is `-x` or `--word`, not a markdown `-----`
    r"""(?:\s|\$\{ifs\}|\$ifs\b|\$\{?\d\}?|<|,|%09|\+)+(?:-{1,2}\w|/|~|\$|['"`<>|&;]|\.{1,2}/|\d|[a-z]+://|\\|\{|%|[a-z]:\\"""
    # a word written to a file: echo x>/var/www/x.php
    r"""|[\w.\-]{1,64}\s?>{1,2}\s?[/\w])""",
    re.I,
)
# in free text (JSON, XML, bodies) '+' is a plus and %09 is text: `& call +1 (555)` is a phone
_TEXT_ARG_RE = re.compile(_ARG_RE.pattern.replace("|%09|\\+)+", ")+"), re.I)
# ... or nothing: the command ends the value or the pipeline
_END_RE = re.compile(r"\s*(?:$|[;|&`)\n\r<>]|\\n|#)", re.I)
_QUICK_RE = re.compile(r"[;|&`\n\r]|\\n|\$\(|\$\{?ifs", re.I)
_CLEAN_RE = re.compile(r"\\|['\"^]|\$@|\$\{?\w?\}?(?=[a-z])", re.I)
_EMPTY_VAR_RE = re.compile(r"\$(?!ifs)[a-z_]\w*", re.I)
_IFS_FORM_RE = re.compile(r"\$\{ifs[^{}\s]{1,16}\}", re.I)
# ${PATH:0:1}, ${HOME::1}: a slash taken from a variable that starts with one (/bin/id spelled
# without a slash any filter sees)
_SLASH_EXPANSION_RE = re.compile(r"\$\{(?:path|home|pwd|oldpwd|shell):0?:1\}", re.I)
# wh``oami, wh$()oami: an empty command substitution inside a word expands to nothing
_EMPTY_SUBSTITUTION_RE = re.compile(r"(?<=[a-z])(?:``|\$\(\))(?=[a-z])", re.I)
# ${PATH:5:1}${SHELL:-2:1}: substrings of variables, the way a command is spelled from them
_SUBSTRING_EXPANSION_RE = re.compile(r"\$\{[a-z_]\w{0,30}:(?:\s+-)?\d+(?::-?\d+)?\}", re.I)


def _command_name(raw: str) -> str:
    # the quoting tricks need one of these characters; without them no substitution to run
    name = (_CLEAN_RE.sub("", raw) if "\\" in raw or "'" in raw or '"' in raw or "$" in raw or "^" in raw
            else raw).lower()
    if name.endswith(".exe"):
        name = name[:-4]
    return name


_GLOB_CHARS_RE = re.compile(r"[?*\[]")


def _resolved(path: str | None, raw: str) -> tuple[str, bool, bool]:
    """(the command `path` + `raw` names, whether quoting, escapes or globbing hid it, whether
    resolving it took a walk of the command paths: see MAX_GLOB_WALKS)."""
    name = _command_name(raw)
    hidden = name != raw.lower() and name != raw.lower()[:-4]
    if "?" in name or "*" in name or "[" in name or (path and ("?" in path or "*" in path or "[" in path)):
        found, walked = _glob_resolution((path + name).lower()) if path else (None, False)
        # a glob that matches nothing stays as written: `ls*` runs `ls*`; a command of the
        # current directory (`c?t` without a path) is not one we know
        return found or _GLOB_CHARS_RE.split(name, 1)[0], found is not None, walked
    return name, hidden, False


_WORD_ARG_RE = re.compile(r"\s+[\w.]")


_PROSE_WORD_RE = re.compile(r"(?:^|\s)[a-z]{2,}(?=[\s,.:!?]|$)", re.I)
# shell characters that a sentence does not have (';' it has; '>' opens a quoted reply)
_ENTITY_RE = re.compile(r"&#?[a-z0-9]{1,8};", re.I)
_ENTITY_END_RE = re.compile(r"&#?[a-z0-9]{1,8}$", re.I)
_CODE_SPAN_RE = re.compile(r"`[^`\n]{1,200}`")
_MARKUP_RE = re.compile(r"<[!?/]?[a-z][^<>\n]{0,256}>|<\?[^<>\n]{0,256}\?>", re.I)
_SHELL_META_RE = re.compile(r"[|&$<]|(?<!^)(?<!\n)>")


def _is_prose(value: str) -> bool:
    """Sentences with `code spans` in them (markdown), not a command line: judged on the text
    outside the spans."""
    if "<" in value:  # an XML or HTML document's text: its markup is no shell syntax (an element
        value = _MARKUP_RE.sub("\n", value)  # starts a line: `<p>> quoted reply`)
    if "&" in value:  # nor are its character references (`&gt; quoted`, `&amp;t=42s`)
        value = _ENTITY_RE.sub(" ", value)
    if "`" in value:
        value = _CODE_SPAN_RE.sub(" ", value)
    # the shell characters first: one search that stops at the first, where counting the words
    # is a walk of every character (30 us on 2 KB; most texts that get here have such a character)
    if _SHELL_META_RE.search(value):
        return False
    return len(list(itertools.islice(_PROSE_WORD_RE.finditer(value), 4))) == 4


def _in_code_span(value: str, at: int, spans: list[tuple[int, int]]) -> bool:
    return any(start < at < end for start, end in spans)


class RequestGlobWalks:
    """The glob walks left to the request being judged, over all its values and windows
    (MAX_REQUEST_GLOB_WALKS): the engine makes one per request and sets it in
    REQUEST_GLOB_WALKS around each run of this analyser."""

    __slots__ = ("left",)

    def __init__(self) -> None:
        self.left = MAX_REQUEST_GLOB_WALKS

    @property
    def exhausted(self) -> bool:
        return self.left < 0


# a context variable, not an argument of every analyser: the node judges in two threads (a lane
# for large requests), each with an engine of its own; None outside a request (tests, tools)
REQUEST_GLOB_WALKS: ContextVar[RequestGlobWalks | None] = ContextVar("request_glob_walks", default=None)


class _GlobWalks:
    """The globs one window had resolved by a walk of the command paths, in its lines and
    after its separators alike (MAX_GLOB_WALKS), and the request's (MAX_REQUEST_GLOB_WALKS)."""

    __slots__ = ("count", "request")

    def __init__(self) -> None:
        self.count = 0
        self.request = REQUEST_GLOB_WALKS.get()

    def spent(self, walked: bool) -> bool:
        """Count a resolution (a walk or not); then whether the window is `exceeded`."""
        if walked:
            self.count += 1
            if self.request is not None:
                self.request.left -= 1
        return self.exceeded

    @property
    def exceeded(self) -> bool:
        return self.count > MAX_GLOB_WALKS or (self.request is not None and self.request.exhausted)


def _strong_line(value: str, at: int, walks: _GlobWalks) -> bool:
    """A line of free text starting at `at` is a command line (see _judge)."""
    m = _CMD_RE.match(value, at)
    if not m:
        return False
    name, hidden, walked = _resolved(m.group(1), m.group(2))
    walks.spent(walked)
    if name not in _COMMANDS:
        return False
    tail = value[m.end() :]
    if _STRONG_ARG_RE.match(tail):
        return True
    if (name in _DISTINCT or hidden or m.group(1) is not None) and _TERMINATED_RE.match(tail) \
            and (_END_RE.match(tail) or _TEXT_ARG_RE.match(tail) or _WORD_ARG_RE.match(tail)):
        return True  # `\nnslookup x.evil.example;`, `\r\nuname -a #`, `\n/usr/bin/rm -rf /tmp/x;`
    # a bare `id` or `ls` on a line of its own is a GraphQL field or a list item, not a command;
    # a globbed, quoted or pathed one (/???/chm??, c'a't, /bin/id) is nothing else, and a quoted
    # or globbed name takes any argument (`ns"l"ookup x.evil.example`)
    return (hidden or m.group(1) is not None) and (_END_RE.match(tail) is not None or _TEXT_ARG_RE.match(tail) is not None
                                                  or (hidden and _WORD_ARG_RE.match(tail) is not None))


def _separators(seps: re.Pattern[str], value: str) -> Iterator[tuple[int, int, str]]:
    """(start, end, text) of each separator of `value`, its start first ((0, 0, ''))."""
    yield 0, 0, ""
    for sep in seps.finditer(value):
        yield sep.start(), sep.end(), sep.group(0)


def _judge(value: str, kind: str, value_start: bool = True, owned: int | None = None, snippet: bool = False) -> str | None:
    """The separators of `value` before `owned` (all by default), each with the rest of
    `value` after it; `value_start`: `value` starts the value (not a window inside it);
    `snippet`: the value is a shell snippet written as text (see _is_snippet)."""
    has_sep: bool | None = None  # _QUICK_RE.search(value), searched when a command at the start asks
    prose: bool | None = None
    text = kind in TEXT_KINDS
    walks = _GlobWalks()
    if text and not snippet:
        # in free text a line break starts a command line only when what follows could be
        # nothing else: an unmistakable command, or one with an unmistakable argument; the
        # lines without a character such a line needs are skipped by the regex
        for line in _LINE_CANDIDATE_RE.finditer(value, 0, len(value) if owned is None else owned):
            if _strong_line(value, line.end(), walks):
                return "separator-command"
            if walks.exceeded:
                return "glob-flood"
    seps = _TEXT_SEP_RE if text else _SEP_RE
    spans: list[tuple[int, int]] | None = None if text and "`" in value else []
    for sep_start, sep_end, opener in _separators(seps, value):
        if owned is not None and sep_start >= owned:
            break  # the next window judges it
        if spans is None:
            # free text: a sentence's code spans (`for f in *.txt; do ...`) are documentation
            if prose is None:
                prose = _is_prose(value)
            spans = [m.span() for m in _CODE_SPAN_RE.finditer(value)] if prose else []
        if spans and opener != "`" and _in_code_span(value, sep_start, spans):
            continue
        if opener == ";" and "&" in value[max(0, sep_start - 10) : sep_start] \
                and _ENTITY_END_RE.search(value, max(0, sep_start - 10), sep_start):
            continue  # the end of an HTML / XML entity (Krak&#xF3;w, &lt;td&gt;), not a separator
        at_start = sep_start == 0 and opener == ""
        if at_start and not value_start:
            continue  # a window's first character is no command line's start
        if opener == "`":
            if value[sep_end : sep_end + 1] == "`" or value[sep_start - 1 : sep_start] == "`":
                continue  # a markdown code fence
            if prose is None:
                prose = _is_prose(value)
            if prose:
                continue  # a markdown code span in a sentence
        m = _CMD_RE.match(value, sep_end)
        if not m:
            continue
        name, hidden, walked = _resolved(m.group(1), m.group(2))
        if walks.spent(walked):
            return "glob-flood"
        if name not in _COMMANDS:
            continue
        if snippet and not hidden and m.group(1) is None and name not in _PROBES:
            continue  # the snippet's own next command (`tar -czf x ./p && ls -lh x`)
        tail = value[m.end() :]
        arg = (_TEXT_ARG_RE if text else _ARG_RE).match(tail)
        if opener == "{" or value[m.start(1 if m.group(1) else 2) - 1 : m.start(1 if m.group(1) else 2)] == "{":
            # {cat,/etc/passwd}: brace expansion makes the words a command line
            if tail[:1] == "," and (_ARG_RE.match(tail) or (name in _DISTINCT and tail[1:2].isalnum())):
                return "brace-expansion"
            if opener == "{":
                continue
        end = _END_RE.match(tail)
        if at_start:
            # no separator before it: only an unmistakable command line counts
            if name in _ALONE and not tail.strip():
                return "command-alone"
            if (name in _DISTINCT or m.group(1) or hidden) and arg and tail.lstrip()[:1] in ("-", "/", "$"):
                if has_sep is None:
                    has_sep = _QUICK_RE.search(value) is not None
                if not has_sep:
                    return "obfuscated-command" if hidden else "command-line"
            if hidden and name in _DISTINCT and end:
                return "obfuscated-command"  # w"h"o"am"i, who^ami
            if arg and _globbed_sensitive_file(tail):
                return "glob-file"  # cat /e??/p?ss??
            continue
        if arg:
            return "separator-command"
        if name in _DISTINCT and (end or _WORD_ARG_RE.match(tail)):
            return "separator-command"
        if (opener == "$(" and ")" in tail) or (opener == "`" and "`" in tail):
            return "command-substitution"  # a closed $(echo x) / `id`
        if (m.group(1) or hidden) and end:  # ;/usr/bin/id, ;w'h'oami
            return "separator-command"
    return None


# ---------------------------------------------------------------- globbing
# where commands live; a globbed path (/b??/c?t, /???/??t, /bin/ca[t]) is resolved against these
_BIN_DIRS = ("/bin/", "/usr/bin/", "/sbin/", "/usr/sbin/", "/usr/local/bin/")
_GLOB_TARGETS = "\n".join(d + c for d in _BIN_DIRS for c in sorted(_COMMANDS - {"w", "cc", "sc"}))
_SENSITIVE_FILES = "\n".join((
    "/etc/passwd", "/etc/shadow", "/etc/group", "/etc/hosts", "/etc/issue", "/etc/sudoers", "/proc/self/environ",
    "/proc/self/cmdline", "/proc/version", "/root/.bash_history", "/root/.ssh/id_rsa", "/var/log/auth.log",
))
_GLOB_ARG_RE = re.compile(r"\s*(/[\w.\-?*\[\]/]{2,64})")
MAX_GLOB = 64


# a glob's units, each matching one character but `*`: `?`, `*`, a set `[...]`, or a literal
# character (an unclosed `[`, and the `[` of `[]`: an empty class is no regex, so a bracket)
_GLOB_UNIT_RE = re.compile(r"\[[^\]]+\]|.", re.S)
# what separates a glob's runs of literal characters
_GLOB_NOT_LITERAL_RE = re.compile(r"[?*]|\[[^\]]+\]")


@functools.lru_cache(maxsize=256)
def _glob_regex(pattern: str) -> re.Pattern[str] | None:
    """A glob as a regex over one line; None when too long. `*` is `[^/\\n]*`: with at
    most 64 characters matched against short paths its cost is bounded."""
    if len(pattern) > MAX_GLOB or pattern.count("*") > 4:
        return None
    out = []
    for unit in _GLOB_UNIT_RE.findall(pattern):
        if unit == "?":
            out.append("[^/\\n]")
        elif unit == "*":
            out.append("[^/\\n]*")
        elif len(unit) > 1:
            out.append("[" + re.escape(unit[1:-1]) + "]")
        else:
            out.append(re.escape(unit))
    return re.compile("^" + "".join(out) + "$", re.M)


@dataclass(frozen=True, slots=True)
class _Lines:
    """Command paths sorted, as one text: those starting with a glob's head are one run of it."""
    lines: list[str]
    text: str
    starts: list[int]  # where each line starts in `text` (and where the text ends, last)

    @classmethod
    def of(cls, lines: list[str]) -> _Lines:
        ordered = sorted(lines)
        starts = [0]
        for line in ordered:
            starts.append(starts[-1] + len(line) + 1)
        return cls(ordered, "\n".join(ordered), starts)

    def first_match(self, glob: str, head: str) -> str | None:
        """The first line (in _GLOB_TARGETS' order) the lower-case glob matches. Only the run of
        lines starting with its head is walked, and only when each run of two or more of its
        literal characters is in that run of lines: the regex is made last (a distinct glob of a
        flood such as `;/bin/?x7q2` costs two bisections and a find)."""
        lo = bisect.bisect_left(self.lines, head)
        hi = bisect.bisect_left(self.lines, head + "\U0010ffff", lo)
        if lo == hi:
            return None
        start, end = self.starts[lo], self.starts[hi] - 1
        text = self.text
        if any(len(run) > 1 and text.find(run, start, end) < 0 for run in _GLOB_NOT_LITERAL_RE.split(glob)):
            return None
        rx = _glob_regex(glob)
        found = [m.group(0) for m in rx.finditer(text, start, end)] if rx else []
        # of several matches, the first in _GLOB_TARGETS' order is the one its walk found
        return min(found, key=_TARGET_ORDER.__getitem__) if found else None


_TARGET_LIST = _GLOB_TARGETS.split("\n")
_TARGET_ORDER = {line: i for i, line in enumerate(_TARGET_LIST)}
_ALL_LINES = _Lines.of(_TARGET_LIST)
# a glob without `*` matches lines of its own length only (each unit is one character)
_LINES_BY_LENGTH = {n: _Lines.of([t for t in _TARGET_LIST if len(t) == n]) for n in {len(t) for t in _TARGET_LIST}}


# globs one window may have resolved by a walk of the command paths: the walk is short, but a
# distinct glob compiles a regex (~20 µs), and `;/???/?a? ;/???/?b? ...` can be thousands of
# them; past this many the value is judged a command injection (no text has them)
MAX_GLOB_WALKS = 16
# and one request in all: a window's limit leaves 15 distinct globs in each of thousands of
# fields (`f1=;/bin/?x1 ... ;/bin/?x15&f2=...`: ~90 µs a field, 340 ms a megabyte). The benign
# corpora's requests take at most 1 walk, their attacks 3; past this many the request is a glob
# flood (a finding), and the engine judges no more of it (a partial verdict)
MAX_REQUEST_GLOB_WALKS = 64


def glob_command(pattern: str) -> str | None:
    """The command a globbed path such as `/b??/c?t` expands to, if it names one."""
    return _glob_resolution(pattern.lower())[0]


def _glob_resolution(low: str) -> tuple[str | None, bool]:
    """(the command the lower-case glob expands to, whether that took a walk of the command
    paths). A match is a whole path, which starts with the glob's head (its text before the
    first glob character): a head no path starts with (the `/cgi-bin/list.cgi?` of a URL in a
    query value) is answered by a bisection, without a walk."""
    m = _GLOB_CHARS_RE.search(low)
    head = low[: m.start()] if m else low
    at = bisect.bisect_left(_ALL_LINES.lines, head)
    if at == len(_ALL_LINES.lines) or not _ALL_LINES.lines[at].startswith(head):
        return None, False
    return _glob_walk(low, head), True


def _glob_walk(low: str, head: str) -> str | None:
    """The first command path (in _GLOB_TARGETS' order) the glob matches, as a command name:
    looked for among the paths of its length when it has no `*` (each other unit is one
    character)."""
    if len(low) > MAX_GLOB:
        return None  # _glob_regex makes no regex of it: before its units are listed
    lines = _ALL_LINES if "*" in low else _LINES_BY_LENGTH.get(len(_GLOB_UNIT_RE.findall(low)))
    found = lines.first_match(low, head) if lines is not None else None
    return found.rsplit("/", 1)[1] if found else None


def _globbed_sensitive_file(tail: str) -> bool:
    m = _GLOB_ARG_RE.match(tail)
    if not m or not any(c in m.group(1) for c in "?*["):
        return False
    rx = _glob_regex(m.group(1).lower())
    return bool(rx and rx.search(_SENSITIVE_FILES))


# ---------------------------------------------------------------- rewritings judged again
# a=c;b=at;$a$b: the shell's own variables, assigned then used
# (the look-behind, not a leading alternation, lets the scan skip to letters at C speed)
_ASSIGN_RE = re.compile(r"(?<![^;&|\n\s`(])([a-z_]\w{0,15})=([\w./\-]{0,32})(?=[;&|\n\s])", re.I)
_VAR_RE = re.compile(r"\$\{?([a-z_]\w{0,15})\}?", re.I)
MAX_ASSIGNMENTS = 16
# cmd.exe: variables a command line is made of, and their substrings (%comspec:~-7,3%)
_WINDOWS_VARS = {"comspec": "cmd", "systemroot": "c:\\windows", "windir": "c:\\windows",
                 "programfiles": "c:\\progra~1"}
_WINDOWS_VAR_RE = re.compile(r"%(comspec|systemroot|windir|programfiles)%", re.I)
_WINDOWS_SUBSTRING_RE = re.compile(r"%[a-z_]\w{0,30}:~-?\d+(?:,-?\d+)?%", re.I)
# c^m^d, w^h^o^a^m^i: an escape inside a word (the literal first: sre skips to each '^')
_CARET_RE = re.compile(r"\^(?<=[\w\"]\^)(?=[\w\"])")
# cmd.exe and PowerShell: each pattern starts with the word found by a substring search, so
# it is only tried where that word is (a regex with a leading alternation tries every position:
# 35 ms on a 190 KB JSON document)
_CMD_SWITCH_AT_RE = re.compile(r"cmd(?:\.exe)?\s*/[ckr]\s*\S", re.I)
_POWERSHELL_AT_RE = re.compile(
    # cmdlets no prose uses, with anything after them
    r"(?:invoke-(?:expression|webrequest|restmethod|command|item|wmimethod|shellcode|mimikatz)"
    r"|start-process|new-object|get-content|set-content|add-content|get-childitem|remove-item|copy-item|out-file"
    r"|stop-process|get-wmiobject|get-ciminstance|get-itemproperty|set-itemproperty|get-localuser"
    r"|start-bitstransfer|set-executionpolicy|add-mppreference)(?:\s+[\w\"'$(\[./\\-]|\s*[(|;])"
    # aliases and common cmdlets: only with an argument that looks like one
    r"|(?:iex|iwr|irm|gci|sal|get-process)(?:\s+(?:-\w|[\"'$(\[]|[a-z]:\\|/|\w+://|net\.webclient|system\.)|\s*\()"
    r"|\.download(?:string|file)\s*\(|frombase64string\s*\(|\[system\.(?:io|net|diagnostics|reflection)\.\w"
    r"|(?:powershell|pwsh)(?:\.exe)?\s+-\w",
    re.I,
)
# the words the patterns start with; those that are names must start a word
_POWERSHELL_WORDS = (
    "invoke-", "start-process", "new-object", "get-content", "set-content", "add-content", "get-childitem",
    "remove-item", "copy-item", "out-file", "stop-process", "get-wmiobject", "get-ciminstance", "get-itemproperty",
    "set-itemproperty", "get-localuser", "start-bitstransfer", "set-executionpolicy", "add-mppreference",
    "get-process", "iex", "iwr", "irm", "gci", "sal", ".download", "frombase64string", "[system.", "powershell", "pwsh",
)
_WORD_BEFORE = frozenset(" \t\n;&|(`'\"{\\/")


_POWERSHELL_LITERALS = Literals(_POWERSHELL_WORDS)
_POWERSHELL_WORD_RE = re.compile("|".join(map(re.escape, _POWERSHELL_WORDS)))  # on lower-cased text


def _found_at(low: str, words: re.Pattern[str], pattern: re.Pattern[str], text: str) -> bool:
    """`pattern` matches `text` where one of `words` occurs in `low` (its lower-cased copy), the
    word starting a word of its own unless it starts with punctuation."""
    for m in words.finditer(low):
        at = m.start()
        if (not low[at].isalpha() or at == 0 or low[at - 1] in _WORD_BEFORE) and pattern.match(text, at):
            return True
    return False


_CMD_WORD_RE = re.compile("cmd")


# how far an assignment _ASSIGN_RE finds reaches around its '=': a name of 16 characters before
# it; after it a value of 32 and the character that must follow the value
_NAME_REACH = 16
_VALUE_REACH = 34


def _assignments(value: str) -> list[tuple[str, str]]:
    """_ASSIGN_RE.findall(value)[:MAX_ASSIGNMENTS], the regex walking only the stretches around
    the '=' signs (merged where they meet; its lookbehind still sees the character before a
    stretch): not every character of a window of a binary or obfuscated body with a few '='
    (30 us on 2 KB). Every match lies in its '=' sign's stretch, so none is lost or added."""
    found: list[tuple[str, str]] = []
    n = len(value)
    at = value.find("=")
    while at >= 0 and len(found) < MAX_ASSIGNMENTS:
        lo = max(0, at - _NAME_REACH)
        hi = min(n, at + _VALUE_REACH)
        at = value.find("=", at + 1)
        while 0 <= at and at - _NAME_REACH <= hi:
            hi = min(n, at + _VALUE_REACH)
            at = value.find("=", at + 1)
        found.extend(_ASSIGN_RE.findall(value, lo, hi))
    return found[:MAX_ASSIGNMENTS]


def _with_variables(value: str) -> str | None:
    """`value` with the variables it assigns itself substituted (None when it assigns none)."""
    assigned = dict(_assignments(value))
    if not assigned:
        return None
    return _VAR_RE.sub(lambda m: assigned.get(m.group(1), m.group(0)), value)


def _windows(value: str) -> str | None:
    """A cmd.exe command line with its escapes removed and its variables expanded; None when
    it has neither."""
    if "^" not in value and "%" not in value:
        return None
    text = _CARET_RE.sub("", value) if "^" in value else value
    if "%" in text:
        text = _WINDOWS_VAR_RE.sub(lambda m: _WINDOWS_VARS[m.group(1).lower()], text)
    return text if text != value else None


def _windows_rule(value: str) -> str | None:
    if "%" in value and ":~" in value and len(_WINDOWS_SUBSTRING_RE.findall(value)) >= 2:
        return "env-substring"  # %comspec:~-16,1%%comspec:~-1%...: a command spelled from variables
    low = value.lower()
    if "cmd" in low and _found_at(low, _CMD_WORD_RE, _CMD_SWITCH_AT_RE, value):
        return "cmd-switch"
    # substring tests first (C speed, ~10 us on a window): the word regex is ~60 ns a character
    if _POWERSHELL_LITERALS.any_in(low) and _found_at(low, _POWERSHELL_WORD_RE, _POWERSHELL_AT_RE, value):
        return "powershell"
    return None


def detect_shell(value: str, kind: str = "query", out_of_time: Callable[[], bool] | None = None,
                 gate: Gate | None = None) -> str | None:
    """A rule name if `value` injects an OS command, else None (also when `out_of_time()`
    stopped the windows of a long value; see windows.judge_windows for `gate`)."""
    text = normalise(value)
    if "${" in text:  # ${IFS%??}, ${IFS::1}: expansions of IFS that still give a space
        text = _SLASH_EXPANSION_RE.sub("/", _IFS_FORM_RE.sub("${IFS}", text))
    if "``" in text or "$()" in text:
        text = _EMPTY_SUBSTITUTION_RE.sub("", text)
    snippet = kind in TEXT_KINDS and _is_snippet(text)
    return judge_windows(text, MAX_SHELL_LEN,
                         lambda window, start, owned: _detect_window(window, kind, start, owned, snippet), out_of_time, gate)


# free text that opens with a plain command and an option is a shell snippet written as text
# (a code sample in a JSON field); its own separators chain its own commands
# (the command on the first line: a value that opens with a line break opens with a separator)
_SNIPPET_RE = re.compile(r"[ \t]*(?:sudo\s+)?([a-z][\w.\-]{0,30})\s+-{1,2}[a-z]", re.I)
# ... except the commands injections probe with, which no snippet chains in
_PROBES = frozenset("id whoami uname ifconfig ipconfig netstat systeminfo tasklist hostname printenv env "
                    "nc ncat netcat wget curl bash sh zsh python python3 perl ruby php powershell cmd sleep ping".split())


def _is_snippet(text: str) -> bool:
    """`text` (free text) opens with a plain command and an option; an XML document's text is
    read without its markup (its text nodes are judged one by one as well)."""
    if text[:1] == "<":
        text = _MARKUP_RE.sub(" ", text[:4096])
    m = _SNIPPET_RE.match(text)
    return m is not None and m.group(1).lower() in _COMMANDS


def _detect_window(value: str, kind: str, start: int, owned: int, snippet: bool = False) -> str | None:
    rule = _judge(value, kind, start == 0, owned, snippet)
    if rule is None and "$" in value:
        if "=" in value:
            assigned = _with_variables(value)
            if assigned is not None and assigned != value:
                rule = _judge(assigned, kind, start == 0, owned, snippet)
        if rule is None:
            # $u, $aaaa: unset variables expand to nothing (`/bin$u/cat /etc$u/passwd`)
            stripped = _EMPTY_VAR_RE.sub("", value)
            if stripped != value:
                rule = _judge(stripped, kind, start == 0, owned, snippet)
    windows = _windows(value) if "^" in value or "%" in value else None
    if rule is None and windows is not None:
        rule = _judge(windows, kind, start == 0, owned, snippet)
    if rule is None:
        # cmd.exe and PowerShell shapes: tried only where their words are (_found_at)
        rule = _windows_rule(windows or value)
    if rule is None and "${" in value and len(_SUBSTRING_EXPANSION_RE.findall(value)) >= 2:
        rule = "env-substring"  # ${PATH:5:1}${LS_COLORS:10:1}...: bash's %comspec:~-7,3%
    return rule
