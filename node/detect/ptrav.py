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

Linear: each step is a C-level pass (`str.replace`, one `findall`, `split`) over a window of
at most MAX_LEN characters (node/detect/windows.py judges longer values window by window).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from node.detect.windows import Gate, judge_windows, normalise

MAX_LEN = 2048
# a run a path can be made of (quotes, spaces, '&', '?', '=' and friends end it)
_TOKEN_RE = re.compile(r"[^\s\"'<>|?&=,()\[\]{}`*]+")
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
_PARAMS_RE = re.compile(r";[^/]*")
# files no request names by right: reached in any form, the value is an attack
_ALWAYS = re.compile(
    r"/(?:etc/(?:passwd|shadow|master\.passwd|sudoers|gshadow|security/opasswd)"
    r"|proc/(?:self|\d+|thread-self)/(?:environ|cmdline|maps|mem|status|fd(?:/\d+)?|root|cwd|exe)"
    r"|(?:boot|win|system)\.ini|windows/(?:system32|repair)/[^/]|winnt/"
    r"|web-inf/[^/]*\.xml|\.htpasswd|\.ssh/(?:id_\w+|authorized_keys|known_hosts)"
    r"|\.aws/credentials|\.bash_history|\.docker/config\.json|\.kube/config)(?:/|$)"
)
# files that are secret when reached from outside: only after a climb out of a directory
_AFTER_CLIMB = re.compile(
    r"/(?:etc/[^/]+|var/(?:log|lib|mail|spool|run)/|usr/(?:local/)?(?:etc|lib)/|root/|home/[^/]+/\.|boot/"
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


def resolve(token: str) -> tuple[list[str], int, int]:
    """(the segments `token` resolves to, levels climbed above its start, segments a `..`
    took back inside it)."""
    path = _normalised(token)
    stack: list[str] = []
    climbed = popped = 0
    for segment in path.split("/"):
        if not segment or segment == ".":
            continue
        if len(segment) >= 2 and segment.rstrip(". ") == "":
            # '..', '....', '.. ': Windows drops trailing dots and spaces, and a filter that
            # strips '../' once leaves '../' of '....//'
            if stack:
                stack.pop()
                popped += 1
            else:
                climbed += 1
            continue
        stack.append(segment)
    return stack, climbed, popped


def judge_token(token: str) -> str | None:
    if "/" not in token and "\\" not in token and "%" not in token and "\uff0f" not in token:
        return None
    stack, climbed, popped = resolve(token)
    if climbed >= 2:
        return "escape"
    if not stack:
        return None
    joined = "/" + "/".join(stack)
    if _ALWAYS.search(joined):
        return "sensitive-file"
    if (climbed or popped) and _AFTER_CLIMB.search(joined):
        return "climb-to-sensitive"
    return None


def _detect_window(text: str, _start: int = 0, _owned: int = 0) -> str | None:
    for token in _TOKEN_RE.findall(text):
        rule = judge_token(token)
        if rule:
            return rule
    return None


def detect_ptrav(value: str, kind: str = "query", out_of_time: Callable[[], bool] | None = None,
                 gate: Gate | None = None) -> str | None:
    """A rule name if a path in `value` climbs out of its root or reaches a sensitive file."""
    return judge_windows(normalise(value), MAX_LEN, _detect_window, out_of_time, gate)
