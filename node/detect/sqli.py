"""SQL injection by structure: a small SQL tokenizer and rules over its token stream.

In the spirit of libinjection (written here, not ported): the value is tokenised as SQL in
three contexts - as is (numeric/identifier injection), and as if it sat inside a single- or
double-quoted string (so its first quote closes that string). A value is an injection when,
in one context, its tokens form SQL that *does* something: a string break-out followed
directly by an operator, comment, `UNION SELECT` or a new statement; a tautology
`1 or 1=1`; `UNION SELECT`; a complete `SELECT ... FROM` (its first column may be an
expression: `username || '~' || password`). Prose fails those shapes:
`O'Reilly` (break-out followed by a word), `union was a great select` (UNION not followed
by SELECT), `1 or 2 apples` (no comparison, trailing word).

The whole value is judged: normalised and, past MAX_SQL_LEN characters, window by window
(node/detect/windows.py); each window is tokenised in the three contexts.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from operator import itemgetter

from node.detect import c_helper
from node.detect.shell import TEXT_KINDS
from node.detect.literals import Literals
from node.detect.windows import Gate, judge_windows, normalise

MAX_SQL_LEN = 1024
MAX_TOKENS = 48

# token kinds
STR, NUM, WORD, KW, FUNC, LOGIC, OP, COMMENT, SEMI, LPAR, RPAR, COMMA, VAR, UNION, STMT = (
    "s", "n", "b", "k", "f", "&", "o", "c", ";", "(", ")", ",", "v", "U", "E",
)
OTHER = "x"  # a character SQL has no use for

_STATEMENTS = frozenset(
    "select insert update delete drop exec execute declare create alter truncate shutdown "
    "waitfor replace merge grant revoke call handler load rename backup".split()
)
_KEYWORDS = frozenset(
    "to from where order group by having limit offset into values set table database procedure "
    "as all distinct top then else end case when null is not in like rlike regexp between "
    "sounds collate escape outfile dumpfile delay exists join on asc desc begin".split()
)
_LOGIC = frozenset({"and", "or", "xor", "&&", "||", "not"})
_OP_WORDS = frozenset({"like", "rlike", "regexp", "between", "is", "in", "div", "mod", "sounds"})
_TRUE_WORDS = frozenset({"true", "false", "null"})
# SQL functions that an injection calls; a bare word before "(" outside this list is weaker
SQL_FUNCTIONS = frozenset(
    "sleep benchmark pg_sleep waitfor extractvalue updatexml load_file char chr concat concat_ws "
    "group_concat substring substr mid ascii ord version database user current_user "
    "system_user session_user schema hex unhex count length len if ifnull iif case cast "
    "convert elt md5 sha1 rand floor exp json_keys utl_inaddr dbms_pipe make_set "
    "name_const row_count found_rows xp_cmdshell randomblob sqlite_version pg_read_file "
    "lo_import dblink_connect char_length bin now coalesce nullif lower upper isnull nvl "
    "current_setting session_user left right"
    .split()
)
_CONCAT_FUNCTIONS = SQL_FUNCTIONS - {"if", "case", "count", "length", "len", "lower", "upper", "now"}
_STRONG_FUNCTIONS = frozenset(
    "sleep benchmark pg_sleep extractvalue updatexml load_file utl_inaddr dbms_pipe "
    "xp_cmdshell randomblob pg_read_file lo_import dblink_connect name_const make_set".split()
)

_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+|/\*(?!!).*?\*/)                  # whitespace and closed block comments
  | (?P<vcomment>/\*!\d*)                       # MySQL executable comment: its body is SQL
  | (?P<vend>\*/)
  | (?P<lcomment>--(?:[\s\x00-\x1f]|$|/\*|[-+](?!\d))[^\n]*|\#[^\n]*|--$|;%00|/\*(?!!).*)
  | (?P<str>'(?:[^'\\]|\\.|'')*(?:'|$)|"(?:[^"\\]|\\.|"")*(?:"|$)|`[^`]*(?:`|$))
  | (?P<num>0x[0-9a-f]+|0b[01]+|\d+(?:\.\d*)?(?:e[+-]?\d+)?|\.\d+)
  | (?P<var>@@?[\w.$]*|@`[^`]*`)
  | (?P<word>[a-z_$][\w$]*(?:[.\-][a-z_$][\w$]*)*)  # rc-select is a name, not rc minus select
  | (?P<op2><=>|!=|<>|<=|>=|\|\||&&|:=|<<|>>)
  | (?P<op>[=<>!+\-*/%^&|~])
  | (?P<p>[(),;])
  | (?P<other>.)
    """,
    re.X | re.S | re.I,
)


# A token: (kind, text), a plain tuple (kind at [0], text at [1]), built and read in C, and
# compiled by mypyc into a struct of two strings, where a class would run code per token (the
# tokenizer makes up to MAX_TOKENS of them per context).
Tok = tuple[str, str]


# a word's token kind; where the sets overlap, the first of union, logic, operator words,
# true/false/null, statements, keywords wins (the order of the checks this table replaces)
_WORD_KINDS: dict[str, str] = {}
for _kind, _words in ((KW, _KEYWORDS), (STMT, _STATEMENTS), (NUM, _TRUE_WORDS), (OP, _OP_WORDS),
                      (LOGIC, _LOGIC), (UNION, {"union"})):
    _WORD_KINDS.update(dict.fromkeys(_words, _kind))
_SKIPPED = frozenset({"ws", "vcomment", "vend"})
_PARENS = (LPAR, RPAR)
_KIND = itemgetter(0)


def _tokens_py(text: str, max_tokens: int = MAX_TOKENS) -> list[Tok]:
    """_TOKEN_RE's tokens of `text`, at most `max_tokens`: the reference of _sqltok.c's
    tokens(), and what runs from the sources."""
    toks: list[Tok] = []
    append = toks.append
    word_kind = _WORD_KINDS.get
    for m in _TOKEN_RE.finditer(text):
        kind = m.lastgroup
        if kind in _SKIPPED:
            continue
        val = m.group()
        if kind == "word":
            low = val.lower()
            append((word_kind(low, WORD), low))
        elif kind == "other":  # a character SQL has no use for: it breaks any shape
            append((OTHER, val))
        elif kind == "lcomment":
            if text[m.end() :].strip():
                continue  # a line comment with SQL after it (`union#x\nselect`): whitespace
            append((COMMENT, val))
            break
        elif kind == "str":
            append((STR, val))
        elif kind == "num":
            append((NUM, val))
        elif kind == "var":
            append((VAR, val))
        elif kind == "op2":
            append((LOGIC if val in ("||", "&&") else OP, val))
        elif kind == "op":
            append((OP, val))
        elif kind == "p":
            append((val, val))
        if len(toks) >= max_tokens:
            break
    return toks


def _native_tokens() -> Callable[[str, int], list[Tok]] | None:
    """_sqltok.tokens (with this module's tables) when node/detect runs compiled (c_helper)."""
    helper = c_helper("_sqltok")
    if helper is None:
        return None
    kinds = (WORD, STR, NUM, VAR, OP, LOGIC, COMMENT, OTHER)  # _sqltok.c's order
    native = helper.tokens
    return lambda text, max_tokens: native(text, max_tokens, _WORD_KINDS, kinds)


# _tokens_py in one C pass (_sqltok.c) when node/detect is compiled
_tokens: Callable[[str, int], list[Tok]] = _native_tokens() or _tokens_py


def tokenize(text: str, max_tokens: int = MAX_TOKENS) -> list[Tok]:
    toks = _tokens(text, max_tokens)
    # a word directly followed by "(" is a function call
    for i in range(len(toks) - 1):
        if toks[i][0] in (WORD, KW, STMT) and toks[i + 1][0] == LPAR:
            if toks[i][1] in SQL_FUNCTIONS or toks[i][0] == WORD:
                toks[i] = (FUNC, toks[i][1])
    return toks


_OPERAND = frozenset({NUM, STR, WORD, VAR, FUNC})
_COMPARE = frozenset({"=", "<", ">", "<=", ">=", "!=", "<>", "<=>", "like", "rlike", "regexp", "is", "in", "between", "sounds"})


def _strip_parens(toks: list[Tok]) -> list[Tok]:
    return [t for t in toks if t[0] not in _PARENS]


def _statement_at(toks: list[Tok], i: int) -> bool:
    """Does a complete, harmful SQL statement start at toks[i]?"""
    if i >= len(toks) or toks[i][0] != STMT:
        return False
    word = toks[i][1]
    rest = [t for t in toks[i + 1 : i + 8] if t[0] not in (LPAR, RPAR)]
    texts = [t[1] for t in rest]
    kinds = [t[0] for t in rest]
    if word == "select":
        if not rest:
            return False
        first = rest[0]
        if first[0] in (NUM, STR, VAR, FUNC) or first[1] in ("*", "null"):
            return True
        if first[1] == "select" or (first[1] in ("+", "-") and len(rest) > 1 and rest[1][0] == NUM):
            # select (select @@x), ...  /  union(select+1,2,3): a subquery, a signed number
            return True
        if first[1] == "case" and len(rest) > 1 and rest[1][1] == "when":
            return True
        if first[1] in ("all", "distinct", "distinctrow", "top"):  # "Select all" is a button label
            return len(rest) > 1 and rest[1][0] in (NUM, STR, VAR, FUNC, OP)
        if first[0] == WORD and first[1] in SQL_FUNCTIONS and (len(rest) == 1 or rest[1][0] in (SEMI, COMMENT)):
            return True  # select session_user;
        # select a,b from t  /  select col from tbl [end|where|limit|;|comment]; the first
        # column may be an expression: select name||'~'||pass from t, select a+':'+b from t
        if first[0] == WORD:
            if len(rest) > 2 and rest[1][1] in _SELECT_LIST_OPERATORS:
                rest = _first_column_folded([t for t in toks[i + 1 : i + 24] if t[0] not in _PARENS])
            if len(rest) >= 2 and rest[1][0] == COMMA:
                return True
            if len(rest) >= 3 and rest[1][1] == "from" and rest[2][0] == WORD:
                return len(rest) == 3 or rest[3][0] in (COMMENT, SEMI, KW, LOGIC, OP)
        return False
    if word in ("drop", "truncate", "alter", "create"):
        if texts[:2] == ["or", "replace"]:
            return True
        return bool(texts) and texts[0] in ("table", "database", "user", "procedure", "function", "schema", "view", "index", "login", "trigger")
    if word == "insert" or word == "replace":
        return "into" in texts[:2]
    if word == "update":
        return len(kinds) >= 2 and kinds[0] == WORD and texts[1] == "set"
    if word == "delete":
        return bool(texts) and texts[0] == "from" and len(kinds) >= 2 and kinds[1] == WORD
    if word in ("exec", "execute", "call"):
        # exec xp_cmdshell, exec master.dbo.xp_dirtree, exec master..xp_dirtree (MSSQL's default schema)
        return bool(rest) and (rest[0][1].startswith(("xp_", "sp_", "master.")) or rest[0][0] == VAR
                               or (rest[0][1] in ("master", "msdb") and texts[1:3] == [".", "."]
                                   and len(texts) > 3 and texts[3].startswith(("xp_", "sp_"))))
    if word == "declare":
        return bool(rest) and rest[0][0] == VAR
    if word == "backup":
        return bool(texts) and texts[0] in ("database", "log") and "to" in texts[1:4]
    if word == "grant" or word == "revoke":
        return any(t in ("to", "from") for t in texts[1:5])
    if word == "waitfor":
        return bool(texts) and texts[0] in ("delay", "time")
    if word == "shutdown":
        return not rest or rest[0][0] in (COMMENT, SEMI)
    return False


# operators that join a select list's operands into one column: concatenation, arithmetic
_SELECT_LIST_OPERATORS = frozenset({"||", "+", "-", "*", "/", "%", "|", "&", "^"})
_COLUMN_OPERANDS = frozenset({NUM, STR, WORD, VAR, FUNC})


def _first_column_folded(rest: list[Tok]) -> list[Tok]:
    """`rest` with its first column, an operand chain `a || '~' || b`, folded into its first
    operand, so the select list reads as if the column were one word."""
    k = 1
    while k + 1 < len(rest) and rest[k][1] in _SELECT_LIST_OPERATORS and rest[k + 1][0] in _COLUMN_OPERANDS:
        k += 2
    return [rest[0], *rest[k:]]


_UNION_TOKEN = (UNION, "union")  # the only UNION token there is (words are lowercased)


def _union_select(toks: list[Tok]) -> bool:
    if _UNION_TOKEN not in toks:  # one C-level scan instead of a Python loop over every token
        return False
    for i, t in enumerate(toks):
        if t[0] != UNION:
            continue
        j = i + 1
        while j < len(toks) and (toks[j][0] in (LPAR,) or toks[j][1] in ("all", "distinct", "distinctrow", "+")):
            j += 1
        if j < len(toks) and toks[j][0] == STMT and toks[j][1] == "select":
            if j + 1 == len(toks) and i == 0:
                return True  # the bare `union select` probe
            if _statement_at(toks, j):
                return True
    return False


def _tautology(toks: list[Tok], i: int) -> bool:
    """toks[i] is a logic operator: `or 1=1`, `and 'a'='a`, `or true--`, `and sleep(5)`."""
    rest = toks[i + 1 :]
    if not rest:
        return False
    a = rest[0]
    if a[0] == FUNC:
        if toks[i][1] in ("||", "&&") or "." in a[1]:
            return True  # '||f(x)||' concatenation, pkg.function() calls
        if a[1] in _STRONG_FUNCTIONS or (a[1] in SQL_FUNCTIONS and len(rest) > 1):
            return True
        # any function (gtid_subset, json_extract...) whose arguments call SQL, a subquery or
        # a system variable (gtid_subset(@@version,0): MySQL's error-based probe)
        if any(t[0] == STMT or (t[0] == FUNC and t[1] in SQL_FUNCTIONS) or (t[0] == VAR and t[1][:2] == "@@")
               for t in rest[1:12]):
            return True
        # `and json_extract(...)=1--`: a call compared, the rest of the statement commented out
        return rest[-1][0] == COMMENT and any(t[0] == OP and t[1] in _COMPARE for t in rest[1:])
    if a[0] == STMT:
        return _statement_at(rest, 0)
    if a[0] == LOGIC and a[1] == "not" and len(rest) > 1:
        rest = rest[1:]
        a = rest[0]
    if a[1] == "exists":  # or exists(select ...): a subquery as the condition
        return len(rest) > 1 and rest[1][0] == STMT and _statement_at(rest, 1)
    if a[0] not in _OPERAND:
        return False
    if len(rest) == 1:
        return a[0] in (NUM, STR, VAR)  # `' or 1` / `' or 'x`: the statement ends there
    b = rest[1]
    if b[0] == COMMENT or b[0] == SEMI:
        return True
    if b[0] == OP and b[1] == "is":
        return True  # or x is not null
    if b[0] == OP and (b[1] in _COMPARE or b[1] in "+-*/%|&^"):
        if len(rest) == 2:
            return b[1] in _COMPARE
        c = rest[2]
        if c[0] == STMT:
            return _statement_at(rest, 2)
        if c[0] == FUNC and c[1] in SQL_FUNCTIONS:
            return True
        if c[0] in _OPERAND:
            # the comparison must end the value or be followed by SQL, not by prose
            if len(rest) == 3:
                return True
            d = rest[3]
            if b[1] == "in" and d[0] == COMMA:
                return True  # or 1 in (1,2)
            return d[0] in (COMMENT, SEMI, LOGIC, KW, OP, UNION, STR, STMT, FUNC)
        return False
    if b[0] == LOGIC:
        return a[0] in (NUM, STR)
    return False


def _judge(toks: list[Tok], broke_out: bool, free_text: bool = False) -> str | None:
    """Return a short rule name when the token stream is an injection. `free_text`: the value
    is a document's text (a JSON string, a body, an XML text): there a statement written out
    as code (`SELECT name FROM users;` in a snippet, a question about a query) is text unless
    it is stacked after `;`."""
    if not toks:
        return None
    if _union_select(toks):
        return "union-select"
    flat = _strip_parens(toks)
    if not flat:
        return None
    first = flat[0]
    if broke_out:
        # flat[0] is the string that the payload's quote closed
        if len(flat) < 2:
            return None
        nxt = flat[1]
        if nxt[0] == COMMENT and len(toks) > 1:
            text = nxt[1]
            if text[:1] == "#" and text[1:2].isalnum() and flat[0][1] in text:
                return None  # '#title' ... '...': a CSS selector or an anchor in a string, no comment
            return "breakout-comment"
        if nxt[0] == SEMI:
            return "breakout-stacked" if _statement_at(flat, 2) or (len(flat) > 2 and flat[2][0] == COMMENT) else None
        if nxt[0] == LOGIC and nxt[1] != "not" and _tautology(flat, 1):
            return "breakout-tautology"
        if nxt[0] == OP and nxt[1] in _COMPARE | {"+", "||", "-", "*", "/", "^", "|", "&"}:
            rest = flat[2:]
            if rest and rest[0][0] == FUNC and rest[0][1] in SQL_FUNCTIONS:
                return "breakout-function"
            if rest and rest[0][0] == STMT and _statement_at(rest, 0):
                return "breakout-subquery"
            if nxt[1] in _COMPARE and rest and (rest[0][0] == NUM or (rest[0][0] == STR and len(rest[0][1]) <= 3)) and (len(rest) == 1 or rest[1][0] in (COMMENT, LOGIC, SEMI)):
                return "breakout-compare"
        if nxt[0] == KW and nxt[1] in ("order", "group") and len(flat) > 3 and flat[2][1] == "by":
            return "breakout-orderby" if flat[3][0] in (NUM, WORD) else None
        if nxt[0] == KW and nxt[1] in ("having", "procedure", "into", "limit", "where") and len(flat) > 2:
            return "breakout-clause"
        if nxt[0] == STMT and _statement_at(flat, 1):
            return "breakout-statement"
        return None
    # as-is context: the value is the start of an expression or statement. Each loop below
    # needs a token of one kind to fire (a statement, a keyword, a function call): it is
    # skipped when the stream has none (a C-level test instead of a Python loop)
    kinds = set(map(_KIND, flat))
    has_statement = STMT in kinds
    for i, t in enumerate(flat if has_statement else ()):
        if t[0] == STMT and _statement_start(flat, i, free_text) and _statement_at(flat, i):
            return "statement"
    if first[0] == LOGIC and first[1] != "not" and _tautology(flat, 0):
        return "logic-fragment"
    if first[0] == KW and first[1] in ("order", "group") and len(flat) > 2 and flat[1][1] == "by" and flat[2][0] == NUM:
        return "orderby-fragment"
    for i, t in enumerate(flat[:-3] if KW in kinds and not free_text else ()):
        if t[0] == KW and t[1] in ("where", "having") and flat[i + 1][0] in (NUM, STR, WORD) and flat[i + 2][0] == OP and flat[i + 2][1] in _COMPARE and flat[i + 3][0] in (NUM, STR, WORD):
            return "clause-fragment"
    for i, t in enumerate(flat[:-2] if FUNC in kinds else ()):
        if t[0] == FUNC and t[1] in _CONCAT_FUNCTIONS and any(
            u[0] == LOGIC and u[1] == "||" and k + 1 < len(flat) and flat[k + 1][1] in _CONCAT_FUNCTIONS
            for k, u in enumerate(flat[i + 1 : i + 8], start=i + 1)
        ):
            return "function-concat"
    if first[0] in (NUM, VAR) or (first[0] == OP and first[1] == "-" and len(flat) > 1 and flat[1][0] == NUM):
        k = 1 if first[0] != OP else 2
        if k < len(flat):
            nxt = flat[k]
            if nxt[0] == LOGIC and _tautology(flat, k) and (
                    any(t[0] in (OP, COMMENT, FUNC, STMT) for t in flat[k:]) or _boolean_operand(flat, k)):
                return "numeric-tautology"
            if nxt[0] == SEMI and _statement_at(flat, k + 1):
                return "stacked-statement"
            if nxt[0] == OP and nxt[1] in _COMPARE and k + 1 < len(flat) and flat[k + 1][1] == "select" \
                    and _statement_at(flat, k + 1):
                return "numeric-subquery"  # 1 RLIKE (SELECT (CASE WHEN ...)): sqlmap's boolean probe
            if nxt[0] == KW and nxt[1] in ("order", "group") and k + 2 < len(flat) and flat[k + 1][1] == "by" and flat[k + 2][0] == NUM:
                return "numeric-orderby"
            if nxt[1] == "procedure" and k + 1 < len(flat) and flat[k + 1][0] == FUNC:
                return "numeric-procedure"  # 1 procedure analyse()
            if nxt[0] == COMMENT and first[0] == NUM and len(flat) == 2 and toks[-1][1].startswith(("--", "#")) and len(toks) > 1 and toks[1][0] == RPAR:
                return "numeric-comment"
    # anywhere: a stacked statement `...; drop table x`
    for i, t in enumerate(flat[:-1] if has_statement else ()):
        if t[0] == SEMI and not (free_text and _entity_end(flat, i)) and _statement_at(flat, i + 1):
            return "stacked-statement"
    return None


def _boolean_operand(flat: list[Tok], k: int) -> bool:
    """flat[k] is a logic operator whose operand is SQL's boolean literal and ends the value
    (`1) or true`, `0 || TRUE`): no sentence ends "1 or true"."""
    return k + 2 == len(flat) and flat[k][1] != "not" and flat[k + 1][1] == "true"


def _entity_end(flat: list[Tok], i: int) -> bool:
    """flat[i] is the `;` of a character entity (`&gt;`, `&#62;`): it separates nothing."""
    return i > 1 and flat[i - 2][1] == "&" and flat[i - 1][0] in (WORD, NUM)


def _statement_start(flat: list[Tok], i: int, free_text: bool) -> bool:
    """Can a statement start at flat[i] as an injection: the value's start, or after an
    operator, `;`, a logic word, a comma, a number or a string; in free text only after `;`."""
    if free_text:
        return i > 0 and flat[i - 1][0] == SEMI and not _entity_end(flat, i - 1)
    return i == 0 or flat[i - 1][0] in (OP, SEMI, LOGIC, COMMA, NUM, STR)


# _judge reads at most the first 13 non-paren tokens of a context (lengths are only compared
# within them), except where a rule walks the whole stream: UNION anywhere; in the as-is
# context also a statement keyword, WHERE/HAVING, `||` concatenation, or a numeric or variable
# start. Without those the head decides, and tokenizing (most of the analyser's cost) stops
# after HEAD_TOKENS tokens.
DECIDING_TOKENS = 13
HEAD_TOKENS = 20
_WHOLE_STREAM_WORDS = ("union",)
_AS_IS_WHOLE_STREAM_WORDS = ("union", "where", "having", "||", *sorted(_STATEMENTS))
_WHOLE_STREAM_LITERALS = Literals(_WHOLE_STREAM_WORDS)
_AS_IS_WHOLE_STREAM_LITERALS = Literals(_AS_IS_WHOLE_STREAM_WORDS)


def _head_decides(text: str, broke_out: bool) -> bool:
    """No word in `text` that lets a rule read past the head (a word token's lower() equal to
    one of them needs that text in text.lower())."""
    low = text.lower()
    return not (_WHOLE_STREAM_LITERALS if broke_out else _AS_IS_WHOLE_STREAM_LITERALS).any_in(low)


# Without the words above, every rule of a context reads its first non-paren token first and
# fires only on one of these kinds: as is, a logic operator, ORDER/GROUP (a keyword), a number
# or variable, a minus sign; after a break-out, a comment, `;`, a logic operator, an operator,
# a keyword or a statement. A stream that starts with anything else (a word, a string, `{`...:
# JSON and prose) is no injection, whatever follows. As is, a number or variable first fires
# only with one of these kinds next. Parens are skipped by the rules: no verdict from a paren.
_AS_IS_RULE_STARTS = frozenset({LOGIC, KW, NUM, VAR, OP, LPAR, RPAR})
_AS_IS_AFTER_NUMBER = frozenset({LOGIC, SEMI, KW, COMMENT, LPAR, RPAR})
_BROKEN_OUT_RULE_STARTS = frozenset({COMMENT, SEMI, LOGIC, OP, KW, STMT, LPAR, RPAR})


def _no_rule_starts(start: list[Tok], broke_out: bool) -> bool:
    """`start` (the first two tokens of a stream without the words above) is no injection,
    whatever follows it."""
    if not start:
        return True
    kind = start[0][0]
    if broke_out:
        return kind not in _BROKEN_OUT_RULE_STARTS
    if kind == NUM or kind == VAR:
        return len(start) < 2 or start[1][0] not in _AS_IS_AFTER_NUMBER
    return kind not in _AS_IS_RULE_STARTS


def context_tokens(text: str, broke_out: bool) -> list[Tok]:
    """What _judge needs of tokenize(text): the whole stream, or a head of it that holds at
    least DECIDING_TOKENS non-paren tokens when nothing past them can change the verdict, or
    only its first two tokens when no rule can start with them."""
    if _head_decides(text, broke_out):
        start = tokenize(text, 2)
        if _no_rule_starts(start, broke_out):
            return start
        head = tokenize(text, HEAD_TOKENS + 1)
        if len(head) <= HEAD_TOKENS:
            return head  # the stream ended before the bound: it is the whole stream
        head.pop()  # the last token's kind depends on the next one (a function call or not)
        flat = _strip_parens(head)
        if len(flat) >= DECIDING_TOKENS and (broke_out or not _numeric_start(flat[0])):
            return head
    return tokenize(text)


def _numeric_start(first: Tok) -> bool:
    """The as-is numeric rules (`1 or 1=1 -- x`) look at every token after the first."""
    return first[0] in (NUM, VAR) or first[1] == "-"


def _contexts(value: str, as_is: bool = True) -> list[tuple[list[Tok], bool]]:
    """The token streams of `value`'s contexts: as is (unless not `as_is`), and after its first
    single and its first double quote."""
    out: list[tuple[list[Tok], bool]] = [(context_tokens(value, False), False)] if as_is else []
    for q in ("'", '"'):
        i = value.find(q)
        if i >= 0:
            toks = context_tokens(value[i + 1 :], True)
            out.append(([(STR, q)] + toks, True))
    return out


_QUICK_RE = re.compile(r"['\"`;#()=<>|&*/@-]|\b(?:union|select|or|and|order|group|having|insert|update|delete|drop|exec|declare|waitfor|xor|sleep|benchmark)\b", re.I)


def detect_sqli(value: str, kind: str = "query", out_of_time: Callable[[], bool] | None = None,
                gate: Gate | None = None) -> str | None:
    """A rule name if `value` is SQL injection, else None (also when `out_of_time()` stopped
    the windows of a long value; see windows.judge_windows for `gate`)."""
    text = normalise(value)
    if len(text) < 2:
        return None
    # a URL (a page address carried in a parameter): only a quote break-out counts, in every
    # window of it
    is_url = text.startswith(("http://", "https://"))
    if kind == "path":
        return judge_windows(text, MAX_SQL_LEN, _detect_path_window, out_of_time, gate)
    free_text = kind in TEXT_KINDS
    return judge_windows(text, MAX_SQL_LEN, lambda window, _start, _owned: _detect_window(window, is_url, free_text),
                         out_of_time, gate)


def _candidates(value: str) -> list[str]:
    candidates = [value]
    if "/**/" in value:
        candidates.append(value.replace("/**/", ""))  # comments splitting keywords: un/**/ion
    if "+" in value and " " not in value.strip():
        candidates.append(value.replace("+", " "))  # a '+' that meant a space: 1+union+select
    return candidates


def _detect_window(value: str, is_url: bool, free_text: bool = False) -> str | None:
    if not _QUICK_RE.search(value):
        return None
    for text in _candidates(value):
        for toks, broke in _contexts(text, not is_url):
            rule = _judge(toks, broke, free_text)
            if rule:
                return rule
    return None


# A path segment is a value of its own to the backend (`/items/{id}`): a segment that can start
# an as-is rule (a number, a sign, a variable, a paren, a logic or clause word) is judged as a
# value's start. The quote contexts need no such start: the path's first quote is found anyway.
_SEGMENT_START_RE = re.compile(
    r"/(?=[\s(]*(?:[-+]?\d|@|(?:and|or|xor|not|having|where|order|group|union|select|procedure|limit)\b))", re.I)
MAX_SEGMENT = 256


def _detect_path_window(window: str, _start: int, owned: int) -> str | None:
    rule = _detect_window(window, False)
    if rule:
        return rule
    if not _QUICK_RE.search(window):
        return None
    for m in _SEGMENT_START_RE.finditer(window, 0, owned):
        segment = window[m.end() : m.end() + MAX_SEGMENT]
        for text in _candidates(segment):
            rule = _judge(context_tokens(text, False), False)
            if rule:
                return "path-segment-" + rule
    return None
