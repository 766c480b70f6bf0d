"""Path traversal by resolving the path, not by spotting `../` in it.

Every path-like token of a value (a run of characters a path can hold, with a `/` or `\\` in
it) is normalised the way file servers and frameworks end up reading it: lower case,
backslashes as slashes, the escapes decoders miss or read leniently (`%2e`, `%2f`, `%5c`,
overlong UTF-8 `%c0%af` `%e0%80%af` `%c0%ae`, `%u2215`), Tomcat's path parameters (`..;/`,
`/x;jsessionid=1/`), a NUL and what follows it (`passwd%00.png`), repeated slashes and `/./`,
segments made only of dots (`....//`, what is left after a filter strips `../` once; Windows
also drops trailing dots and spaces). Then `..` is resolved against a stack of segments.

A value is traversal when the resolved path climbs two or more levels above where it started,
or reaches a well-known sensitive file: always for files no URL or form ever names by right
(`/etc/passwd`, `/proc/self/environ`, `win.ini`...), and after any climb for files that are
only secret when reached from outside their directory (`web.config`, `.git/`, `.env`...).
So `/etc/./passwd`, `/var/www/../../etc/passwd` and `..%c0%af..%c0%afboot.ini` block, while
`../images/a.png`, `docs/./intro` and `/api/v1/users` pass.

Linear: the tokens are found by one `findall` over the whole value, and each is judged by
C-level passes (`str.replace`, `translate`, `split`) and one walk over its segments.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Callable, Iterator

from node.detect.candidates import first_rule
from node.detect.windows import Gate, normalise

# a run a path can be made of (quotes, spaces, '&', '?', '=' and friends end it)
_TOKEN_RE = re.compile(r"[^\s\"'<>|?&=,()\[\]{}`*]+")
# the token characters that end at a position, matched on the text reversed: the token's start
# is found by reading back from the anchor, not by a greedy `.*` that backtracks from it
_TOKEN_CHARS_RE = re.compile(r"[^\s\"'<>|?&=,()\[\]{}`*]*")
MAX_TOKEN_BACK = 512
# the same with spaces inside (`../Program Files/Apache/conf/httpd.conf`), read as well
_SPACED_TOKEN_RE = re.compile(r"[^\t\n\"'<>|?&=,()\[\]{}`*]{1,512}")  # a path with spaces is short
# escapes left as text by a strict decoder but read as dots and slashes by lenient ones
_ESCAPES = (
    ("%c0%af", "/"), ("%e0%80%af", "/"), ("%c1%9c", "/"), ("%c1%1c", "/"), ("%c0%2f", "/"),
    ("%c0%5c", "/"), ("%f0%80%80%af", "/"), ("%u2215", "/"), ("%u2216", "/"), ("%u002f", "/"),
    ("%u005c", "/"), ("%c0%ae", "."), ("%e0%80%ae", "."), ("%c0%2e", "."), ("%u002e", "."),
    ("%2f", "/"), ("%5c", "/"), ("%2e", "."), ("%252f", "/"), ("%252e", "."), ("%255c", "/"),
)
# look-alike slashes and dots (fullwidth, division slash, set minus, one-dot leader)
_LOOKALIKES = str.maketrans({"\\": "/", "\uff0f": "/", "\u2215": "/", "\u2216": "/", "\uff3c": "/",
                             "\uff0e": ".", "\u2024": ".", "\x00": "\x00"})
# what a token needs for judge_token to find anything: a dot segment (in any spelling) or
# the name of a sensitive file or directory; looked for in lower-cased text
_ANCHORS = ("..", "%2e", "%c0%ae", "%e0%80%ae", "%u002e", "%252e", "%c0%2e", "\uff0e", "\u2024", "etc", "proc",
            ".ini", "windows", "winnt", "web-inf", ".ht", ".ssh", ".aws", ".bash_", ".docker", ".kube", "inetpub",
            "secrets", "var/", "var\\")
_PARAMS_RE = re.compile(r";[^/]*")
# files no request names by right: reached in any form, the value is an attack
_ALWAYS = re.compile(
    r"/(?:etc/(?:passwd|shadow|master\.passwd|sudoers|gshadow|security/opasswd|group|hosts|issue|hostname|crontab"
    r"|fstab|motd|resolv\.conf|environment|ssh/sshd?_config|my\.cnf|mysql/my\.cnf|nginx/nginx\.conf|httpd/conf/httpd\.conf"
    r"|apache2?/(?:apache2|httpd)\.conf|php/[^/]+/[^/]+/php\.ini|php\.ini|redis/redis\.conf|shells|exports|inittab)"
    r"|proc/(?:self|\d+|thread-self)/(?:environ|cmdline|maps|mem|status|fd(?:/\d+)?|root|cwd|exe|mounts)"
    r"|proc/(?:version|cpuinfo|meminfo|mounts|net/(?:tcp|udp|arp|route|fib_trie)|sched_debug|kallsyms)"
    r"|(?:var/)?run/secrets|var/log/(?:apache2?|httpd|nginx)/(?:access|error)[._]log|var/log/(?:auth\.log|secure|syslog|messages)"
    r"|(?:boot|win|system)\.ini|windows/(?:system32|repair)/[^/]|winnt/|inetpub/wwwroot/web\.config"
    r"|web-inf/[^/]*\.xml|\.htpasswd|\.ssh/(?:id_\w+|authorized_keys|known_hosts)"
    r"|\.aws/credentials|\.bash_history|\.docker/config\.json|\.kube/config)(?:/|$)"
)
# files that are secret when reached from outside: only after a climb out of a directory
_AFTER_CLIMB = re.compile(
    r"/(?:etc/[^/]+|var/[^/]+/|(?:usr|bin|sbin|lib|lib64|opt|srv|sys|dev|root|boot|proc|tmp)/|home/[^/]+/\.|logs?/|conf/"
    r"|program files(?: \(x86\))?/|inetpub/|[^/]*_log(?:/|$)|xferlog"
    r"|[^/]*\.(?:conf|cnf|cfg|config|ini|log|env|properties|ya?ml|xml|json|db|sqlite3?|sql|key|pem|bak|htaccess|php\d?|jsp|aspx?|sh|py|rb)"
    r"|\.git/|\.svn/|\.hg/|\.env\b|\.htaccess|web\.config|wp-config|web-inf/|meta-inf/|config/|id_[rd]sa)"
)


def _normalised(token: str) -> str:
    path = token.lower()
    if "%" in path:
        for escape, char in _ESCAPES:
            if escape in path:
                path = path.replace(escape, char)
    path = path.translate(_LOOKALIKES)
    if "\x00" in path:
        path = path.split("\x00", 1)[0]
    if ";" in path:
        path = _PARAMS_RE.sub("", path)
    return path


def _segments(path: str) -> Iterator[str]:
    """path.split("/") one segment at a time: the walk may stop early, and a megabyte of
    segments is then not made into a list first."""
    start = 0
    while True:
        end = path.find("/", start)
        if end < 0:
            yield path[start:]
            return
        yield path[start:end]
        start = end + 1


def resolve(token: str, enough: int = 0) -> tuple[list[str], int, int]:
    """(the segments `token` resolves to, levels climbed above its start, segments a `..`
    took back inside it). With `enough`, the walk stops once that many levels were climbed
    (the caller's verdict is made: a megabyte of '../' is not walked to its end)."""
    path = _normalised(token)
    stack: list[str] = []
    climbed = popped = run = 0
    for segment in _segments(path):
        if not segment or segment == ".":
            continue
        if len(segment) >= 2 and segment.rstrip(". ") == "":
            # '..', '....', '.. ': Windows drops trailing dots and spaces, and a filter that
            # strips '../' once leaves '../' of '....//'
            run += 1
            if run >= 2 or not stack or len(stack[-1]) <= 1:
                # '../..' climbs out of wherever it starts, and so does '..' after a one-character
                # segment: what comes before may be a decoy the server drops ('%/../%/..')
                climbed += 1
                if climbed == enough:
                    break
                if stack:
                    stack.pop()
            else:
                stack.pop()
                popped += 1
            continue
        run = 0
        stack.append(segment)
    return stack, climbed, popped


_DISGUISE_RE = re.compile(r"(?<![:/\\])[/\\]{2,}(?!/)|^[/\\]{2}[^./\\]*[/\\]|[/\\]\.[/\\]|\$[/\\]|^[/\\]{2}\?")


def _disguised(token: str) -> bool:
    """Written the way no link is: '//var//log', '/./', '\\\\host\\c$\\', '\\\\?\\' (a URL's
    'https://' or a protocol-relative '//cdn.example.com/' is not)."""
    return _DISGUISE_RE.search(token) is not None


def judge_token(token: str) -> str | None:
    if "/" not in token and "\\" not in token and "%" not in token and "\uff0f" not in token:
        return None
    stack, climbed, popped = resolve(token, enough=2)
    if climbed >= 2:
        return "escape"
    if not stack:
        return None
    joined = "/" + "/".join(stack)
    if _ALWAYS.search(joined):
        return "sensitive-file"
    if (climbed or popped or _disguised(token)) and _AFTER_CLIMB.search(joined):
        return "climb-to-sensitive"
    return None


def _spaced_tokens(text: str) -> Iterator[str]:
    for token in _SPACED_TOKEN_RE.findall(text):
        if " " in token and ".." in token:
            yield token


def _anchor_starts(text: str) -> Iterator[int]:
    """Where the regex of _ANCHORS as alternatives, in their order, matches (finditer), by one
    str.find per anchor and a heap: most letters start some anchor (e, p, w, i, s, v), so that
    regex tried its alternatives at a quarter of the positions (19 ms on 790 KB of a beacon's
    strings holding 7 anchors); the finds skip at C speed. Of anchors at one position the regex
    takes the first in its order, as the heap's (position, order) does, and goes on after its
    end."""
    heap = [(at, order) for order, anchor in enumerate(_ANCHORS) if (at := text.find(anchor)) >= 0]
    heapq.heapify(heap)
    pos = 0
    while heap:
        at, order = heap[0]
        if at < pos:  # inside the last match: where this anchor is next
            at = text.find(_ANCHORS[order], pos)
            if at < 0:
                heapq.heappop(heap)
            else:
                heapq.heapreplace(heap, (at, order))
            continue
        yield at
        pos = at + len(_ANCHORS[order])


def _anchored_tokens(text: str) -> Iterator[str]:
    """The tokens of `text` that hold an anchor, each once: found from the anchors (one C-level
    search), not by splitting the whole text into tokens (a JSON document of escaped slashes
    has tens of thousands). The start of a token is searched at most MAX_TOKEN_BACK characters
    back, and never before the end of the previous one: the text is read about once."""
    end = 0
    backwards = ""
    n = len(text)
    for at in _anchor_starts(text):
        if at < end:
            continue  # inside the token judged last
        low = max(end, at - MAX_TOKEN_BACK)
        if not backwards:
            backwards = text[::-1]
        # the token characters just before the anchor, back to `low` at most: where that match
        # ends in the reversed text is where the token starts in the text
        before = _TOKEN_CHARS_RE.match(backwards, n - at, n - low)
        token = _TOKEN_RE.match(text, n - before.end())  # type: ignore[union-attr]  # `*`: always a match
        if token is None or token.end() <= at:
            end = at + 1
            continue
        end = token.end()
        yield token.group(0)


def detect_ptrav(value: str, kind: str = "query", out_of_time: Callable[[], bool] | None = None,
                 gate: Gate | None = None) -> str | None:
    """A rule name if a path in `value` climbs out of its root or reaches a sensitive file.
    The whole value, token by token (`gate` is not needed: no windows); only the tokens with a
    dot segment or a sensitive name in them are resolved."""
    text = normalise(value).lower()
    rule = first_rule(_anchored_tokens(text), judge_token, out_of_time)
    if rule is None and " " in text and ".." in text:
        rule = first_rule(_spaced_tokens(text), judge_token, out_of_time)
    return rule
