/* The SQL tokenizer of sqli.py in one C pass (sqli.tokenize).
 *
 * tokens(text, max_tokens, word_kinds, kinds) returns the list sqli._tokens_py(text,
 * max_tokens) returns: the matches of sqli._TOKEN_RE, one after the other as finditer finds
 * them, made into (kind, text) tokens, white space and executable-comment marks skipped, a
 * line comment with more than white space after it skipped, one with nothing after it the last
 * token, at most max_tokens of them. Each alternative of the regex is tried in its order at
 * every position, with the regex's flags (IGNORECASE, DOTALL, Unicode classes), so the two
 * agree on every text. Measured on the benign corpus's slowest requests, the regex walk cost
 * about 1 us a token, 40% of the SQL analyser's time (docs/decisions.md, "The SQL tokenizer is
 * native").
 *
 * `kinds` is sqli.py's token kinds (WORD, STR, NUM, VAR, OP, LOGIC, COMMENT, OTHER) and
 * `word_kinds` its _WORD_KINDS: the kind of a word, lowercased, that is not a plain WORD.
 *
 * tests/test_detect_sqltok.py compares both on generated texts and every character class on
 * every code point.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

enum { K_WORD, K_STR, K_NUM, K_VAR, K_OP, K_LOGIC, K_COMMENT, K_OTHER, K_COUNT };

typedef struct {
    int kind;
    const void *data;
    Py_ssize_t n;
} Text;

#define AT(t, i) PyUnicode_READ((t)->kind, (t)->data, (i))

/* \s: what str.isspace() and sre's Unicode \s accept */
static int is_space(Py_UCS4 c) { return Py_UNICODE_ISSPACE(c); }
/* \d: a Unicode decimal digit */
static int is_digit(Py_UCS4 c) { return Py_UNICODE_ISDECIMAL(c); }
/* [\w$]: a Unicode letter or digit, '_' or '$' */
static int is_word(Py_UCS4 c) { return c == '_' || c == '$' || Py_UNICODE_ISALNUM(c); }
/* [a-z_$] under IGNORECASE: ASCII letters, and the four letters whose case mapping is an
 * ASCII one (U+0130 and U+0131: I and i with and without a dot, U+017F long s, U+212A Kelvin) */
static int is_word_start(Py_UCS4 c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == '$' ||
           c == 0x130 || c == 0x131 || c == 0x17F || c == 0x212A;
}
static int is_hex(Py_UCS4 c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

/* the end of the match at `i` of _TOKEN_RE's `ws` group (\s+, or a closed block comment
 * not starting with '!'), or -1 */
static Py_ssize_t match_ws(const Text *t, Py_ssize_t i)
{
    Py_UCS4 c = AT(t, i);
    if (is_space(c)) {
        Py_ssize_t j = i + 1;
        while (j < t->n && is_space(AT(t, j)))
            j++;
        return j;
    }
    if (c == '/' && i + 1 < t->n && AT(t, i + 1) == '*' && !(i + 2 < t->n && AT(t, i + 2) == '!')) {
        for (Py_ssize_t j = i + 2; j + 1 < t->n; j++)  /* .*? then the first */
            if (AT(t, j) == '*' && AT(t, j + 1) == '/')
                return j + 2;
    }
    return -1;
}

/* `lcomment`: two dashes then white space, a control character, the end, a block comment's
 * opening or a sign not before a digit, to the line's end; '#' to the line's end; ';%00'; a
 * block comment never closed, not starting with '!', to the text's end */
static Py_ssize_t match_line_comment(const Text *t, Py_ssize_t i)
{
    Py_UCS4 c = AT(t, i);
    Py_ssize_t n = t->n, j = -1;
    if (c == '-' && i + 1 < n && AT(t, i + 1) == '-') {
        Py_ssize_t k = i + 2;
        if (k == n) {
            j = k;  /* `$` (a final '\n' is white space, the first branch) */
        } else {
            Py_UCS4 d = AT(t, k);
            if (is_space(d) || d <= 0x1F)
                j = k + 1;
            else if (d == '/' && k + 1 < n && AT(t, k + 1) == '*')
                j = k + 2;
            else if ((d == '-' || d == '+') && !(k + 1 < n && is_digit(AT(t, k + 1))))
                j = k + 1;
        }
    } else if (c == '#') {
        j = i + 1;
    } else if (c == ';') {
        if (i + 3 < n && AT(t, i + 1) == '%' && AT(t, i + 2) == '0' && AT(t, i + 3) == '0')
            return i + 4;
        return -1;
    } else if (c == '/' && i + 1 < n && AT(t, i + 1) == '*' && !(i + 2 < n && AT(t, i + 2) == '!')) {
        return n;  /* an unclosed comment: .* with DOTALL */
    }
    if (j < 0)
        return -1;
    while (j < n && AT(t, j) != '\n')
        j++;
    return j;
}

/* `str`: a quoted literal, its quote doubled or escaped inside, or a backquoted one, closed
 * or running to the end (sqli._TOKEN_RE's `str` group). The repeat is greedy
 * and stops at a lone quote (the match ends after it), at the end (`$`), or at a backslash
 * that ends the text; then the regex backs off to the start of the last doubled quote, whose
 * first quote closes the literal, or fails. */
static Py_ssize_t match_string(const Text *t, Py_ssize_t i)
{
    Py_UCS4 q = AT(t, i);
    Py_ssize_t n = t->n, p = i + 1;
    if (q == '`') {
        while (p < n && AT(t, p) != '`')
            p++;
        return p < n ? p + 1 : n;
    }
    if (q != '\'' && q != '"')
        return -1;
    Py_ssize_t last_pair = -1;
    while (p < n) {
        Py_UCS4 d = AT(t, p);
        if (d == q) {
            if (p + 1 < n && AT(t, p + 1) == q) {
                last_pair = p;
                p += 2;
                continue;
            }
            return p + 1;  /* the closing quote */
        }
        if (d == '\\') {
            if (p + 1 < n) {
                p += 2;
                continue;
            }
            break;  /* a backslash that ends the text */
        }
        p++;
    }
    if (p >= n)
        return n;  /* `$` at the end */
    return last_pair >= 0 ? last_pair + 1 : -1;
}

static Py_ssize_t digits_from(const Text *t, Py_ssize_t j)
{
    while (j < t->n && is_digit(AT(t, j)))
        j++;
    return j;
}

/* `num`: hex (0x), binary (0b), decimal with a fraction and an exponent, or a fraction
 * alone (IGNORECASE) */
static Py_ssize_t match_number(const Text *t, Py_ssize_t i)
{
    Py_UCS4 c = AT(t, i);
    Py_ssize_t n = t->n;
    if (c == '0' && i + 2 < n) {
        Py_UCS4 x = AT(t, i + 1);
        if ((x == 'x' || x == 'X') && is_hex(AT(t, i + 2))) {
            Py_ssize_t j = i + 3;
            while (j < n && is_hex(AT(t, j)))
                j++;
            return j;
        }
        if ((x == 'b' || x == 'B') && (AT(t, i + 2) == '0' || AT(t, i + 2) == '1')) {
            Py_ssize_t j = i + 3;
            while (j < n && (AT(t, j) == '0' || AT(t, j) == '1'))
                j++;
            return j;
        }
    }
    if (is_digit(c)) {
        Py_ssize_t j = digits_from(t, i + 1);
        if (j < n && AT(t, j) == '.')
            j = digits_from(t, j + 1);
        if (j < n && (AT(t, j) == 'e' || AT(t, j) == 'E')) {
            Py_ssize_t k = j + 1;
            if (k < n && (AT(t, k) == '+' || AT(t, k) == '-'))
                k++;
            if (k < n && is_digit(AT(t, k)))
                j = digits_from(t, k + 1);
        }
        return j;
    }
    if (c == '.' && i + 1 < n && is_digit(AT(t, i + 1)))
        return digits_from(t, i + 2);
    return -1;
}

/* `var`: @@?[\w.$]* (which matches wherever its other branch, @`...`, could) */
static Py_ssize_t match_variable(const Text *t, Py_ssize_t i)
{
    if (AT(t, i) != '@')
        return -1;
    Py_ssize_t j = i + 1;
    if (j < t->n && AT(t, j) == '@')
        j++;
    while (j < t->n && (is_word(AT(t, j)) || AT(t, j) == '.'))
        j++;
    return j;
}

/* `word`: [a-z_$][\w$]*(?:[.\-][a-z_$][\w$]*)* (IGNORECASE) */
static Py_ssize_t match_word(const Text *t, Py_ssize_t i)
{
    if (!is_word_start(AT(t, i)))
        return -1;
    Py_ssize_t j = i + 1, n = t->n;
    for (;;) {
        while (j < n && is_word(AT(t, j)))
            j++;
        if (j + 1 < n && (AT(t, j) == '.' || AT(t, j) == '-') && is_word_start(AT(t, j + 1)))
            j += 2;
        else
            return j;
    }
}

/* `op2` in the regex's order */
static const char *const OP2[] = {"<=>", "!=", "<>", "<=", ">=", "||", "&&", ":=", "<<", ">>", NULL};

static Py_ssize_t match_op2(const Text *t, Py_ssize_t i)
{
    for (const char *const *op = OP2; *op; op++) {
        Py_ssize_t len = (Py_ssize_t)strlen(*op), k = 0;
        if (i + len > t->n)
            continue;
        while (k < len && AT(t, i + k) == (Py_UCS4)(unsigned char)(*op)[k])
            k++;
        if (k == len)
            return i + len;
    }
    return -1;
}

/* a word lowercased as str.lower() does (ASCII in place, anything else by the method) */
static PyObject *lowered(PyObject *word)
{
    if (!PyUnicode_IS_ASCII(word))
        return PyObject_CallMethod(word, "lower", NULL);
    Py_ssize_t len = PyUnicode_GET_LENGTH(word);
    const Py_UCS1 *src = PyUnicode_1BYTE_DATA(word);
    Py_ssize_t k = 0;
    while (k < len && !(src[k] >= 'A' && src[k] <= 'Z'))
        k++;
    if (k == len)
        return Py_NewRef(word);
    PyObject *out = PyUnicode_New(len, 127);
    if (!out)
        return NULL;
    Py_UCS1 *dst = PyUnicode_1BYTE_DATA(out);
    for (Py_ssize_t m = 0; m < len; m++)
        dst[m] = (src[m] >= 'A' && src[m] <= 'Z') ? (Py_UCS1)(src[m] + 32) : src[m];
    return out;
}

/* appends (kind, value) to `out`, taking the reference to `value`; -1 on error */
static int append_token(PyObject *out, PyObject *kind, PyObject *value)
{
    if (!value)
        return -1;
    PyObject *tok = PyTuple_Pack(2, kind, value);
    Py_DECREF(value);
    if (!tok)
        return -1;
    int rc = PyList_Append(out, tok);
    Py_DECREF(tok);
    return rc;
}

/* whether text[from:] holds more than white space (str.strip() leaves something) */
static int more_than_space(const Text *t, Py_ssize_t from)
{
    for (Py_ssize_t j = from; j < t->n; j++)
        if (!is_space(AT(t, j)))
            return 1;
    return 0;
}

static PyObject *tokens(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 4 || !PyUnicode_Check(args[0]) || !PyLong_Check(args[1]) || !PyDict_Check(args[2]) ||
        !PyTuple_Check(args[3]) || PyTuple_GET_SIZE(args[3]) != K_COUNT) {
        PyErr_SetString(PyExc_TypeError, "tokens(text: str, max_tokens: int, word_kinds: dict, kinds: tuple of 8 str)");
        return NULL;
    }
    PyObject *text = args[0], *word_kinds = args[2], *kinds = args[3];
    Py_ssize_t max_tokens = PyLong_AsSsize_t(args[1]);
    if (max_tokens == -1 && PyErr_Occurred())
        return NULL;
    Text t = {PyUnicode_KIND(text), PyUnicode_DATA(text), PyUnicode_GET_LENGTH(text)};
    PyObject *out = PyList_New(0);
    if (!out)
        return NULL;
#define KIND(k) PyTuple_GET_ITEM(kinds, (k))
#define PIECE(a, b) PyUnicode_Substring(text, (a), (b))
    Py_ssize_t i = 0;
    while (i < t.n) {
        Py_UCS4 c = AT(&t, i);
        Py_ssize_t end;
        int rc = 0;
        if ((end = match_ws(&t, i)) >= 0) {
            i = end;
            continue;
        }
        if (c == '/' && i + 2 < t.n && AT(&t, i + 1) == '*' && AT(&t, i + 2) == '!') {  /* vcomment: its digits */
            i = digits_from(&t, i + 3);
            continue;
        }
        if (c == '*' && i + 1 < t.n && AT(&t, i + 1) == '/') {  /* vend */
            i += 2;
            continue;
        }
        if ((end = match_line_comment(&t, i)) >= 0) {
            if (more_than_space(&t, end)) {
                i = end;  /* `union#x\nselect`: white space */
                continue;
            }
            if (append_token(out, KIND(K_COMMENT), PIECE(i, end)) < 0)
                goto error;
            break;
        }
        if ((end = match_string(&t, i)) >= 0) {
            rc = append_token(out, KIND(K_STR), PIECE(i, end));
        } else if ((end = match_number(&t, i)) >= 0) {
            rc = append_token(out, KIND(K_NUM), PIECE(i, end));
        } else if ((end = match_variable(&t, i)) >= 0) {
            rc = append_token(out, KIND(K_VAR), PIECE(i, end));
        } else if ((end = match_word(&t, i)) >= 0) {
            PyObject *word = PIECE(i, end);
            PyObject *low = word ? lowered(word) : NULL;
            Py_XDECREF(word);
            if (!low)
                goto error;
            PyObject *kind = PyDict_GetItemWithError(word_kinds, low);  /* borrowed */
            if (!kind && PyErr_Occurred()) {
                Py_DECREF(low);
                goto error;
            }
            rc = append_token(out, kind ? kind : KIND(K_WORD), low);
        } else if ((end = match_op2(&t, i)) >= 0) {
            int logic = end - i == 2 && (c == '|' || c == '&');  /* || and && */
            rc = append_token(out, KIND(logic ? K_LOGIC : K_OP), PIECE(i, end));
        } else if (c && c < 128 && strchr("=<>!+-*/%^&|~", (int)c)) {
            end = i + 1;
            rc = append_token(out, KIND(K_OP), PIECE(i, end));
        } else if (c && c < 128 && strchr("(),;", (int)c)) {
            end = i + 1;
            PyObject *p = PIECE(i, end);
            rc = p ? append_token(out, p, Py_NewRef(p)) : -1;
            Py_XDECREF(p);
        } else {
            end = i + 1;
            rc = append_token(out, KIND(K_OTHER), PIECE(i, end));
        }
        if (rc < 0)
            goto error;
        i = end;
        if (PyList_GET_SIZE(out) >= max_tokens)
            break;
    }
    return out;
error:
    Py_DECREF(out);
    return NULL;
#undef KIND
#undef PIECE
}

static PyObject *class_test(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    long code;
    if (nargs != 2 || !PyUnicode_Check(args[0]) || (code = PyLong_AsLong(args[1])) == -1 ||
        code < 0 || code > 0x10FFFF) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "char_class(name: str, code point: int)");
        return NULL;
    }
    const char *name = PyUnicode_AsUTF8(args[0]);
    if (!name)
        return NULL;
    Py_UCS4 c = (Py_UCS4)code;
    if (!strcmp(name, "space"))
        return PyBool_FromLong(is_space(c));
    if (!strcmp(name, "digit"))
        return PyBool_FromLong(is_digit(c));
    if (!strcmp(name, "word"))
        return PyBool_FromLong(is_word(c));
    if (!strcmp(name, "word_start"))
        return PyBool_FromLong(is_word_start(c));
    if (!strcmp(name, "hex"))
        return PyBool_FromLong(is_hex(c));
    PyErr_Format(PyExc_ValueError, "no character class %s", name);
    return NULL;
}

static PyMethodDef methods[] = {
    {"tokens", (PyCFunction)(void (*)(void))tokens, METH_FASTCALL,
     "tokens(text, max_tokens, word_kinds, kinds) -> list[tuple[str, str]]: sqli._tokens_py's tokens."},
    {"char_class", (PyCFunction)(void (*)(void))class_test, METH_FASTCALL,
     "char_class(name, code_point) -> bool: the tokenizer's character classes (space, digit, word, "
     "word_start, hex), for the tests."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_sqltok", "The SQL tokenizer of sqli.py, in C.", -1, methods,
};

PyMODINIT_FUNC PyInit__sqltok(void)
{
    return PyModule_Create(&module);
}
