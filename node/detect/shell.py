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

import re
from collections.abc import Callable

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
    "dash ls id pwd ps dir".split()
)
# a value that is nothing but one of these is a probe (`cmd=whoami`)
ALONE_COMMANDS = _ALONE = frozenset("whoami ifconfig ipconfig systeminfo tasklist netstat uname printenv".split())
_COMMANDS = _AMBIGUOUS | _DISTINCT

# separators; a literal backslash-n counts too (payloads written for echo -e / printf)
_SEP_RE = re.compile(r"(?:^|;|\|\|?|&&?|\n|\r|\\n|`|\$\(|\$\{ifs\}|\$ifs\b)", re.I)
# in free text (JSON strings, bodies) a line break is just a line break
_TEXT_SEP_RE = re.compile(r"(?:^|;|\|\|?|&&?|`|\$\(|\$\{ifs\}|\$ifs\b)", re.I)
TEXT_KINDS = frozenset({"json", "body", "multipart", "xml"})
# a command word: optional junk a shell ignores ($u empty variables, quotes, braces, +),
# shell keywords, optional path, letters with quoting tricks inside (c''at, c\at, c"a"t)
_CMD_RE = re.compile(
    r"(?:[\s'\"{(<+]|\$[a-z_]\w*(?=[\s+/]))*(?:[a-z_]+=[^\s;|&`]*+\s+)?(?:(?:then|else|do|elif|if|while|until|!|\{)\s+)?"
    r"((?:/[\w.\-]*)*/)?((?:[a-z0-9_.\-]|\\(?=[a-z])(?!n(?![a-z]))|''|\"\"|\$@|\$\{?\w?\}?(?=[a-z]))+)",
    re.I,
)
# what follows a command when it is used as one: an option, a path, a variable, a quote...
_ARG_RE = re.compile(
    # one separator unit per repetition (no nested quantifier: "\\s+" inside "(...)+" is
    # exponential on a long run of spaces); an option is `-x` or `--word`, not a markdown `-----`
    r"""(?:\s|\$\{ifs\}|\$ifs\b|\$\{?\d\}?|<|,|%09|\+)+(?:-{1,2}\w|/|~|\$|['"`<>|&;]|\.{1,2}/|\d|[a-z]+://|\\|\{|%|[a-z]:\\)""",
    re.I,
)
# ... or nothing: the command ends the value or the pipeline
_END_RE = re.compile(r"\s*(?:$|[;|&`)\n\r<>]|\\n|#)", re.I)
_QUICK_RE = re.compile(r"[;|&`\n\r]|\\n|\$\(|\$\{?ifs", re.I)
_CLEAN_RE = re.compile(r"\\|''|\"\"|\$@|\$\{?\w?\}?(?=[a-z])", re.I)
_EMPTY_VAR_RE = re.compile(r"\$(?!ifs)[a-z_]\w*", re.I)


def _command_name(raw: str) -> str:
    # the quoting tricks need one of these characters; without them no substitution to run
    name = (_CLEAN_RE.sub("", raw) if "\\" in raw or "'" in raw or '"' in raw or "$" in raw else raw).lower()
    if name.endswith(".exe"):
        name = name[:-4]
    return name


_WORD_ARG_RE = re.compile(r"\s+[\w.]")


_PROSE_WORD_RE = re.compile(r"(?:^|\s)[a-z]{2,}(?=[\s,.:!?]|$)", re.I)
_SHELL_META_RE = re.compile(r"[;|&$<>]")


def _is_prose(value: str) -> bool:
    """Sentences with `code spans` in them (markdown), not a command line."""
    return len(_PROSE_WORD_RE.findall(value)) >= 4 and not _SHELL_META_RE.search(value)


def _judge(value: str, kind: str, value_start: bool = True, owned: int | None = None) -> str | None:
    """The separators of `value` before `owned` (all by default), each with the rest of
    `value` after it; `value_start`: `value` starts the value (not a window inside it)."""
    has_sep = _QUICK_RE.search(value) is not None
    prose = None
    seps = _TEXT_SEP_RE if kind in TEXT_KINDS else _SEP_RE
    for sep in seps.finditer(value):
        if owned is not None and sep.start() >= owned:
            break  # the next window judges it
        at_start = sep.start() == 0 and sep.group(0) == ""
        if at_start and not value_start:
            continue  # a window's first character is no command line's start
        if sep.group(0) == "`":
            if value[sep.end() : sep.end() + 1] == "`" or value[sep.start() - 1 : sep.start()] == "`":
                continue  # a markdown code fence
            if prose is None:
                prose = _is_prose(value)
            if prose:
                continue  # a markdown code span in a sentence
        m = _CMD_RE.match(value, sep.end())
        if not m:
            continue
        name = _command_name(m.group(2))
        if name not in _COMMANDS:
            continue
        tail = value[m.end() :]
        arg = _ARG_RE.match(tail)
        end = _END_RE.match(tail)
        if at_start:
            # no separator before it: only an unmistakable command line counts
            if name in _ALONE and not tail.strip():
                return "command-alone"
            if (name in _DISTINCT or m.group(1)) and arg and not has_sep and tail.lstrip()[:1] in ("-", "/"):
                return "command-line"
            continue
        if arg:
            return "separator-command"
        if name in _DISTINCT and (end or _WORD_ARG_RE.match(tail)):
            return "separator-command"
        opener = sep.group(0)
        if (opener == "$(" and ")" in tail) or (opener == "`" and "`" in tail):
            return "command-substitution"  # a closed $(echo x) / `id`
        if m.group(1) and end:  # ;/usr/bin/id
            return "separator-command"
    return None


def detect_shell(value: str, kind: str = "query", out_of_time: Callable[[], bool] | None = None,
                 gate: Gate | None = None) -> str | None:
    """A rule name if `value` injects an OS command, else None (also when `out_of_time()`
    stopped the windows of a long value; see windows.judge_windows for `gate`)."""
    return judge_windows(normalise(value), MAX_SHELL_LEN,
                         lambda window, start, owned: _detect_window(window, kind, start, owned), out_of_time, gate)


def _detect_window(value: str, kind: str, start: int, owned: int) -> str | None:
    rule = _judge(value, kind, start == 0, owned)
    if rule is None and "$" in value:
        # $u, $aaaa: unset variables expand to nothing (`/bin$u/cat /etc$u/passwd`)
        stripped = _EMPTY_VAR_RE.sub("", value)
        if stripped != value:
            rule = _judge(stripped, kind, start == 0, owned)
    return rule
