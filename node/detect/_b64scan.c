/* The base64 tokens of a text worth decoding, found in one C pass (readings._tokens_decoded).
 *
 * text_tokens(text) returns, in the order they occur (repeats included), the tokens that
 * readings._b64_candidates_py(text) returns, less those whose decoding cannot be text:
 * decode.b64_token(token) is None for every token left out. The search (readings.py's
 * _B64_TOKEN_RE and _worth) is kept exactly; the decoding test is only ever a necessary
 * condition, so a token this module keeps may still decode to nothing there. Measured on the
 * benign corpus's slowest requests, the Python search cost 0.35 us a token, most of them beacon
 * ids and layout codes (`4u/1m/I//50/4e/3k/g/5/MT/-1+`) that are not UTF-8 once decoded
 * (docs/decisions.md, "The base64 token search is native").
 *
 * tests/test_detect_b64scan.py compares both on generated texts, and each of the two tests
 * below with its Python counterpart.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* readings._B64_TOKEN_RE: a run of [A-Za-z0-9+/_-] of 14 characters or more, from its start,
 * and up to two '=' after it; readings._tokens_decoded tries those of 16 characters or more */
#define MIN_RUN 14
#define MIN_TOKEN 16

/* 0..63: the character's value in base64 or base64url (decode.b64_token reads both); -1: not
 * a base64 character */
static signed char B64_VALUE[128];

static void init_tables(void)
{
    const char *alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (int c = 0; c < 128; c++)
        B64_VALUE[c] = -1;
    for (int v = 0; v < 64; v++)
        B64_VALUE[(unsigned char)alphabet[v]] = (signed char)v;
    B64_VALUE['-'] = 62;
    B64_VALUE['_'] = 63;
}

#define IS_B64(c) ((c) < 128 && B64_VALUE[(c)] >= 0)

/* readings._worth_trying: an upper-case letter; if all letters, a
 * lower-case one and an upper-case one after the first character (not a capitalized word);
 * else not only hex digits and '-' (hex ids, hashes, UUIDs; digits alone are such) */
static int worth(int kind, const void *data, Py_ssize_t start, Py_ssize_t end)
{
    int upper = 0, lower = 0, upper_after_first = 0, alpha = 1, hexish = 1;
    for (Py_ssize_t i = start; i < end; i++) {
        Py_UCS4 c = PyUnicode_READ(kind, data, i);
        if (c >= 'A' && c <= 'Z') {
            upper = 1;
            if (i > start)
                upper_after_first = 1;
            if (c > 'F')
                hexish = 0;
        } else if (c >= 'a' && c <= 'z') {
            lower = 1;
            if (c > 'f')
                hexish = 0;
        } else {
            alpha = 0;
            if (!((c >= '0' && c <= '9') || c == '-'))
                hexish = 0;
        }
    }
    if (!upper)
        return 0;
    if (alpha)
        return lower && upper_after_first;
    return !hexish;
}

/* A UTF-8 validator fed one byte at a time: Python's decoder's well-formed sequences (no
 * overlong forms, no surrogates, nothing past U+10FFFF; Unicode's table 3-7). */
typedef struct {
    int need;            /* continuation bytes still expected */
    unsigned char lo;    /* the range the next continuation byte must be in */
    unsigned char hi;
    int invalid;
    unsigned char prev1; /* the two bytes before, to find EF BF BD (U+FFFD) in the bytes */
    unsigned char prev2;
    int replacement;
} Utf8;

static void utf8_feed(Utf8 *u, unsigned char b)
{
    if (u->prev2 == 0xEF && u->prev1 == 0xBF && b == 0xBD)
        u->replacement = 1;
    u->prev2 = u->prev1;
    u->prev1 = b;
    if (u->need) {
        if (b < u->lo || b > u->hi) {
            u->invalid = 1;
            u->need = 0;  /* this byte starts again, as a decoder resumes after an error */
        } else {
            u->need--;
            u->lo = 0x80;
            u->hi = 0xBF;
            return;
        }
    }
    if (b < 0x80)
        return;
    u->lo = 0x80;
    u->hi = 0xBF;
    if (b >= 0xC2 && b <= 0xDF) {
        u->need = 1;
    } else if (b >= 0xE0 && b <= 0xEF) {
        u->need = 2;
        if (b == 0xE0)
            u->lo = 0xA0;
        else if (b == 0xED)
            u->hi = 0x9F;
    } else if (b >= 0xF0 && b <= 0xF4) {
        u->need = 3;
        if (b == 0xF0)
            u->lo = 0x90;
        else if (b == 0xF4)
            u->hi = 0x8F;
    } else {
        u->invalid = 1;  /* a continuation byte out of place, C0, C1, F5-FF */
    }
}

/* Whether decode.b64_token(token) may be text. It is None when the token's length cannot be
 * base64's, and when its bytes are neither UTF-8 nor hold EF BF BD (then the decoding would
 * hold U+FFFD that the bytes did not); every other token is left to b64_token, which also
 * checks the padding and the share of printable characters. */
static int may_be_text(int kind, const void *data, Py_ssize_t start, Py_ssize_t end)
{
    Py_ssize_t stop = end;
    while (stop > start && PyUnicode_READ(kind, data, stop - 1) == '=')
        stop--;
    if ((stop - start) % 4 == 1)
        return 0;
    Utf8 u = {0, 0x80, 0xBF, 0, 0, 0, 0};
    unsigned int bits = 0;
    int held = 0;
    for (Py_ssize_t i = start; i < stop; i++) {
        bits = (bits << 6) | (unsigned int)B64_VALUE[PyUnicode_READ(kind, data, i)];
        held += 6;
        if (held >= 8) {
            held -= 8;
            utf8_feed(&u, (unsigned char)(bits >> held));
            bits &= (1u << held) - 1;
        }
    }
    if (u.need)
        u.invalid = 1;  /* a sequence cut short at the end */
    return !u.invalid || u.replacement;
}

static PyObject *text_tokens(PyObject *module, PyObject *text)
{
    (void)module;
    if (!PyUnicode_Check(text)) {
        PyErr_SetString(PyExc_TypeError, "text_tokens() takes a str");
        return NULL;
    }
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    Py_ssize_t i = 0;
    while (i < n) {
        Py_UCS4 c = PyUnicode_READ(kind, data, i);
        if (!IS_B64(c)) {
            i++;
            continue;
        }
        /* i starts a run: the character before it, if any, is not a base64 one */
        Py_ssize_t start = i;
        while (i < n) {
            c = PyUnicode_READ(kind, data, i);
            if (!IS_B64(c))
                break;
            i++;
        }
        if (i - start < MIN_RUN)
            continue;
        for (int pad = 0; pad < 2 && i < n && PyUnicode_READ(kind, data, i) == '='; pad++)
            i++;
        if (i - start < MIN_TOKEN || !worth(kind, data, start, i) || !may_be_text(kind, data, start, i))
            continue;
        PyObject *token = PyUnicode_Substring(text, start, i);
        if (token == NULL || PyList_Append(out, token) < 0) {
            Py_XDECREF(token);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(token);
    }
    return out;
}

/* worth() and may_be_text() of a whole str, for tests/test_detect_b64scan.py */
static PyObject *whole_token_test(PyObject *token, int (*test)(int, const void *, Py_ssize_t, Py_ssize_t))
{
    if (!PyUnicode_Check(token)) {
        PyErr_SetString(PyExc_TypeError, "takes a str");
        return NULL;
    }
    Py_ssize_t n = PyUnicode_GET_LENGTH(token);
    int kind = PyUnicode_KIND(token);
    const void *data = PyUnicode_DATA(token);
    Py_ssize_t run = 0;
    while (run < n && IS_B64(PyUnicode_READ(kind, data, run)))
        run++;
    for (Py_ssize_t i = run; i < n; i++) {
        if (PyUnicode_READ(kind, data, i) != '=') {
            PyErr_SetString(PyExc_ValueError, "not a token: base64 characters, then '=' padding");
            return NULL;
        }
    }
    return PyBool_FromLong(test(kind, data, 0, n));
}

static PyObject *worth_test(PyObject *module, PyObject *token)
{
    (void)module;
    return whole_token_test(token, worth);
}

static PyObject *may_be_text_test(PyObject *module, PyObject *token)
{
    (void)module;
    return whole_token_test(token, may_be_text);
}

static PyMethodDef methods[] = {
    {"text_tokens", text_tokens, METH_O,
     "text_tokens(text) -> list[str]: the base64 tokens of text that may decode to text."},
    {"worth", worth_test, METH_O, "worth(token) -> bool: the token is worth decoding."},
    {"may_be_text", may_be_text_test, METH_O, "may_be_text(token) -> bool: the bytes may be text."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_b64scan", "The base64 token search of readings.py, in C.", -1, methods,
};

PyMODINIT_FUNC PyInit__b64scan(void)
{
    init_tables();
    return PyModule_Create(&module);
}
