"""OS command injection by structure: a command separator followed by a real command.

A value is an injection when, after a shell separator (`;` `|` `||` `&` `&&` newline,
backtick, `$(`), or at its very start, comes a known command name (optionally with a path,
quotes or escapes inside the name, as in `c''at` or `/bin/c\\at`) whose next character
is what a shell would accept: end of value, a separator, or an argument that looks like
one (`-x`, `/path`, `$VAR`, a quote, a redirection, a URL, `${IFS}`). Prose fails it:
`cats & dogs`, `Tom & Jerry`, `rock|paper` (no command) or `I love dogs; cat lovers too`
(`cat` followed by a plain word).
"""

from __future__ import annotations

import re

MAX_SHELL_LEN = 4096

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
    "lsof strace passwd crontab useradd hostname uptime xterm nmap bash zsh ksh csh tcsh "
    "dash ping sleep ls id pwd ps env".split()
)
_COMMANDS = _AMBIGUOUS | _DISTINCT

_SEP_RE = re.compile(r"(?:^|;|\|\|?|&&?|\n|\r|`|\$\(|\$\{ifs\}|\$ifs\b)", re.I)
# in free text (JSON strings, bodies) a line break is just a line break
_TEXT_SEP_RE = re.compile(r"(?:^|;|\|\|?|&&?|`|\$\(|\$\{ifs\}|\$ifs\b)", re.I)
TEXT_KINDS = frozenset({"json", "body", "multipart", "xml"})
# a command word: optional path, letters with shell-quoting tricks inside (c''at, c\at, c"a"t)
_CMD_RE = re.compile(
    r"[\s'\"{(<]*(?:[a-z]+=\S*\s+)?((?:/[\w.\-]*)*/)?((?:[a-z0-9_.\-]|\\(?=[a-z])|''|\"\"|\$@|\$\{?\w?\}?(?=[a-z]))+)",
    re.I,
)
_ARG_RE = re.compile(
    r"""(?:\s+|\$\{ifs\}|\$ifs\b|\$\{?\d\}?|<|,|\t|%09|\+)+(?:[-/~$'"`<>|&;]|\.{1,2}/|\d|[a-z]+://|\\|\{|%)|\s*(?:$|[;|&`)\n\r<>])""",
    re.I,
)
_QUICK_RE = re.compile(r"[;|&`\n\r]|\$\(|\$\{?ifs", re.I)
_CLEAN_RE = re.compile(r"\\|''|\"\"|\$@|\$\{?\w?\}?(?=[a-z])", re.I)


def _command_name(raw: str) -> str:
    name = _CLEAN_RE.sub("", raw).lower()
    if name.endswith(".exe"):
        name = name[:-4]
    return name


_WORD_ARG_RE = re.compile(r"\s+[\w.]")


def detect_shell(value: str, kind: str = "query") -> str | None:
    """A rule name if `value` injects an OS command, else None."""
    value = value[:MAX_SHELL_LEN]
    has_sep = _QUICK_RE.search(value) is not None
    seps = _TEXT_SEP_RE if kind in TEXT_KINDS else _SEP_RE
    for sep in seps.finditer(value):
        at_start = sep.start() == 0 and sep.group(0) == ""
        if at_start and has_sep:
            continue  # judged after its separators instead
        m = _CMD_RE.match(value, sep.end())
        if not m:
            continue
        name = _command_name(m.group(2))
        if name not in _COMMANDS:
            continue
        tail = value[m.end() :]
        arg = _ARG_RE.match(tail)
        if at_start:
            # no separator at all: only an unmistakable command line counts
            if name in _DISTINCT and arg and tail.strip() and not tail.strip()[0].isalpha():
                return "command-line"
            continue
        if arg or (name in _DISTINCT and _WORD_ARG_RE.match(tail)):
            return "separator-command"
        if m.group(1) and name in _COMMANDS:  # /bin/cat, /usr/bin/id: a path to a command
            return "separator-command"
    return None
