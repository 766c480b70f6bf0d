"""XML external entities and the other ways an XML document makes its parser fetch or expand.

The document's declarations are read, not searched for words:

* `<!ENTITY % name ...>`: a parameter entity (out-of-band XXE builds on them);
* `<!ENTITY name SYSTEM "uri">` / `PUBLIC "id" "uri"`: an external entity;
* `<!DOCTYPE root SYSTEM "uri">` (or `PUBLIC "id" "uri"`): an external DTD, unless the URI is
  one of the W3C's own DTDs (XHTML, SVG, MathML documents carry those);
* internal entities whose replacement text references other entities (`&lol;&lol;`): the
  exponential expansion of "billion laughs";
* XInclude: an `include` element of the `http://www.w3.org/2001/XInclude` namespace, under
  any prefix (`<xi:include href=...>`);
* `xsi:schemaLocation` / `xsi:noNamespaceSchemaLocation` whose locations (every second token
  of schemaLocation) are files, non-HTTP schemes, internal hosts (as node/detect/ssrf.py reads
  them) or HTTP URLs to hosts other than the well-known schema publishers; relative locations
  (`order.xsd`) pass; a schemaLocation that is not pairs has each token judged;
* `<?xml-stylesheet href=...?>` pointing at a file, a non-HTTP scheme or an internal host.

An ordinary SOAP envelope (namespaces, no DOCTYPE) passes. Linear: a few `finditer` passes
over the value, each match of bounded length (literals of at most 2,000 characters).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from node.detect.candidates import first_rule
from node.detect.ssrf import classify_host
from node.detect.windows import Gate, normalise

_ENTITY_RE = re.compile(r"<!entity\s+(%\s*)?[\w.:\-]+\s*(?:(system|public)\b|([\"'])([^\"']{0,2000})\3)?", re.I)
_DOCTYPE_RE = re.compile(
    r"<!doctype\s+[\w.:\-]+\s+(?:system\s*([\"'])([^\"'>]{0,500})\1|public\s*([\"'])[^\"'>]{0,500}\3\s*([\"'])([^\"'>]{0,500})\4)",
    re.I,
)
_ENTITY_REF_RE = re.compile(r"[&%][\w.:\-]+;")
_XINCLUDE_NS_RE = re.compile(r"xmlns(?::([\w.\-]+))?\s*=\s*[\"']\s*https?://www\.w3\.org/2001/xinclude", re.I)
_INCLUDE_RE = re.compile(r"<\s*([\w.\-]+):include\b", re.I)
# <?xml-stylesheet href="..."?>: an XSLT processor that applies it fetches the sheet, and the
# sheet runs (document(), extension functions); feeds link their own sheets on the public web,
# so only files, other schemes and internal hosts count
_STYLESHEET_RE = re.compile(r"<\?xml-stylesheet\b[^?>]{0,2000}?\bhref\s*=\s*([\"'])([^\"'<>]{0,2000})\1", re.I)
_SCHEMA_RE = re.compile(r"nonamespaceschemalocation\s*=\s*([\"'])([^\"'<>]{0,2000})\1|schemalocation\s*=\s*([\"'])([^\"'<>]{0,2000})\3", re.I)
_URI_RE = re.compile(r"([a-z][a-z0-9+.\-]{0,15}):(?://(?:[^/?#@\s]*+@)?(\[[^\]]{1,80}\]|[^/?#:\s]*))?", re.I)
_W3C_DTD_RE = re.compile(r"https?://www\.w3\.org/(?:tr/|graphics/svg/|math/dtd/)", re.I)
# publishers whose schemas documents name by their canonical URL (validators resolve them
# from a local catalogue)
_SCHEMA_HOSTS = frozenset(
    "www.w3.org schemas.xmlsoap.org schemas.microsoft.com www.springframework.org maven.apache.org "
    "xmlns.jcp.org java.sun.com docs.oasis-open.org www.omg.org schemas.openxmlformats.org "
    "www.opengis.net purl.org".split()
)


def _dangerous_location(location: str, public_web: bool = False) -> bool:
    """A location its parser must not fetch: a file, a scheme other than HTTP, an internal
    host, or (unless `public_web`) an HTTP host other than the schema publishers."""
    m = _URI_RE.match(location)
    if not m:
        return False  # a relative location: resolved against the document's own base
    scheme, host = m.group(1).lower(), (m.group(2) or "").lower()
    if len(scheme) == 1:
        return True  # c:\...: a local file
    if scheme not in ("http", "https"):
        return True  # file:, ftp:, jar:, gopher:, php:... a parser fetching it is the attack
    verdict, _usual = classify_host(host)
    return verdict is not None or (not public_web and host not in _SCHEMA_HOSTS)


def _entity(m: re.Match[str]) -> str | None:
    if m.group(1):
        return "parameter-entity"
    if m.group(2):
        return "external-entity"
    if m.group(4) and _ENTITY_REF_RE.search(m.group(4)):
        return "entity-expansion"
    return None


def _doctype(m: re.Match[str]) -> str | None:
    uri = m.group(2) if m.group(2) is not None else m.group(5)
    return "external-dtd" if uri and not _W3C_DTD_RE.match(uri.strip()) else None


def _schema(m: re.Match[str]) -> str | None:
    if m.group(2) is not None:  # noNamespaceSchemaLocation: one location
        locations = [m.group(2).strip()]
    else:  # schemaLocation: namespace / location pairs; not pairs, a lenient parser may
        tokens = m.group(4).split()  # take any token for a location: each is judged
        locations = tokens[1::2] if len(tokens) % 2 == 0 else tokens
    return "schema-location" if any(_dangerous_location(loc) for loc in locations) else None


def judge(text: str, out_of_time: Callable[[], bool] | None = None) -> str | None:
    lower = text.lower()
    rule = None
    if "<!" in text:
        rule = first_rule(_ENTITY_RE.finditer(text), _entity, out_of_time) or \
            first_rule(_DOCTYPE_RE.finditer(text), _doctype, out_of_time)
    if rule is None and "include" in lower:
        prefixes = {"xi"} | {(p or "").lower() for p in _XINCLUDE_NS_RE.findall(text)}
        rule = first_rule(_INCLUDE_RE.finditer(text),
                          lambda m: "xinclude" if m.group(1).lower() in prefixes else None, out_of_time)
    if rule is None and "schemalocation" in lower:
        rule = first_rule(_SCHEMA_RE.finditer(text), _schema, out_of_time)
    if rule is None and "<?xml-stylesheet" in lower:
        rule = first_rule(_STYLESHEET_RE.finditer(text),
                          lambda m: "stylesheet" if _dangerous_location(m.group(2).strip(), True) else None,
                          out_of_time)
    return rule


def detect_xxe(value: str, kind: str = "body", out_of_time: Callable[[], bool] | None = None,
               gate: Gate | None = None) -> str | None:
    """A rule name if the XML in `value` declares or pulls in something its parser would fetch
    or expand (the whole value: a few regex passes, no windows, `gate` is not needed)."""
    return judge(normalise(value), out_of_time)
