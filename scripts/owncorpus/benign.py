"""Benign look-alikes: what real users and clients send that shares a surface with attacks
(quotes and apostrophes, SQL and shell words in prose, markup in code snippets, Base64 images
and tokens, URLs, SOAP calls, XML documents, LDAP distinguished names), in the same
placements and in the encodings real clients use (Go's HTML-safe `\\u003c` JSON escapes,
`&#xE9;` references for non-ASCII XML text, percent-encoded redirect URLs, Base64url state)."""

from __future__ import annotations

import base64
import json
import random
import struct
import urllib.parse
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from xml.sax.saxutils import escape as xml_escape

from owncorpus.encoders import BASE64, BASE64FLAT, JSUNICODE, PLAIN, URL, XMLENTITY, b64, b64flat
from owncorpus.grammar import DOCUMENT, STRUCT, VALUE
from owncorpus.placements import (
    HEADER, HTMLFORM, JSONBODY, JSONREQUEST, MULTIPART, RAWREQUEST, SOAPBODY, TEXT_RENDERERS, URLPARAM, URLPATH,
    USERAGENT, XMLBODY, Context, Rendered, document_native, json_body, json_request,
)


@dataclass(frozen=True, slots=True)
class Benign:
    group: str
    value: str  # VALUE: the text; STRUCT: JSON text; DOCUMENT: XML text
    placement: str
    encoding: str
    name: str
    shape: str = VALUE


QUERIES = (
    "O'Brien", "o'reilly books", "Tom's Diner", "rock 'n' roll", "\"exact phrase\" -minus", "5' 11\" height",
    "don't stop me now", "it's a wonderful life", "L'Oréal shampoo", "Côte d'Ivoire", "D'Angelo", "women's shoes size 8",
    "men's jackets", "select comfort mattress", "union square hotels", "drop earrings", "table lamp", "update iphone",
    "insert molding", "where to eat near me", "1/2\" copper pipe", "3/4 inch plywood", "50% off", "C# tutorial",
    "c++ vs rust", "AT&T phone plans", "Johnson & Johnson", "salt & pepper", "<3 emoji", "x > y inequality",
    "how to use sudo", "bash vs zsh", "what is sql injection", "echo dot", "cat toys", "ping pong table",
    "alert dog collar", "script writing course", "javascript for beginners", "best -- deals", "1=1 meaning",
    "or 1 1 puzzle", "and/or grammar", "who's on first", "Mc'Donalds", "St. John's Wort", "ma'am",
    "the 'quick' brown fox", "today's weather", "car's engine light", "children's books", "1' tile",
    "wget vs curl", "ls command explained", "windows 11 update", "etc etc", "passwd reset help",
    "id card renewal", "select all shortcut", "python import error", "sleep apnea", "benchmark results gpu",
    "char siu recipe", "concat strings excel", "null hypothesis", "version control", "having fun",
    "group by meaning", "order by date", "between us", "like a rolling stone", "case study", "from A to Z",
    "{name} placeholder", "{{mustache}} templates", "${price}", "#hashtag", "@mention", "50/50 chance",
    "root beer", "shell gas station", "admin assistant jobs", "system of a down", "exec chair",
)
FIRST = ("Sean", "Mary", "Siobhán", "José", "Zoë", "Chloé", "Liam", "Aoife", "D'Arcy", "Jean-Luc", "Ana María",
         "Björn", "Nguyễn", "Olu", "Priya", "Mei", "Renée", "Ross", "Ian", "Élodie")
LAST = ("O'Brien", "O'Neil", "D'Souza", "McDonald", "Smith-Jones", "van der Berg", "Müller", "García", "Le Blanc",
        "Dell'Acqua", "Ó Súilleabháin", "Nakamura", "Okafor", "Kowalski", "Dubois", "O'Connor", "Rossi", "Ng")
STREETS = ("12 St. John's Rd, Apt #4B", "221B Baker Street", "1600 Amphitheatre Pkwy", "Rue de l'Église 3",
           "P.O. Box 1024", "5 Main St. & 3rd Ave", "Flat 2/1, 10 King's Road", "Unit #12 - 45 Queen's Blvd")
COMPANIES = ("Smith & Sons", "AT&T", "Procter & Gamble", "Ben & Jerry's", "O'Reilly Media", "Barnes & Noble",
             "Marks & Spencer", "Dunkin' Donuts", "Toys\"R\"Us", "Yahoo!")
PROSE = (
    "Please select the best option from the drop-down and update your profile before Friday.",
    "We'll drop by at 5; union members are welcome to join the table discussion.",
    "Use <br> tags for line breaks in the description field, or just press Enter.",
    "Run `npm install` and then `npm start` to launch the dev server.",
    "To list files, type `ls -la` in your terminal; to see your user, `whoami`.",
    "The query SELECT * FROM orders WHERE id = 42 returned nothing, can you check?",
    "I can't log in since the update - it says \"invalid password\" even after reset.",
    "## Release notes\n\n- Fixed the *login* bug\n- Added `--verbose` flag\n- Updated README.md",
    "My cat's name is Script and my dog's is Alert. They sleep all day.",
    "Is 1 = 1 always true? In boolean logic, yes; in my code, apparently not.",
    "Order #1234: 2 x T-shirt (size M), 1 x mug. Total: $45.99 incl. tax & shipping.",
    "Meet me at Joe's; the address is 5th & Main, door code 4#21.",
    "> quoted reply\n\nThanks! I'll try `sudo apt update` and report back.",
    "The <table> element has rows (<tr>) and cells (<td>); don't nest forms inside it.",
    "Our SLA: 99.9% uptime; if the service is down, we'll credit 10% of the monthly fee.",
    "Hi team,\n\nThe wget download of the dataset failed with 404; could someone re-upload it?\n\nCheers, Ana",
    "Dear Sir/Madam, I'd like to cancel my subscription (account ID 88-1203) effective immediately.",
    "In Excel, use =SUM(A1:A10) or =IF(B2>100,\"high\",\"low\") to classify values.",
    "The path to the config is ~/.config/app/settings.json on Linux and %APPDATA%\\app on Windows.",
    "Note: prices exclude VAT; see https://www.example.com/terms#pricing for details.",
    "He said: 'it's not a bug, it's a feature' - and we all laughed.",
    "Recipe: mix 1/2 cup sugar & 2 eggs; bake at 180°C for 25' (minutes).",
    "Kubernetes tip: kubectl get pods -n default | grep Running",
    "I'm moving from MySQL to PostgreSQL; any gotchas with GROUP BY or LIMIT/OFFSET?",
    "Great product!!! 5/5 <3 would buy again :)",
    "The file should be named report_2024-Q1 (final).pdf, not report.pdf.",
    "Please don't include <script> tags in the bio; plain text or **markdown** only.",
    "Use {{ user.name }} in the email template to greet the customer by name.",
    "From the docs: 'The UNION operator combines the result of two SELECT statements.'",
    "Shell tip: `for f in *.txt; do echo \"$f\"; done` prints every text file.",
)
CODE = (
    ("sql", "SELECT id, name FROM customers WHERE country = 'IE' ORDER BY name LIMIT 20;"),
    ("sql", "UPDATE accounts SET balance = balance - 10 WHERE id = ?;"),
    ("python", "def greet(name: str) -> str:\n    return f\"Hello, {name}!\"\n"),
    ("python", "import os\nprint(os.path.join('data', 'file.txt'))"),
    ("javascript", "const total = items.reduce((a, b) => a + b.price, 0);"),
    ("javascript", "document.querySelector('#title').textContent = 'Hi';"),
    ("html", "<div class=\"card\">\n  <h2>Title</h2>\n  <p>Body text</p>\n</div>"),
    ("html", "<a href=\"/docs/intro\">Read the intro</a>"),
    ("bash", "tar -czf backup.tar.gz ./project && ls -lh backup.tar.gz"),
    ("bash", "grep -rn \"TODO\" src/ | wc -l"),
    ("go", "func add(a, b int) int { return a + b }"),
    ("yaml", "server:\n  port: 8080\n  host: 0.0.0.0\n"),
    ("json", "{\"name\": \"demo\", \"version\": \"1.0.0\"}"),
    ("css", "body { font-family: 'Helvetica Neue', sans-serif; color: #333; }"),
    ("ruby", "puts [1, 2, 3].map { |x| x * 2 }.inspect"),
    ("java", "List<String> names = new ArrayList<>();\nnames.add(\"Ann\");"),
    ("rust", "fn main() { println!(\"{}\", 2 + 2); }"),
    ("php", "echo htmlspecialchars($name, ENT_QUOTES, 'UTF-8');"),
    ("c", "#include <stdio.h>\nint main(void) { printf(\"%d\\n\", 42); return 0; }"),
    ("markdown", "| col | value |\n|-----|-------|\n| a   | 1     |"),
)
URLS = (
    "https://www.example.com/blog/2024/05/how-to-bake-bread?ref=nav", "/account/orders?page=2",
    "https://shop.example.com/cart", "https://docs.example.org/guide/install#linux", "/checkout/step-2",
    "https://www.youtube.com/watch?v=dQw4w9WgXcQ&t=42s", "https://maps.example.com/?q=O'Brien's+Pub",
    "https://cdn.example.net/img/products/shoe-123_400x400.jpg", "/en-us/help/articles/reset-password",
    "https://github.com/org/repo/blob/main/README.md", "https://example.com/search?q=%22hello+world%22",
    "/dashboard", "https://accounts.example.com/oauth/callback?code=4%2F0AX4&state=xyz", "mailto:help@example.com",
    "https://en.wikipedia.org/wiki/Select_(SQL)", "https://www.example.com/a/b/c/d.html", "/static/js/app.3f2a1c.js",
)
FILES = ("docs/guide/intro.md", "images/2024/05/cat.jpg", "report-final (2).pdf", "invoice_0042.pdf",
         "C:\\Users\\jane\\Documents\\cv.docx", "photos/summer trip/IMG_2044.HEIC", "backup-2024-05-01.tar.gz",
         "notes.txt", "My Résumé.pdf", "data/export.csv", "slides_v3.final.pptx", "src/main.py", "logo@2x.png")
DNS = ("cn=John Smith,ou=People,dc=example,dc=com", "uid=jdoe,ou=Users,dc=corp,dc=example,dc=org",
       "CN=Print Operators,CN=Builtin,DC=ad,DC=example,DC=com", "ou=Sales,o=Example Inc.,c=US",
       "mail=jane.doe@example.com", "cn=O'Brien\\, Sean,ou=Staff,dc=example,dc=ie", "dc=example,dc=com")
HEADER_VALUES = ("max-age=0", "en-GB,en;q=0.8,fr;q=0.6", "no-cache", "gzip, deflate, br", "1", "same-origin",
                 "application/json, text/plain, */*", "req-7f3a9c2e-11", "ios-app/5.4.1 (build 812)",
                 "\"v1.2.3\"", "trace-id=4bf92f3577b34da6a3ce929d0e0e4736", "Europe/Dublin", "dark",
                 "W/\"5e15153d-120f\"", "bytes=0-1023", "same-site; strict", "tenant-42", "2024-05-01T12:00:00Z")
BROWSER_UAS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/123.0.0.0 Safari/537.36 Edg/123.0.0.0",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.82 Mobile Safari/537.36",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "curl/7.88.1", "Wget/1.21.4", "python-requests/2.32.3", "Go-http-client/2.0", "PostmanRuntime/7.37.3",
    "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)", "okhttp/4.9.3", "Dart/3.3 (dart:io)",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:125.0) Gecko/20100101 Firefox/125.0",
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "Mozilla/5.0 (iPad; CPU OS 16_7 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/124.0.6367.88 Mobile/15E148 Safari/604.1",
)
RICH_TEXT = (
    "<p>Hello <strong>world</strong>, see <a href=\"https://www.example.com/docs\">the docs</a>.</p>",
    "<ul><li>Milk</li><li>Eggs &amp; flour</li></ul>",
    "<p><em>Thanks</em> for the quick reply!</p><p>Best,<br>Ana</p>",
    "<h2>Agenda</h2><ol><li>Q2 review</li><li>Hiring</li></ol>",
    "<p><img src=\"https://cdn.example.net/u/42/photo.jpg\" alt=\"our team\" width=\"320\"></p>",
    "<blockquote>It's not a bug, it's a feature.</blockquote><p>- every developer</p>",
    "<p>Price: <s>$49</s> <b>$39</b> (20% off)</p>",
    "<table><tr><th>Size</th><th>Qty</th></tr><tr><td>M</td><td>2</td></tr></table>",
    "<p style=\"text-align:center\">Welcome to O'Brien's Pub</p>",
    "<pre><code>SELECT name FROM users;</code></pre>",
    "<p>Call us at <a href=\"tel:+15550100199\">+1 555 0100 199</a> or <a href=\"mailto:help@example.com\">email</a>.</p>",
    "<div class=\"note\"><span>Note:</span> shipping takes 3-5 days.</div>",
)
GRAPHQL = (
    "query GetUser($id: ID!) { user(id: $id) { id name email avatarUrl } }",
    "mutation UpdateCart($input: CartInput!) { updateCart(input: $input) { id total items { sku qty } } }",
    "query Search($q: String!, $first: Int = 10) { search(query: $q, first: $first) { edges { node { id title } } } }",
    "query { viewer { login repositories(first: 5, orderBy: {field: UPDATED_AT, direction: DESC}) { nodes { name } } } }",
    "mutation Login($email: String!, $password: String!) { login(email: $email, password: $password) { token } }",
    "subscription OnMessage($room: ID!) { messageAdded(roomId: $room) { id text author { name } } }",
    "query Orders($after: String) { orders(after: $after, filter: {status: SHIPPED}) { pageInfo { hasNextPage } } }",
)
CSV = (
    "id,name,email\n1,Sean O'Brien,sean@example.com\n2,\"Smith, Ann\",ann@example.com\n",
    "date,amount,note\n2024-05-01,12.50,\"coffee & cake\"\n2024-05-02,-3.00,refund\n",
    "sku;qty;price\nA-1;2;9.99\nB-7;1;19.50\n",
    "Name,Role,Team\nJosé García,Engineer,R&D\nMei Ng,Designer,UX/UI\n",
)
NON_ASCII = ("Café Zürich", "東京タワー", "Ελληνικά", "naïve façade", "São Paulo", "Kraków", "Ærøskøbing", "Привет, мир",
             "مرحبا", "😀 party 🎉", "Jalapeño & crème brûlée", "Straße 5", "Dvořák", "Ōsaka")


def png(rng: random.Random, size: int) -> bytes:
    """A small valid PNG of random pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    raw = b"".join(b"\x00" + bytes(rng.randrange(256) for _ in range(size * 3)) for _ in range(size))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def jwt(rng: random.Random) -> str:
    header = b64flat(json.dumps({"alg": rng.choice(("HS256", "RS256")), "typ": "JWT"}, separators=(",", ":")))
    claims = {"sub": str(rng.randrange(10**6)), "name": f"{rng.choice(FIRST)} {rng.choice(LAST)}",
              "iat": 1714550400 + rng.randrange(10**6), "scope": rng.choice(("read", "read write", "openid profile email"))}
    sig = base64.urlsafe_b64encode(rng.randbytes(32)).decode().rstrip("=")
    return f"{header}.{b64flat(json.dumps(claims, ensure_ascii=False, separators=(',', ':')))}.{sig}"


def ids(rng: random.Random) -> str:
    form = rng.randrange(4)
    if form == 0:
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))
    if form == 1:
        return f"{rng.getrandbits(96):024x}"
    if form == 2:
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
        return "".join(rng.choice(alphabet) for _ in range(rng.randrange(16, 40)))
    return "sk_test_" + "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(24))


def person(rng: random.Random) -> dict:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    return {"name": f"{first} {last}",
            "email": f"{first.lower().replace(' ', '.').replace(chr(39), '')}.{rng.randrange(99)}@example.com",
            "company": rng.choice(COMPANIES), "address": rng.choice(STREETS),
            "phone": f"+1 (555) 01{rng.randrange(10)}-{rng.randrange(10000):04d}"}


def soap_call(rng: random.Random) -> str:
    p = person(rng)
    op, fields = rng.choice((
        ("GetWeather", {"City": rng.choice(("Dublin", "São Paulo", "Zürich", "St. John's")), "Units": "metric"}),
        ("CheckStock", {"Sku": f"SKU-{rng.randrange(10**5)}", "Warehouse": "EU-1"}),
        ("CreateCustomer", {"Name": p["name"], "Email": p["email"], "Company": p["company"]}),
        ("GetOrderStatus", {"OrderId": str(rng.randrange(10**6)), "Locale": "en-IE"}),
        ("SearchProducts", {"Query": rng.choice(QUERIES), "Page": "1"}),
        ("UpdateAddress", {"CustomerId": str(rng.randrange(10**5)), "Address": p["address"]}),
    ))
    inner = "".join(f"<ns:{k}>{xml_escape(v)}</ns:{k}>" for k, v in fields.items())
    return f"<ns:{op}>{inner}</ns:{op}>"


def xml_document(rng: random.Random) -> str:
    p = person(rng)
    form = rng.randrange(4)
    if form == 0:
        items = "".join(f"<item><title>{xml_escape(rng.choice(PROSE)[:60])}</title><link>{xml_escape(rng.choice(URLS))}"
                        f"</link></item>" for _ in range(rng.randrange(1, 4)))
        return f'<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>News</title>{items}</channel></rss>'
    if form == 1:
        urls = "".join(f"<url><loc>https://www.example.com/p/{rng.randrange(999)}</loc><lastmod>2024-05-0{rng.randrange(1, 9)}</lastmod></url>"
                       for _ in range(rng.randrange(1, 5)))
        return f'<?xml version="1.0" encoding="UTF-8"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{urls}</urlset>'
    if form == 2:
        return (f'<?xml version="1.0"?><invoice id="{rng.randrange(10**5)}"><customer>{xml_escape(p["name"])}</customer>'
                f'<company>{xml_escape(p["company"])}</company><total currency="EUR">{rng.randrange(10, 999)}.{rng.randrange(100):02d}</total>'
                f'<note><![CDATA[Deliver to {p["address"]} & call {p["phone"]}]]></note></invoice>')
    return (f'<?xml version="1.0" encoding="UTF-8"?><settings><theme>dark</theme><language>en</language>'
            f'<filter>{xml_escape(rng.choice(QUERIES))}</filter><path>{xml_escape(rng.choice(FILES))}</path></settings>')


def json_document(rng: random.Random) -> dict:
    p = person(rng)
    form = rng.randrange(5)
    if form == 0:
        return {"customer": p, "items": [{"sku": f"SKU-{rng.randrange(10**5)}", "qty": rng.randrange(1, 4)}],
                "note": rng.choice(PROSE)}
    if form == 1:
        lang, code = rng.choice(CODE)
        return {"title": f"Snippet {rng.randrange(999)}", "language": lang, "code": code, "public": rng.random() < 0.5}
    if form == 2:
        return {"filters": {"color": rng.sample(["red", "blue", "green", "black"], 2),
                            "price": {"min": rng.randrange(50), "max": rng.randrange(50, 500)}},
                "sort": rng.choice(("price_asc", "newest", "-rating")), "q": rng.choice(QUERIES)}
    if form == 3:
        return {"comment": {"author": p["name"], "body": rng.choice(PROSE), "rating": rng.randrange(1, 6)}}
    return {"event": rng.choice(("page_view", "click", "add_to_cart")), "url": rng.choice(URLS),
            "ts": 1714550400 + rng.randrange(10**6), "ua": rng.choice(BROWSER_UAS)}


def go_json_escape(text: str) -> str:
    """The inside of a JSON string as Go's encoding/json writes it, ASCII-only: `<>&` as
    \\u003c \\u003e \\u0026 (HTML-safe), other non-ASCII as \\uXXXX."""
    inner = json.dumps(text)[1:-1]
    return inner.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def xml_refs(text: str) -> str:
    """XML character data with markup escaped and non-ASCII as &#x..; references."""
    return "".join(c if c.isascii() else f"&#x{ord(c):X};" for c in xml_escape(text))


def encode(value: str, encoding: str) -> str:
    if encoding == URL:
        return urllib.parse.quote(value, safe="-._~")
    if encoding == BASE64:
        return b64(value)
    if encoding == BASE64FLAT:
        return b64flat(value)
    if encoding == JSUNICODE:
        return go_json_escape(value)
    if encoding == XMLENTITY:
        return xml_refs(value)
    return value


def render(item: Benign, ctx: Context) -> Rendered | None:
    if item.shape == STRUCT:
        obj = json.loads(item.value)
        text = go_json_escape_dump(obj) if item.encoding == JSUNICODE else json.dumps(obj, ensure_ascii=False)
        return (json_request if item.placement == JSONREQUEST else json_body)("", item.encoding, ctx, text)
    if item.shape == DOCUMENT:
        return document_native(item.value, "", item.placement, PLAIN, ctx)
    return TEXT_RENDERERS[item.placement](encode(item.value, item.encoding), item.encoding, ctx)


def go_json_escape_dump(obj: object) -> str:
    return json.dumps(obj).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _spread(rng: random.Random, group: str, values: list[str], name_options: tuple[str, ...],
            options: tuple[tuple[str, str], ...], per_value: int) -> Iterator[Benign]:
    """Each value in `per_value` of the (placement, encoding) options, drawn without repeats."""
    for value in values:
        for placement, encoding in rng.sample(options, min(per_value, len(options))):
            yield Benign(group, value, placement, encoding, rng.choice(name_options))


def look_alikes(rng: random.Random) -> Iterator[Benign]:
    yield from _spread(rng, "search", list(QUERIES), ("q", "search", "query", "term"),
                       ((URLPARAM, PLAIN), (URLPARAM, URL), (HTMLFORM, PLAIN), (JSONREQUEST, PLAIN),
                        (JSONREQUEST, JSUNICODE), (MULTIPART, PLAIN), (URLPATH, PLAIN), (XMLBODY, PLAIN),
                        (SOAPBODY, PLAIN), (RAWREQUEST, PLAIN), (HEADER, PLAIN)), 5)
    people = [person(rng) for _ in range(60)]
    yield from _spread(rng, "person", [v for p in people for v in p.values()], ("name", "email", "company", "address"),
                       ((HTMLFORM, PLAIN), (MULTIPART, PLAIN), (JSONREQUEST, PLAIN), (JSONREQUEST, JSUNICODE),
                        (XMLBODY, PLAIN), (XMLBODY, XMLENTITY), (SOAPBODY, PLAIN), (SOAPBODY, XMLENTITY),
                        (URLPARAM, PLAIN)), 2)
    yield from _spread(rng, "prose", list(PROSE), ("comment", "message", "body", "description"),
                       ((JSONREQUEST, PLAIN), (JSONREQUEST, JSUNICODE), (HTMLFORM, PLAIN), (MULTIPART, PLAIN),
                        (RAWREQUEST, PLAIN), (XMLBODY, PLAIN), (SOAPBODY, PLAIN), (JSONBODY, PLAIN),
                        (URLPARAM, PLAIN)), 6)
    yield from _spread(rng, "code", [c for _, c in CODE], ("code", "snippet", "content"),
                       ((JSONREQUEST, PLAIN), (JSONREQUEST, JSUNICODE), (MULTIPART, PLAIN), (RAWREQUEST, PLAIN),
                        (HTMLFORM, PLAIN), (XMLBODY, PLAIN), (JSONBODY, PLAIN)), 5)
    tokens = [jwt(rng) for _ in range(40)] + [ids(rng) for _ in range(60)]
    yield from _spread(rng, "token", tokens, ("token", "id", "session", "ref"),
                       ((HEADER, PLAIN), (URLPARAM, PLAIN), (URLPATH, PLAIN), (JSONREQUEST, PLAIN), (HTMLFORM, PLAIN),
                        (MULTIPART, PLAIN)), 3)
    images = []
    for _ in range(30):
        data = base64.b64encode(png(rng, rng.randrange(2, 9))).decode()
        images.append(data if rng.random() < 0.5 else "data:image/png;base64," + data)
    yield from _spread(rng, "image", images, ("avatar", "image", "photo", "file"),
                       ((JSONREQUEST, PLAIN), (HTMLFORM, PLAIN), (MULTIPART, PLAIN), (RAWREQUEST, PLAIN),
                        (XMLBODY, PLAIN), (SOAPBODY, PLAIN)), 3)
    states = [json.dumps({"returnTo": rng.choice(URLS), "nonce": ids(rng), "ts": 1714550400 + rng.randrange(10**6)},
                         separators=(",", ":")) for _ in range(40)]
    yield from _spread(rng, "state", states, ("state", "ctx", "continue", "data"),
                       ((URLPARAM, BASE64FLAT), (URLPARAM, BASE64), (HTMLFORM, BASE64), (HEADER, BASE64),
                        (JSONREQUEST, BASE64), (URLPATH, BASE64FLAT), (MULTIPART, BASE64FLAT)), 3)
    yield from _spread(rng, "url", list(URLS) * 2, ("next", "redirect", "url", "return_to"),
                       ((URLPARAM, PLAIN), (URLPARAM, URL), (JSONREQUEST, PLAIN), (HTMLFORM, PLAIN), (HEADER, PLAIN),
                        (HTMLFORM, URL), (XMLBODY, PLAIN), (MULTIPART, PLAIN)), 3)
    yield from _spread(rng, "path", list(FILES) * 2, ("file", "path", "name", "doc"),
                       ((URLPATH, PLAIN), (URLPARAM, PLAIN), (JSONREQUEST, PLAIN), (MULTIPART, PLAIN),
                        (URLPATH, URL), (HTMLFORM, PLAIN)), 3)
    yield from _spread(rng, "dn", list(DNS) * 3, ("dn", "user", "base", "group"),
                       ((URLPARAM, PLAIN), (JSONREQUEST, PLAIN), (HTMLFORM, PLAIN), (HEADER, PLAIN), (XMLBODY, PLAIN)), 3)
    yield from _spread(rng, "header", list(HEADER_VALUES) * 2, ("request-id", "client", "tz", "pref"),
                       ((HEADER, PLAIN),), 1)
    yield from _spread(rng, "user-agent", list(BROWSER_UAS) * 3, ("ua",), ((USERAGENT, PLAIN),), 1)
    yield from _spread(rng, "non-ascii", list(NON_ASCII) * 2, ("name", "city", "title"),
                       ((JSONREQUEST, JSUNICODE), (JSONBODY, JSUNICODE), (XMLBODY, XMLENTITY), (SOAPBODY, XMLENTITY),
                        (URLPARAM, URL), (HTMLFORM, PLAIN), (MULTIPART, PLAIN)), 3)
    yield from _spread(rng, "rich-text", list(RICH_TEXT) * 3, ("body", "content", "description", "html"),
                       ((JSONREQUEST, PLAIN), (JSONREQUEST, JSUNICODE), (HTMLFORM, PLAIN), (MULTIPART, PLAIN),
                        (XMLBODY, PLAIN), (SOAPBODY, PLAIN), (RAWREQUEST, PLAIN)), 3)
    yield from _spread(rng, "csv", list(CSV) * 4, ("file", "data", "import"),
                       ((MULTIPART, PLAIN), (RAWREQUEST, PLAIN), (JSONREQUEST, PLAIN), (HTMLFORM, PLAIN)), 2)
    for _ in range(60):
        doc = {"operationName": None, "query": rng.choice(GRAPHQL),
               "variables": {"id": ids(rng), "q": rng.choice(QUERIES), "first": rng.randrange(1, 50)}}
        yield Benign("graphql", json.dumps(doc, ensure_ascii=False), rng.choice((JSONBODY, JSONBODY, JSONREQUEST)),
                     rng.choice((PLAIN, PLAIN, JSUNICODE)), "gql", STRUCT)
    for _ in range(70):
        yield Benign("soap-call", soap_call(rng), SOAPBODY, PLAIN, "call", DOCUMENT)
    for _ in range(70):
        yield Benign("xml-document", xml_document(rng), XMLBODY, PLAIN, "doc", DOCUMENT)
    for _ in range(120):
        doc = json.dumps(json_document(rng), ensure_ascii=False)
        yield Benign("json-document", doc, rng.choice((JSONBODY, JSONREQUEST)), rng.choice((PLAIN, PLAIN, JSUNICODE)), "data", STRUCT)
