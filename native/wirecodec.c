/* vhsm._wirecodec: the fast path of vhsm/wire.py's frame codec.
 *
 * wire.py is the definition of the format. This module decodes and encodes the frames that
 * travel on every call (ints, flags, hex, plain text, a bytes parameter, binary envelopes,
 * a caller's buffer) without the interpreter's per-field work, and answers None for
 * anything else: a malformed frame, a value it does not handle natively, a failing per-tag
 * codec. wire.py then runs its own codec, which gives the result or the exact error. So
 * whenever this module answers, it answers what wire.py would have: tests/wire_differential.py
 * checks it on random and mutated frames, also under the sanitizers (tests/stress/fuzz_codec.py).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

/* The kinds as wire.py numbers them for configure(). K_CALL: wire.py's codec for every value;
 * K_JSON: wire.py's json kind, whose plain-bytes form (X and hex) is handled here. */
enum { K_NONE = 0, K_TEXT = 1, K_INT = 2, K_BOOL = 3, K_HEX = 4, K_CALL = 5, K_JSON = 6 };
#define NTAGS (26 * 26)
#define MAX_RAW 8 /* raw fields in one envelope (wire.py has four bytes tags); more: wire.py encodes */

static unsigned char kind_of[NTAGS];
static PyObject *tag_name[NTAGS];   /* interned "AB" strings, the dict keys */
static PyObject *decoder_of[NTAGS]; /* wire.py's decoder, for values not handled here */
static PyObject *encoder_of[NTAGS]; /* every known tag: wire.py's encoder, for values not handled here */
static Py_ssize_t max_message = 0;
static Py_ssize_t binary_min = 0;
static int configured = 0;

static int tag_index(const char *p) {
    if (p[0] < 'A' || p[0] > 'Z' || p[1] < 'A' || p[1] > 'Z') return -1;
    return (p[0] - 'A') * 26 + (p[1] - 'A');
}

static int frame_char(unsigned char c) {
    return (c == 9 || (c >= 32 && c < 127)) && c != '[' && c != ']' && c != '<' && c != '>';
}

static int hexval(unsigned char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* configure(kinds: dict[str, int], decoders: dict[str, callable], encoders: dict[str, callable],
 *           max_message: int, binary_min: int) */
static PyObject *configure(PyObject *self, PyObject *args) {
    PyObject *kinds, *decoders, *encoders, *key, *value;
    Py_ssize_t pos = 0, maxm, bmin;
    if (!PyArg_ParseTuple(args, "O!O!O!nn", &PyDict_Type, &kinds, &PyDict_Type, &decoders,
                          &PyDict_Type, &encoders, &maxm, &bmin))
        return NULL;
    for (int i = 0; i < NTAGS; i++) {
        kind_of[i] = K_NONE;
        Py_CLEAR(tag_name[i]);
        Py_CLEAR(decoder_of[i]);
        Py_CLEAR(encoder_of[i]);
    }
    configured = 0;
    while (PyDict_Next(kinds, &pos, &key, &value)) {
        Py_ssize_t len;
        const char *s = PyUnicode_Check(key) ? PyUnicode_AsUTF8AndSize(key, &len) : NULL;
        long kind = PyLong_Check(value) ? PyLong_AsLong(value) : -1;
        int idx = (s != NULL && len == 2) ? tag_index(s) : -1;
        if (idx < 0 || kind < K_TEXT || kind > K_JSON) {
            PyErr_Clear();
            PyErr_Format(PyExc_ValueError, "tag %R: tags are two capital letters with a known kind", key);
            return NULL;
        }
        PyObject *decoder = PyDict_GetItem(decoders, key), *encoder = PyDict_GetItem(encoders, key);
        if (encoder == NULL || decoder == NULL) {
            PyErr_Format(PyExc_ValueError, "tag %R lacks its codec", key);
            return NULL;
        }
        kind_of[idx] = (unsigned char)kind;
        Py_INCREF(key);
        PyUnicode_InternInPlace(&key);
        tag_name[idx] = key;
        Py_INCREF(encoder);
        encoder_of[idx] = encoder;
        Py_INCREF(decoder);
        decoder_of[idx] = decoder;
    }
    max_message = maxm;
    binary_min = bmin;
    configured = 1;
    Py_RETURN_NONE;
}

/* bytes of strict hex (even length, no blanks), or NULL with no exception set. */
static PyObject *from_hex(const char *v, Py_ssize_t n) {
    if (n % 2) return NULL;
    PyObject *out = PyBytes_FromStringAndSize(NULL, n / 2);
    if (out == NULL) return NULL;
    unsigned char *o = (unsigned char *)PyBytes_AS_STRING(out);
    for (Py_ssize_t i = 0; i < n; i += 2) {
        int hi = hexval((unsigned char)v[i]), lo = hexval((unsigned char)v[i + 1]);
        if (hi < 0 || lo < 0) {
            Py_DECREF(out);
            return NULL;
        }
        o[i / 2] = (unsigned char)(hi << 4 | lo);
    }
    return out;
}

/* The value of a field, or NULL when wire.py must decide. */
static PyObject *decode_value(int idx, const char *v, Py_ssize_t n) {
    switch (kind_of[idx]) {
    case K_TEXT:
        return PyUnicode_DecodeASCII(v, n, NULL);
    case K_INT: {
        Py_ssize_t i = 0;
        long long x = 0;
        int neg = 0;
        if (n > 0 && v[0] == '-') {
            neg = 1;
            i = 1;
        }
        if (i == n || n - i > 18) return NULL;
        for (; i < n; i++) {
            if (v[i] < '0' || v[i] > '9') return NULL;
            x = x * 10 + (v[i] - '0');
        }
        return PyLong_FromLongLong(neg ? -x : x);
    }
    case K_BOOL:
        if (n == 1 && v[0] == 'Y') Py_RETURN_TRUE;
        if (n == 1 && v[0] == 'N') Py_RETURN_FALSE;
        return NULL;
    case K_HEX:
        return from_hex(v, n);
    case K_JSON:
        if (n > 0 && v[0] == 'X') return from_hex(v + 1, n - 1);
        /* fall through */
    case K_CALL: {
        PyObject *text = PyUnicode_DecodeASCII(v, n, NULL);
        if (text == NULL) return NULL;
        PyObject *out = PyObject_CallOneArg(decoder_of[idx], text);
        Py_DECREF(text);
        return out;
    }
    }
    return NULL;
}

/* The fields of a text frame's inside (between [ and ]) into `fields`, and its code; -1 when
 * wire.py must decide. `seen` marks the tags taken. */
static int decode_text(const char *inner, const char *end, PyObject *fields, unsigned char *seen, PyObject **code) {
    for (const char *p = inner; p < end; p++)
        if (!frame_char((unsigned char)*p)) return -1;

    /* The first field: AO and an alphanumeric code of 1 to 8 characters. */
    const char *semi = memchr(inner, ';', end - inner);
    const char *first_end = semi ? semi : end;
    Py_ssize_t first_len = first_end - inner;
    if (first_len < 3 || first_len > 10 || inner[0] != 'A' || inner[1] != 'O') return -1;
    for (const char *p = inner + 2; p < first_end; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z'))) return -1;

    const char *p = semi ? semi + 1 : end;
    while (p < end) {
        const char *f_end = memchr(p, ';', end - p);
        if (f_end == NULL) f_end = end;
        int idx = (f_end - p >= 2) ? tag_index(p) : -1;
        if (idx < 0 || kind_of[idx] == K_NONE || seen[idx]) return -1;
        seen[idx] = 1;
        PyObject *value = decode_value(idx, p + 2, f_end - p - 2);
        if (value == NULL) return -1;
        int failed = PyDict_SetItem(fields, tag_name[idx], value);
        Py_DECREF(value);
        if (failed) return -1;
        p = f_end + 1;
    }
    *code = PyUnicode_DecodeASCII(inner + 2, first_len - 2, NULL);
    return *code == NULL ? -1 : 0;
}

/* A decimal of 1 to 18 digits in [p, q); -1 otherwise. */
static long long decimal(const char *p, const char *q) {
    long long x = 0;
    if (q <= p || q - p > 18) return -1;
    for (; p < q; p++) {
        if (*p < '0' || *p > '9') return -1;
        x = x * 10 + (*p - '0');
    }
    return x;
}

/* An envelope `{N,T}` + N bytes: a text frame's first T bytes, raw fields `TAG#n#` + n bytes
 * + `;`, then `]`. Its text fields, then its raw fields, into `fields`; -1 when wire.py must
 * decide. */
static int decode_envelope(const char *s, Py_ssize_t len, PyObject *fields, unsigned char *seen, PyObject **code) {
    const char *close = memchr(s, '}', len < 24 ? len : 24);
    const char *comma = close ? memchr(s + 1, ',', close - s - 1) : NULL;
    if (comma == NULL) return -1;
    long long n = decimal(s + 1, comma), t = decimal(comma + 1, close);
    Py_ssize_t base = close + 1 - s;
    if (n < 0 || t < 0 || len != base + n || !(0 < t && t < n) || s[base + n - 1] != ']') return -1;
    const char *text = s + base;
    if (t + 1 > max_message || text[0] != '[') return -1;
    if (decode_text(text + 1, text + t, fields, seen, code)) return -1;
    const char *p = text + t, *last = s + base + n - 1;
    while (p < last) {
        if (last - p < 5 || p[2] != '#') return -1;
        const char *limit = p + 16 < s + len ? p + 16 : s + len;
        const char *mark = memchr(p + 3, '#', limit - (p + 3));
        int idx = tag_index(p);
        if (mark == NULL || idx < 0 || kind_of[idx] != K_HEX || seen[idx]) return -1;
        long long size = decimal(p + 3, mark);
        const char *value = mark + 1;
        if (size < 0 || size > last - value || value[size] != ';') return -1;
        seen[idx] = 1;
        PyObject *v = PyBytes_FromStringAndSize(value, size);
        if (v == NULL) return -1;
        int failed = PyDict_SetItem(fields, tag_name[idx], v);
        Py_DECREF(v);
        if (failed) return -1;
        p = value + size + 1;
    }
    return 0;
}

/* decode(frame: bytes) -> (code, fields) | None, for a text frame `[AO...;TAGvalue;...]` or
 * a binary envelope. */
static PyObject *decode(PyObject *self, PyObject *arg) {
    if (!configured || !PyBytes_CheckExact(arg)) Py_RETURN_NONE;
    const char *s = PyBytes_AS_STRING(arg);
    Py_ssize_t n = PyBytes_GET_SIZE(arg);
    unsigned char seen[NTAGS];
    memset(seen, 0, sizeof seen);
    PyObject *code = NULL, *fields = PyDict_New();
    if (fields == NULL) return NULL;
    int failed;
    if (n > 0 && s[0] == '{')
        failed = decode_envelope(s, n, fields, seen, &code);
    else
        failed = n < 2 || n > max_message || s[0] != '[' || s[n - 1] != ']' ||
                 decode_text(s + 1, s + n - 1, fields, seen, &code);
    if (failed) {
        PyErr_Clear();
        Py_XDECREF(code);
        Py_DECREF(fields);
        Py_RETURN_NONE;
    }
    PyObject *out = PyTuple_Pack(2, code, fields);
    Py_DECREF(code);
    Py_DECREF(fields);
    return out;
}

typedef struct {
    char *data;
    Py_ssize_t len, cap;
} Buf;

static int reserve(Buf *b, Py_ssize_t more) {
    if (b->len + more <= b->cap) return 0;
    Py_ssize_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + more) cap *= 2;
    char *data = PyMem_Realloc(b->data, cap);
    if (data == NULL) return -1;
    b->data = data;
    b->cap = cap;
    return 0;
}

static int put(Buf *b, const char *s, Py_ssize_t n) {
    if (reserve(b, n)) return -1;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    return 0;
}

/* Whether a str may stand in a frame's text field as it is. */
static int plain_text(PyObject *str) {
    if (!PyUnicode_IS_ASCII(str)) return 0;
    const char *s = (const char *)PyUnicode_DATA(str);
    Py_ssize_t n = PyUnicode_GET_LENGTH(str);
    for (Py_ssize_t i = 0; i < n; i++)
        if (!frame_char((unsigned char)s[i]) || s[i] == ';') return 0;
    return 1;
}

/* Appends an ASCII str; -1 when it is not ASCII. */
static int put_text(Buf *b, PyObject *str) {
    if (!PyUnicode_IS_ASCII(str)) return -1;
    return put(b, (const char *)PyUnicode_DATA(str), PyUnicode_GET_LENGTH(str));
}

static int put_hex(Buf *b, const unsigned char *v, Py_ssize_t n) {
    static const char digits[] = "0123456789abcdef";
    if (reserve(b, 2 * n)) return -1;
    char *o = b->data + b->len;
    for (Py_ssize_t i = 0; i < n; i++) {
        o[2 * i] = digits[v[i] >> 4];
        o[2 * i + 1] = digits[v[i] & 15];
    }
    b->len += 2 * n;
    return 0;
}

/* The bytes of a bytes, bytearray or flat byte memoryview (an in-process caller's buffer):
 * what wire.py's bytes(v) and len(v) see; 0 for anything else. */
static int byte_view(PyObject *v, const char **p, Py_ssize_t *n) {
    if (PyBytes_CheckExact(v)) {
        *p = PyBytes_AS_STRING(v);
        *n = PyBytes_GET_SIZE(v);
        return 1;
    }
    if (PyByteArray_CheckExact(v)) {
        *p = PyByteArray_AS_STRING(v);
        *n = PyByteArray_GET_SIZE(v);
        return 1;
    }
    if (PyMemoryView_Check(v)) {
        /* Asked for, not read from the object: a released memoryview refuses here. The bytes
         * stay valid after the release, as long as the memoryview lives. */
        Py_buffer view;
        if (PyObject_GetBuffer(v, &view, PyBUF_FULL_RO) < 0) {
            PyErr_Clear();
            return 0;
        }
        int ok = view.ndim == 1 && view.itemsize == 1 && PyBuffer_IsContiguous(&view, 'C') &&
                 view.format != NULL && strcmp(view.format, "B") == 0;
        *p = view.buf;
        *n = view.len;
        PyBuffer_Release(&view);
        return ok;
    }
    return 0;
}

/* Appends TAG and the value's text; -1 when wire.py must decide. */
static int put_field(Buf *b, int idx, PyObject *v) {
    const char *tag = PyUnicode_AsUTF8(tag_name[idx]);
    if (put(b, tag, 2)) return -1;
    switch (kind_of[idx]) {
    case K_INT:
        if (PyLong_CheckExact(v)) {
            PyObject *text = PyObject_Str(v);
            if (text == NULL) return -1;
            int r = put_text(b, text);
            Py_DECREF(text);
            return r;
        }
        break;
    case K_BOOL:
        if (PyBool_Check(v)) return put(b, v == Py_True ? "Y" : "N", 1);
        break;
    case K_TEXT:
        if (PyUnicode_CheckExact(v) && plain_text(v)) return put_text(b, v);
        break;
    case K_JSON:
        if (PyBytes_CheckExact(v))
            return put(b, "X", 1) || put_hex(b, (const unsigned char *)PyBytes_AS_STRING(v), PyBytes_GET_SIZE(v));
        break;
    }
    PyObject *text = PyObject_CallOneArg(encoder_of[idx], v);
    if (text == NULL) return -1;
    int r = PyUnicode_Check(text) ? put_text(b, text) : -1;
    Py_DECREF(text);
    return r;
}

/* encode(code: str, fields: dict, status: str | None, binary: bool) -> bytes | None */
static PyObject *encode(PyObject *self, PyObject *args) {
    PyObject *code, *fields, *status, *key, *v;
    int binary;
    Py_ssize_t pos = 0;
    if (!PyArg_ParseTuple(args, "OOOp", &code, &fields, &status, &binary)) return NULL;
    if (!configured || !PyUnicode_CheckExact(code) || !PyDict_Check(fields) ||
        (status != Py_None && !PyUnicode_CheckExact(status)))
        Py_RETURN_NONE;
    Buf text = {0};
    struct {
        PyObject *obj; /* held while the frame is built */
        int tag;
        const char *bytes;
        Py_ssize_t size;
    } raw[MAX_RAW]; /* bytes fields that travel raw, copied straight into the frame */
    int nraw = 0;
    PyObject *out = NULL;
    if (put(&text, "[AO", 3) || put_text(&text, code)) goto give_up;
    if (status != Py_None && (put(&text, ";AN", 3) || put_text(&text, status))) goto give_up;
    while (PyDict_Next(fields, &pos, &key, &v)) {
        if (v == Py_None) continue;
        Py_ssize_t len;
        const char *k = PyUnicode_CheckExact(key) ? PyUnicode_AsUTF8AndSize(key, &len) : NULL;
        int idx = (k != NULL && len == 2) ? tag_index(k) : -1;
        if (idx < 0 || kind_of[idx] == K_NONE) goto give_up;
        const char *bytes;
        Py_ssize_t size;
        if (kind_of[idx] == K_HEX && byte_view(v, &bytes, &size)) {
            if (binary && size >= binary_min) {
                if (nraw == MAX_RAW) goto give_up;
                Py_INCREF(v);
                raw[nraw].obj = v;
                raw[nraw].tag = idx;
                raw[nraw].bytes = bytes;
                raw[nraw++].size = size;
                continue;
            }
            if (put(&text, ";", 1) || put(&text, k, 2) || put_hex(&text, (const unsigned char *)bytes, size))
                goto give_up;
            continue;
        }
        if (binary && kind_of[idx] == K_HEX) goto give_up; /* wire.py decides what travels raw */
        if (put(&text, ";", 1) || put_field(&text, idx, v)) goto give_up;
    }
    if (put(&text, ";", 1)) goto give_up;
    if (nraw == 0) {
        if (put(&text, "]", 1)) goto give_up;
        out = PyBytes_FromStringAndSize(text.data, text.len);
    } else {
        /* {N,T} + text + (TAG#n# + bytes + ;)... + ]: the sizes first, then one copy of each value */
        char heads[MAX_RAW][32];
        int head_len[MAX_RAW];
        Py_ssize_t body = text.len + 1;
        for (int i = 0; i < nraw; i++) {
            head_len[i] = snprintf(heads[i], sizeof heads[i], "%s#%zd#", PyUnicode_AsUTF8(tag_name[raw[i].tag]),
                                   raw[i].size);
            body += head_len[i] + raw[i].size + 1;
        }
        char lead[48];
        int h = snprintf(lead, sizeof lead, "{%zd,%zd}", body, text.len);
        out = PyBytes_FromStringAndSize(NULL, h + body);
        if (out != NULL) {
            char *o = PyBytes_AS_STRING(out);
            memcpy(o, lead, h);
            o += h;
            memcpy(o, text.data, text.len);
            o += text.len;
            for (int i = 0; i < nraw; i++) {
                memcpy(o, heads[i], head_len[i]);
                o += head_len[i];
                memcpy(o, raw[i].bytes, raw[i].size);
                o += raw[i].size;
                *o++ = ';';
            }
            *o = ']';
        }
    }
    PyMem_Free(text.data);
    for (int i = 0; i < nraw; i++) Py_DECREF(raw[i].obj);
    return out;
give_up:
    PyErr_Clear();
    PyMem_Free(text.data);
    for (int i = 0; i < nraw; i++) Py_DECREF(raw[i].obj);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"configure", configure, METH_VARARGS, "Take wire.py's tag table and codecs."},
    {"decode", decode, METH_O, "(code, fields) of a frame, or None: let wire.py decide."},
    {"encode", encode, METH_VARARGS, "A frame's bytes, or None: let wire.py encode it."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_wirecodec", NULL, -1, methods};

PyMODINIT_FUNC PyInit__wirecodec(void) { return PyModule_Create(&module); }
