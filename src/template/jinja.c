// jinja.c: the evaluator of the Jinja engine (jinja.h): values with Python's
// semantics (str(), repr(), ==, <, truthiness, + - * / // % ** on int, float,
// str, list), attribute and item lookup as jinja2's sandbox does it (getattr
// then getitem for a.b, the other way round for a[b]; missing -> undefined),
// scopes as jinja2 compiles them (a for-loop iteration, a macro call and a
// block set get their own frame; if does not), and the statements.
// References: jinja2 3.1 (runtime.py, sandbox.py, compiler.py) and
// transformers' chat_template_utils.py (the environment it renders in).
// Errors (raise_exception, an undefined value used, a type error, a limit)
// longjmp to qt_jinja_render, which frees the render's arena: every value
// lives there.
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/base.h"
#include "template/jinja-impl.h"

#define MAX_DEPTH 400         // nested evaluation (expressions, statements, macro calls)
#define MAX_MACRO_DEPTH 64    // macro calls inside macro calls

// ---- arena -------------------------------------------------------------------

struct jchunk {
    jchunk *next;
    size_t cap, used;
    _Alignas(16) unsigned char data[];
};

void *ja_alloc(jarena *a, size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (n > a->max || a->used > a->max - n) return NULL;
    jchunk *c = a->chunks;
    if (!c || c->cap - c->used < n) {
        size_t cap = QT_MAX(n, (size_t)64 << 10);
        c = qt_malloc(sizeof(jchunk) + cap);
        c->cap = cap;
        c->used = 0;
        c->next = a->chunks;
        a->chunks = c;
    }
    void *p = c->data + c->used;
    c->used += n;
    a->used += n;
    memset(p, 0, n);
    return p;
}

void ja_free(jarena *a) {
    for (jchunk *c = a->chunks, *nx; c; c = nx) {
        nx = c->next;
        qt_free(c);
    }
    a->chunks = NULL;
    a->used = 0;
}

// ---- errors and values ------------------------------------------------------------

_Noreturn void jx_fail(jrender *r, int line, const char *fmt, ...) {
    int k = line > 0 ? snprintf(r->err, r->err_cap, "line %d: ", line) : 0;
    va_list ap;
    va_start(ap, fmt);
    if (k >= 0 && (size_t)k < r->err_cap) vsnprintf(r->err + k, r->err_cap - (size_t)k, fmt, ap);
    va_end(ap);
    longjmp(r->fail, 1);
}

void *jx_alloc(jrender *r, size_t n) {
    void *p = ja_alloc(&r->mem, n);
    if (!p) jx_fail(r, 0, "the template used more than %zu bytes of memory", r->mem.max);
    return p;
}

static jv V_NONE = { .t = JV_NONE }, V_TRUE = { .t = JV_BOOL, .u.b = true }, V_FALSE = { .t = JV_BOOL, .u.b = false };

jv *jx_none(void) { return &V_NONE; }
jv *jx_bool(bool b) { return b ? &V_TRUE : &V_FALSE; }

jv *jx_new(jrender *r, jv_type t) {
    jv *v = jx_alloc(r, sizeof(jv));
    v->t = (uint8_t)t;
    return v;
}

jv *jx_str(jrender *r, const char *s, size_t n) {
    jv *v = jx_new(r, JV_STR);
    char *c = jx_alloc(r, n + 1);
    if (n) memcpy(c, s, n);
    v->u.s = (jstr){ c, n };
    return v;
}

jv *jx_cstr(jrender *r, const char *s) { return jx_str(r, s, strlen(s)); }

jv *jx_int(jrender *r, int64_t i) {
    jv *v = jx_new(r, JV_INT);
    v->u.i = i;
    return v;
}

jv *jx_float(jrender *r, double f) {
    jv *v = jx_new(r, JV_FLOAT);
    v->u.f = f;
    return v;
}

jv *jx_undef(jrender *r, const char *name, size_t n) {
    jv *v = jx_new(r, JV_UNDEF);
    v->u.s = (jstr){ name, n };
    return v;
}

jv *jx_list(jrender *r, int n, bool tuple) {
    jv *v = jx_new(r, JV_LIST);
    v->tuple = tuple;
    v->u.l.n = n;
    v->u.l.a = n ? jx_alloc(r, sizeof(jv *) * (size_t)n) : NULL;
    return v;
}

jv *jx_dict(jrender *r) {
    jv *v = jx_new(r, JV_DICT);
    v->u.d = jx_alloc(r, sizeof(jdict));
    return v;
}

static bool key_is(const jv *k, const char *s, size_t n) {
    return k->t == JV_STR && k->u.s.n == n && memcmp(k->u.s.s, s, n) == 0;
}

jv *jx_dict_get(const jdict *d, const char *k, size_t n) {
    for (int i = 0; i < d->n; i++)
        if (key_is(d->k[i], k, n)) return d->v[i];
    return NULL;
}

jv *jx_dict_find(const jdict *d, const jv *k) {
    for (int i = 0; i < d->n; i++)
        if (jx_equal(d->k[i], k)) return d->v[i];
    return NULL;
}

// Insert or replace (a replaced key keeps its position, as in a Python dict).
void jx_dict_set(jrender *r, jdict *d, jv *k, jv *v) {
    for (int i = 0; i < d->n; i++)
        if (jx_equal(d->k[i], k)) { d->v[i] = v; return; }
    if (d->n == d->cap) {
        int cap = d->cap ? 2 * d->cap : 8;
        jv **nk = jx_alloc(r, sizeof(jv *) * (size_t)cap), **nv = jx_alloc(r, sizeof(jv *) * (size_t)cap);
        if (d->n) {
            memcpy(nk, d->k, sizeof(jv *) * (size_t)d->n);
            memcpy(nv, d->v, sizeof(jv *) * (size_t)d->n);
        }
        d->k = nk;
        d->v = nv;
        d->cap = cap;
    }
    d->k[d->n] = k;
    d->v[d->n++] = v;
}

const char *jx_type_name(const jv *v) {
    switch (v->t) {
    case JV_UNDEF: return "Undefined";
    case JV_NONE: return "NoneType";
    case JV_BOOL: return "bool";
    case JV_INT: return "int";
    case JV_FLOAT: return "float";
    case JV_STR: return "str";
    case JV_LIST: return v->tuple ? "tuple" : "list";
    case JV_DICT: return "dict";
    case JV_NS: return "Namespace";
    case JV_MACRO: return "Macro";
    case JV_LOOP: return "LoopContext";
    default: return "function";
    }
}

bool jx_truthy(const jv *v) {
    switch (v->t) {
    case JV_UNDEF: case JV_NONE: return false;
    case JV_BOOL: return v->u.b;
    case JV_INT: return v->u.i != 0;
    case JV_FLOAT: return v->u.f != 0;
    case JV_STR: return v->u.s.n > 0;
    case JV_LIST: return v->gen || v->u.l.n > 0;
    case JV_DICT: return v->u.d->n > 0;
    default: return true;
    }
}

static bool is_num(const jv *v) { return v->t == JV_INT || v->t == JV_FLOAT || v->t == JV_BOOL; }
static double num_f(const jv *v) { return v->t == JV_FLOAT ? v->u.f : v->t == JV_INT ? (double)v->u.i : (double)v->u.b; }
static bool is_intlike(const jv *v) { return v->t == JV_INT || v->t == JV_BOOL; }
static int64_t int_of(const jv *v) { return v->t == JV_INT ? v->u.i : (int64_t)v->u.b; }

bool jx_equal(const jv *a, const jv *b) {
    if (a == b) return true;
    if (is_num(a) && is_num(b)) {
        if (is_intlike(a) && is_intlike(b)) return int_of(a) == int_of(b);
        return num_f(a) == num_f(b);
    }
    if (a->t != b->t) return false;
    switch (a->t) {
    case JV_UNDEF: case JV_NONE: return true;
    case JV_STR: return a->u.s.n == b->u.s.n && memcmp(a->u.s.s, b->u.s.s, a->u.s.n) == 0;
    case JV_LIST:
        if (a->gen || b->gen || a->tuple != b->tuple || a->u.l.n != b->u.l.n) return false;
        for (int i = 0; i < a->u.l.n; i++)
            if (!jx_equal(a->u.l.a[i], b->u.l.a[i])) return false;
        return true;
    case JV_DICT:
        if (a->u.d->n != b->u.d->n) return false;
        for (int i = 0; i < a->u.d->n; i++) {
            jv *o = jx_dict_find(b->u.d, a->u.d->k[i]);
            if (!o || !jx_equal(a->u.d->v[i], o)) return false;
        }
        return true;
    case JV_METHOD:
        return a->u.m.self == b->u.m.self && strcmp(a->u.m.name, b->u.m.name) == 0;
    case JV_FUNC:
        return a->u.fn == b->u.fn;
    default:
        return false;
    }
}

int jx_compare(jrender *r, int line, const jv *a, const jv *b) {
    if (is_num(a) && is_num(b)) {
        if (is_intlike(a) && is_intlike(b)) return int_of(a) < int_of(b) ? -1 : int_of(a) > int_of(b);
        double x = num_f(a), y = num_f(b);
        return x < y ? -1 : x > y ? 1 : 0;   // (NaN: neither)
    }
    if (a->t == JV_STR && b->t == JV_STR) {
        size_t n = QT_MIN(a->u.s.n, b->u.s.n);
        int c = n ? memcmp(a->u.s.s, b->u.s.s, n) : 0;   // UTF-8 byte order is code point order
        if (c) return c < 0 ? -1 : 1;
        return a->u.s.n < b->u.s.n ? -1 : a->u.s.n > b->u.s.n;
    }
    if (a->t == JV_LIST && b->t == JV_LIST && a->tuple == b->tuple) {
        for (int i = 0; i < a->u.l.n && i < b->u.l.n; i++) {
            if (jx_equal(a->u.l.a[i], b->u.l.a[i])) continue;
            return jx_compare(r, line, a->u.l.a[i], b->u.l.a[i]);
        }
        return a->u.l.n < b->u.l.n ? -1 : a->u.l.n > b->u.l.n;
    }
    if (a->t == JV_UNDEF || b->t == JV_UNDEF) {
        const jv *u = a->t == JV_UNDEF ? a : b;
        jx_fail(r, line, "'%.*s' is undefined", (int)u->u.s.n, u->u.s.s);
    }
    jx_fail(r, line, "'<' not supported between instances of '%s' and '%s'", jx_type_name(a), jx_type_name(b));
}

// ---- text ----------------------------------------------------------------------

void jx_buf_put(jrender *r, jbuf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = QT_MAX(2 * b->cap, b->n + n + 256);
        char *ns = jx_alloc(r, cap);
        if (b->n) memcpy(ns, b->s, b->n);
        b->s = ns;
        b->cap = cap;
    }
    if (n) memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
}

static void buf_puts(jrender *r, jbuf *b, const char *s) { jx_buf_put(r, b, s, strlen(s)); }

size_t jx_utf8_len(const char *s, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += ((unsigned char)s[i] & 0xc0) != 0x80;
    return k;
}

size_t jx_utf8_offset(const char *s, size_t n, size_t cp) {
    size_t i = 0;
    while (i < n && cp > 0) {
        i++;
        while (i < n && ((unsigned char)s[i] & 0xc0) == 0x80) i++;
        cp--;
    }
    return i;
}

// Python's float repr: the shortest digits that read back to f; fixed
// notation for exponents -4..15, else d.ddde+XX.
void jx_float_repr(char *buf, size_t cap, double f) {
    if (isnan(f)) { snprintf(buf, cap, "nan"); return; }
    if (isinf(f)) { snprintf(buf, cap, f < 0 ? "-inf" : "inf"); return; }
    char e[40];
    int prec;
    for (prec = 1; prec <= 17; prec++) {
        snprintf(e, sizeof(e), "%.*e", prec - 1, f);
        if (strtod(e, NULL) == f) break;
    }
    // e: [-]d[.ddd]e[+-]XX
    const char *q = e;
    bool neg = *q == '-';
    if (neg) q++;
    char digits[24];
    int nd = 0;
    for (; *q && *q != 'e'; q++)
        if (*q != '.') digits[nd++] = *q;
    int exp10 = atoi(q + 1);
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    digits[nd] = 0;
    int decpt = exp10 + 1;
    char *o = buf;
    size_t left = cap;
#define PUT(...) do { int k_ = snprintf(o, left, __VA_ARGS__); if (k_ < 0 || (size_t)k_ >= left) return; o += k_; left -= (size_t)k_; } while (0)
    if (neg) PUT("-");
    if (decpt > -4 && decpt <= 16) {
        if (decpt <= 0) {
            PUT("0.");
            for (int i = 0; i < -decpt; i++) PUT("0");
            PUT("%s", digits);
        } else if (decpt >= nd) {
            PUT("%s", digits);
            for (int i = nd; i < decpt; i++) PUT("0");
            PUT(".0");
        } else {
            PUT("%.*s.%s", decpt, digits, digits + decpt);
        }
    } else {
        PUT("%c", digits[0]);
        if (nd > 1) PUT(".%s", digits + 1);
        PUT("e%c%02d", exp10 < 0 ? '-' : '+', exp10 < 0 ? -exp10 : exp10);
    }
#undef PUT
}

static void repr_str(jrender *r, jbuf *b, jstr s) {
    bool has_sq = memchr(s.s, '\'', s.n) != NULL, has_dq = memchr(s.s, '"', s.n) != NULL;
    char q = has_sq && !has_dq ? '"' : '\'';
    jx_buf_put(r, b, &q, 1);
    for (size_t i = 0; i < s.n; i++) {
        unsigned char c = (unsigned char)s.s[i];
        char esc[8];
        if (c == (unsigned char)q || c == '\\') { esc[0] = '\\'; esc[1] = (char)c; jx_buf_put(r, b, esc, 2); }
        else if (c == '\n') jx_buf_put(r, b, "\\n", 2);
        else if (c == '\r') jx_buf_put(r, b, "\\r", 2);
        else if (c == '\t') jx_buf_put(r, b, "\\t", 2);
        else if (c < 0x20 || c == 0x7f) { snprintf(esc, sizeof(esc), "\\x%02x", c); jx_buf_put(r, b, esc, 4); }
        else if (c == 0xc2 && i + 1 < s.n && (unsigned char)s.s[i + 1] >= 0x80 && (unsigned char)s.s[i + 1] <= 0xa0) {
            // C1 controls and U+00A0 are not printable in Python's repr
            snprintf(esc, sizeof(esc), "\\x%02x", (unsigned char)s.s[i + 1]);
            jx_buf_put(r, b, esc, 4);
            i++;
        } else jx_buf_put(r, b, (const char *)&s.s[i], 1);
    }
    jx_buf_put(r, b, &q, 1);
}

static void repr_dict_items(jrender *r, jbuf *b, const jdict *d) {
    buf_puts(r, b, "{");
    for (int i = 0; i < d->n; i++) {
        if (i) buf_puts(r, b, ", ");
        jx_repr(r, b, d->k[i]);
        buf_puts(r, b, ": ");
        jx_repr(r, b, d->v[i]);
    }
    buf_puts(r, b, "}");
}

void jx_repr(jrender *r, jbuf *b, const jv *v) {
    switch (v->t) {
    case JV_STR: repr_str(r, b, v->u.s); return;
    case JV_UNDEF: buf_puts(r, b, "Undefined"); return;
    case JV_LIST:
        if (v->gen) { buf_puts(r, b, "<generator object>"); return; }
        buf_puts(r, b, v->tuple ? "(" : "[");
        for (int i = 0; i < v->u.l.n; i++) {
            if (i) buf_puts(r, b, ", ");
            jx_repr(r, b, v->u.l.a[i]);
        }
        if (v->tuple && v->u.l.n == 1) buf_puts(r, b, ",");
        buf_puts(r, b, v->tuple ? ")" : "]");
        return;
    case JV_DICT: repr_dict_items(r, b, v->u.d); return;
    case JV_NS:
        buf_puts(r, b, "<Namespace ");
        repr_dict_items(r, b, v->u.d);
        buf_puts(r, b, ">");
        return;
    default: {
        jstr s = jx_to_str(r, v);
        jx_buf_put(r, b, s.s, s.n);
    }
    }
}

jstr jx_to_str(jrender *r, const jv *v) {
    char tmp[64];
    switch (v->t) {
    case JV_STR: return v->u.s;
    case JV_UNDEF: return (jstr){ "", 0 };
    case JV_NONE: return (jstr){ "None", 4 };
    case JV_BOOL: return v->u.b ? (jstr){ "True", 4 } : (jstr){ "False", 5 };
    case JV_INT: snprintf(tmp, sizeof(tmp), "%lld", (long long)v->u.i); break;
    case JV_FLOAT: jx_float_repr(tmp, sizeof(tmp), v->u.f); break;
    case JV_FUNC: case JV_METHOD: snprintf(tmp, sizeof(tmp), "<built-in function>"); break;
    case JV_MACRO: snprintf(tmp, sizeof(tmp), "<Macro>"); break;
    case JV_LOOP: snprintf(tmp, sizeof(tmp), "<LoopContext %d/%d>", v->u.loop->index0 + 1, v->u.loop->length); break;
    default: {
        jbuf b = { 0 };
        jx_repr(r, &b, v);
        return (jstr){ b.s ? b.s : "", b.n };
    }
    }
    jv *s = jx_cstr(r, tmp);
    return s->u.s;
}

// ---- lookups ---------------------------------------------------------------------

jv *jx_iter_list(jrender *r, int line, jv *v) {
    switch (v->t) {
    case JV_LIST: return v;
    case JV_UNDEF: return jx_list(r, 0, false);
    case JV_DICT: {
        jv *l = jx_list(r, v->u.d->n, false);
        for (int i = 0; i < v->u.d->n; i++) l->u.l.a[i] = v->u.d->k[i];
        return l;
    }
    case JV_STR: {
        size_t n = jx_utf8_len(v->u.s.s, v->u.s.n);
        if (n > (size_t)INT32_MAX) jx_fail(r, line, "string too long");
        jv *l = jx_list(r, (int)n, false);
        size_t i = 0;
        for (size_t k = 0; k < n; k++) {
            size_t e = i + jx_utf8_offset(v->u.s.s + i, v->u.s.n - i, 1);
            l->u.l.a[k] = jx_str(r, v->u.s.s + i, e - i);
            i = e;
        }
        return l;
    }
    default:
        jx_fail(r, line, "'%s' object is not iterable", jx_type_name(v));
    }
}

static jv *loop_attr(jrender *r, jv *lv, const char *name, size_t n) {
    struct jloop *L = lv->u.loop;
#define IS(s) (n == sizeof(s) - 1 && memcmp(name, s, n) == 0)
    if (IS("index")) return jx_int(r, L->index0 + 1);
    if (IS("index0")) return jx_int(r, L->index0);
    if (IS("revindex")) return jx_int(r, L->length - L->index0);
    if (IS("revindex0")) return jx_int(r, L->length - L->index0 - 1);
    if (IS("first")) return jx_bool(L->index0 == 0);
    if (IS("last")) return jx_bool(L->index0 == L->length - 1);
    if (IS("length")) return jx_int(r, L->length);
    if (IS("depth")) return jx_int(r, 1);
    if (IS("depth0")) return jx_int(r, 0);
    if (IS("previtem")) return L->index0 > 0 ? L->items[L->index0 - 1] : jx_undef(r, "previtem", 8);
    if (IS("nextitem")) return L->index0 + 1 < L->length ? L->items[L->index0 + 1] : jx_undef(r, "nextitem", 8);
    if (IS("cycle") || IS("changed")) {
        jv *m = jx_new(r, JV_METHOD);
        m->u.m.self = lv;
        m->u.m.name = IS("cycle") ? "cycle" : "changed";
        return m;
    }
#undef IS
    return jx_undef(r, name, n);
}

jv *jx_getattr(jrender *r, int line, jv *obj, const char *name, size_t n) {
    switch (obj->t) {
    case JV_UNDEF:
        jx_fail(r, line, "'%.*s' is undefined", (int)obj->u.s.n, obj->u.s.s);
    case JV_LOOP:
        return loop_attr(r, obj, name, n);
    case JV_NS: {
        jv *v = jx_dict_get(obj->u.d, name, n);
        return v ? v : jx_undef(r, name, n);
    }
    case JV_DICT:
    case JV_STR:
    case JV_LIST:
        if (jx_has_method(obj, name, n)) {
            jv *m = jx_new(r, JV_METHOD);
            m->u.m.self = obj;
            char *c = jx_alloc(r, n + 1);
            memcpy(c, name, n);
            m->u.m.name = c;
            return m;
        }
        if (obj->t == JV_DICT) {
            jv *v = jx_dict_get(obj->u.d, name, n);
            if (v) return v;
        }
        return jx_undef(r, name, n);
    default:
        return jx_undef(r, name, n);
    }
}

static int64_t norm_index(int64_t i, int64_t n) { return i < 0 ? i + n : i; }

jv *jx_getitem(jrender *r, int line, jv *obj, jv *key) {
    switch (obj->t) {
    case JV_UNDEF:
        jx_fail(r, line, "'%.*s' is undefined", (int)obj->u.s.n, obj->u.s.s);
    case JV_DICT: {
        jv *v = jx_dict_find(obj->u.d, key);
        if (v) return v;
        break;
    }
    case JV_LIST:
        if (obj->gen) jx_fail(r, line, "'generator' object is not subscriptable");
        if (is_intlike(key)) {
            int64_t i = norm_index(int_of(key), obj->u.l.n);
            if (i >= 0 && i < obj->u.l.n) return obj->u.l.a[i];
            return jx_undef(r, "item", 4);
        }
        break;
    case JV_STR:
        if (is_intlike(key)) {
            int64_t n = (int64_t)jx_utf8_len(obj->u.s.s, obj->u.s.n);
            int64_t i = norm_index(int_of(key), n);
            if (i < 0 || i >= n) return jx_undef(r, "item", 4);
            size_t a = jx_utf8_offset(obj->u.s.s, obj->u.s.n, (size_t)i);
            size_t b = a + jx_utf8_offset(obj->u.s.s + a, obj->u.s.n - a, 1);
            return jx_str(r, obj->u.s.s + a, b - a);
        }
        break;
    default:
        break;
    }
    if (key->t == JV_STR) return jx_getattr(r, line, obj, key->u.s.s, key->u.s.n);
    return jx_undef(r, "item", 4);
}

// Python's slice.indices
static void slice_indices(jrender *r, int line, jv *start, jv *stop, jv *step, int64_t n, int64_t *a, int64_t *b,
                          int64_t *st) {
    *st = 1;
    if (step && step->t != JV_NONE) {
        if (!is_intlike(step)) jx_fail(r, line, "slice indices must be integers or None");
        *st = int_of(step);
        if (*st == 0) jx_fail(r, line, "slice step cannot be zero");
    }
    int64_t lo = *st < 0 ? -1 : 0, hi = *st < 0 ? n - 1 : n;
    int64_t *outs[2] = { a, b };
    jv *ins[2] = { start, stop };
    for (int k = 0; k < 2; k++) {
        jv *v = ins[k];
        if (!v || v->t == JV_NONE) {
            *outs[k] = k == 0 ? (*st < 0 ? hi : lo) : (*st < 0 ? lo : hi);
            continue;
        }
        if (!is_intlike(v)) jx_fail(r, line, "slice indices must be integers or None");
        int64_t i = int_of(v);
        if (i < 0) {
            i += n;
            if (i < lo) i = lo;
        } else if (i > hi) {
            i = hi;
        }
        *outs[k] = i;
    }
}

static jv *do_slice(jrender *r, int line, jv *obj, jv *start, jv *stop, jv *step) {
    if (obj->t == JV_UNDEF) jx_fail(r, line, "'%.*s' is undefined", (int)obj->u.s.n, obj->u.s.s);
    bool is_str = obj->t == JV_STR;
    jv *src = is_str ? jx_iter_list(r, line, obj) : obj;
    if (src->t != JV_LIST) return jx_undef(r, "slice", 5);
    int64_t a, b, st, n = src->u.l.n;
    slice_indices(r, line, start, stop, step, n, &a, &b, &st);
    int64_t cnt = 0;
    if (st > 0 && b > a) cnt = (b - a + st - 1) / st;
    if (st < 0 && a > b) cnt = (a - b + (-st) - 1) / (-st);
    if (is_str) {
        jbuf o = { 0 };
        jx_buf_put(r, &o, "", 0);
        for (int64_t k = 0, i = a; k < cnt; k++, i += st) jx_buf_put(r, &o, src->u.l.a[i]->u.s.s, src->u.l.a[i]->u.s.n);
        jv *v = jx_new(r, JV_STR);
        v->u.s = (jstr){ o.s, o.n };
        return v;
    }
    jv *l = jx_list(r, (int)cnt, obj->tuple);
    for (int64_t k = 0, i = a; k < cnt; k++, i += st) l->u.l.a[k] = src->u.l.a[i];
    return l;
}

// ---- arithmetic --------------------------------------------------------------------

static _Noreturn void type_error(jrender *r, int line, const char *op, const jv *a, const jv *b) {
    if (a->t == JV_UNDEF) jx_fail(r, line, "'%.*s' is undefined", (int)a->u.s.n, a->u.s.s);
    if (b->t == JV_UNDEF) jx_fail(r, line, "'%.*s' is undefined", (int)b->u.s.n, b->u.s.s);
    jx_fail(r, line, "unsupported operand type(s) for %s: '%s' and '%s'", op, jx_type_name(a), jx_type_name(b));
}

static jv *repeat(jrender *r, int line, jv *seq, int64_t k) {
    if (k < 0) k = 0;
    if (seq->t == JV_STR) {
        if (seq->u.s.n && (uint64_t)k > r->mem.max / seq->u.s.n) jx_fail(r, line, "string repetition too large");
        jbuf o = { 0 };
        jx_buf_put(r, &o, "", 0);
        for (int64_t i = 0; i < k; i++) jx_buf_put(r, &o, seq->u.s.s, seq->u.s.n);
        jv *v = jx_new(r, JV_STR);
        v->u.s = (jstr){ o.s, o.n };
        return v;
    }
    if (seq->u.l.n && (uint64_t)k > (uint64_t)(INT32_MAX / seq->u.l.n)) jx_fail(r, line, "list repetition too large");
    jv *l = jx_list(r, (int)(k * seq->u.l.n), seq->tuple);
    for (int64_t i = 0; i < k; i++)
        for (int j = 0; j < seq->u.l.n; j++) l->u.l.a[i * seq->u.l.n + j] = seq->u.l.a[j];
    return l;
}

static double py_fmod(double a, double b) {
    double m = fmod(a, b);
    if (m != 0 && ((m < 0) != (b < 0))) m += b;
    return m;
}

static jv *arith(jrender *r, int line, jop op, jv *a, jv *b) {
    static const char *const names[] = { "+", "-", "*", "/", "//", "%", "**" };
    if (op == OP_ADD && a->t == JV_STR && b->t == JV_STR && a->safe != b->safe) {
        // Markup + str (either order) escapes the plain side and stays Markup
        jv *x = a->safe ? a : jx_escape_html(r, a->u.s), *y = b->safe ? b : jx_escape_html(r, b->u.s);
        x = arith(r, line, op, jx_str(r, x->u.s.s, x->u.s.n), jx_str(r, y->u.s.s, y->u.s.n));
        x->safe = true;
        return x;
    }
    if (op == OP_ADD && a->t == JV_STR && b->t == JV_STR) {
        jv *v = jx_new(r, JV_STR);
        v->safe = a->safe && b->safe;
        char *c = jx_alloc(r, a->u.s.n + b->u.s.n + 1);
        memcpy(c, a->u.s.s, a->u.s.n);
        memcpy(c + a->u.s.n, b->u.s.s, b->u.s.n);
        v->u.s = (jstr){ c, a->u.s.n + b->u.s.n };
        return v;
    }
    if (op == OP_ADD && a->t == JV_LIST && b->t == JV_LIST && a->tuple == b->tuple) {
        jv *l = jx_list(r, a->u.l.n + b->u.l.n, a->tuple);
        if (a->u.l.n) memcpy(l->u.l.a, a->u.l.a, sizeof(jv *) * (size_t)a->u.l.n);
        if (b->u.l.n) memcpy(l->u.l.a + a->u.l.n, b->u.l.a, sizeof(jv *) * (size_t)b->u.l.n);
        return l;
    }
    if (op == OP_MOD && a->t == JV_STR) return jx_percent_format(r, line, a->u.s, b);
    if (op == OP_MUL && (a->t == JV_STR || a->t == JV_LIST) && is_intlike(b)) return repeat(r, line, a, int_of(b));
    if (op == OP_MUL && (b->t == JV_STR || b->t == JV_LIST) && is_intlike(a)) return repeat(r, line, b, int_of(a));
    if (!is_num(a) || !is_num(b)) type_error(r, line, op <= OP_POW ? names[op] : "?", a, b);
    if (is_intlike(a) && is_intlike(b) && op != OP_DIV) {
        int64_t x = int_of(a), y = int_of(b), z = 0;
        bool ovf = false;
        switch (op) {
        case OP_ADD: ovf = __builtin_add_overflow(x, y, &z); break;
        case OP_SUB: ovf = __builtin_sub_overflow(x, y, &z); break;
        case OP_MUL: ovf = __builtin_mul_overflow(x, y, &z); break;
        case OP_FLOORDIV:
        case OP_MOD:
            if (y == 0) jx_fail(r, line, "integer division or modulo by zero");
            if (x == INT64_MIN && y == -1) { ovf = true; break; }
            z = op == OP_FLOORDIV ? x / y - ((x % y != 0) && ((x < 0) != (y < 0))) : x % y;
            if (op == OP_MOD && z != 0 && ((z < 0) != (y < 0))) z += y;
            break;
        case OP_POW:
            if (y < 0) return jx_float(r, pow((double)x, (double)y));
            z = 1;
            for (int64_t i = 0; i < y && !ovf; i++) {
                ovf = __builtin_mul_overflow(z, x, &z);
                if (z == 0 || z == 1) break;
            }
            if (!ovf && z == 1 && x == -1 && (y & 1)) z = -1;
            break;
        default: break;
        }
        if (ovf) jx_fail(r, line, "integer overflow in %s", names[op]);
        return jx_int(r, z);
    }
    double x = num_f(a), y = num_f(b);
    switch (op) {
    case OP_ADD: return jx_float(r, x + y);
    case OP_SUB: return jx_float(r, x - y);
    case OP_MUL: return jx_float(r, x * y);
    case OP_DIV:
        if (y == 0) jx_fail(r, line, "division by zero");
        return jx_float(r, x / y);
    case OP_FLOORDIV:
        if (y == 0) jx_fail(r, line, "float floor division by zero");
        return jx_float(r, floor(x / y));
    case OP_MOD:
        if (y == 0) jx_fail(r, line, "float modulo");
        return jx_float(r, py_fmod(x, y));
    case OP_POW: return jx_float(r, pow(x, y));
    default: break;
    }
    type_error(r, line, op <= OP_POW ? names[op] : "?", a, b);
}

static bool contains(jrender *r, int line, jv *item, jv *container) {
    switch (container->t) {
    case JV_STR:
        if (item->t != JV_STR) jx_fail(r, line, "'in <string>' requires string as left operand, not %s", jx_type_name(item));
        if (item->u.s.n == 0) return true;
        return memmem(container->u.s.s, container->u.s.n, item->u.s.s, item->u.s.n) != NULL;
    case JV_LIST:
        for (int i = 0; i < container->u.l.n; i++)
            if (jx_equal(container->u.l.a[i], item)) return true;
        return false;
    case JV_DICT: return jx_dict_find(container->u.d, item) != NULL;
    case JV_UNDEF: return false;
    default: jx_fail(r, line, "argument of type '%s' is not iterable", jx_type_name(container));
    }
}

// ---- evaluation ---------------------------------------------------------------------

static jv *lookup(jrender *r, jframe *f, jstr name) {
    for (; f; f = f->parent) {
        jv *v = jx_dict_get(&f->vars, name.s, name.n);
        if (v) return v;
    }
    int fn = jx_func_find(name.s, name.n);
    if (fn >= 0) {
        jv *v = jx_new(r, JV_FUNC);
        v->u.fn = fn;
        return v;
    }
    return jx_undef(r, name.s, name.n);
}

static void frame_set(jrender *r, jframe *f, jstr name, jv *v) {
    jx_dict_set(r, &f->vars, jx_str(r, name.s, name.n), v);
}

static jv *eval(jrender *r, jframe *f, const jnode *x);

// Evaluates the call arguments of x from kid `first` on into a.
static void eval_args(jrender *r, jframe *f, const jnode *x, int first, jargs *a) {
    int n = x->n_kids - first;
    a->args = n ? jx_alloc(r, sizeof(jv *) * (size_t)n) : NULL;
    a->kwv = n ? jx_alloc(r, sizeof(jv *) * (size_t)n) : NULL;
    a->kw = n ? jx_alloc(r, sizeof(jstr) * (size_t)n) : NULL;
    a->n_args = a->n_kw = 0;
    for (int i = first; i < x->n_kids; i++) {
        jv *v = eval(r, f, x->kids[i]);
        if (x->names && x->names[i].n) {
            a->kw[a->n_kw] = x->names[i];
            a->kwv[a->n_kw++] = v;
        } else {
            if (a->n_kw) jx_fail(r, x->line, "positional argument follows keyword argument");
            a->args[a->n_args++] = v;
        }
    }
}

static jv *call_value(jrender *r, int line, jv *fn, const jargs *a) {
    switch (fn->t) {
    case JV_FUNC: return jx_func_call(r, line, fn->u.fn, a);
    case JV_METHOD: return jx_method_call(r, line, fn->u.m.self, fn->u.m.name, a);
    case JV_MACRO: return jx_call_macro(r, line, fn, a->args, a->n_args, a->kw, a->kwv, a->n_kw);
    case JV_UNDEF: jx_fail(r, line, "'%.*s' is undefined", (int)fn->u.s.n, fn->u.s.s);
    default: jx_fail(r, line, "'%s' object is not callable", jx_type_name(fn));
    }
}

static jv *eval_inner(jrender *r, jframe *f, const jnode *x) {
    switch ((jnode_kind)x->kind) {
    case JN_LIT:
        return x->lit ? x->lit : r->placeholder;
    case JN_NAME:
        return lookup(r, f, x->name);
    case JN_ATTR:
        return jx_getattr(r, x->line, eval(r, f, x->kids[0]), x->name.s, x->name.n);
    case JN_ITEM: {
        jv *o = eval(r, f, x->kids[0]);
        return jx_getitem(r, x->line, o, eval(r, f, x->kids[1]));
    }
    case JN_SLICE: {
        jv *o = eval(r, f, x->kids[0]);
        jv *a = x->kids[1] ? eval(r, f, x->kids[1]) : NULL;
        jv *b = x->kids[2] ? eval(r, f, x->kids[2]) : NULL;
        jv *c = x->kids[3] ? eval(r, f, x->kids[3]) : NULL;
        return do_slice(r, x->line, o, a, b, c);
    }
    case JN_CALL: {
        jv *fn = eval(r, f, x->kids[0]);
        jargs a;
        eval_args(r, f, x, 1, &a);
        return call_value(r, x->line, fn, &a);
    }
    case JN_FILTER: {
        jv *v = eval(r, f, x->kids[0]);
        jargs a;
        eval_args(r, f, x, 1, &a);
        return jx_filter_call(r, x->line, x->builtin, v, &a);
    }
    case JN_TEST: {
        jv *v = eval(r, f, x->kids[0]);
        jargs a;
        eval_args(r, f, x, 1, &a);
        bool t = jx_test_call(r, x->line, x->builtin, v, &a);
        return jx_bool(x->op ? !t : t);
    }
    case JN_BIN: {
        jv *a = eval(r, f, x->kids[0]), *b = eval(r, f, x->kids[1]);
        if (x->op == OP_CONCAT) {
            jstr sa = jx_to_str(r, a), sb = jx_to_str(r, b);
            jv *v = jx_new(r, JV_STR);
            char *c = jx_alloc(r, sa.n + sb.n + 1);
            memcpy(c, sa.s, sa.n);
            memcpy(c + sa.n, sb.s, sb.n);
            v->u.s = (jstr){ c, sa.n + sb.n };
            return v;
        }
        return arith(r, x->line, (jop)x->op, a, b);
    }
    case JN_NEG:
    case JN_POS: {
        jv *v = eval(r, f, x->kids[0]);
        if (v->t == JV_FLOAT) return jx_float(r, x->kind == JN_NEG ? -v->u.f : v->u.f);
        if (is_intlike(v)) {
            int64_t i = int_of(v);
            if (x->kind == JN_NEG && i == INT64_MIN) jx_fail(r, x->line, "integer overflow in -");
            return jx_int(r, x->kind == JN_NEG ? -i : i);
        }
        if (v->t == JV_UNDEF) jx_fail(r, x->line, "'%.*s' is undefined", (int)v->u.s.n, v->u.s.s);
        jx_fail(r, x->line, "bad operand type for unary %c: '%s'", x->kind == JN_NEG ? '-' : '+', jx_type_name(v));
    }
    case JN_NOT:
        return jx_bool(!jx_truthy(eval(r, f, x->kids[0])));
    case JN_AND: {
        jv *a = eval(r, f, x->kids[0]);
        return jx_truthy(a) ? eval(r, f, x->kids[1]) : a;
    }
    case JN_OR: {
        jv *a = eval(r, f, x->kids[0]);
        return jx_truthy(a) ? a : eval(r, f, x->kids[1]);
    }
    case JN_COND:
        if (jx_truthy(eval(r, f, x->kids[0]))) return eval(r, f, x->kids[1]);
        return x->kids[2] ? eval(r, f, x->kids[2]) : jx_undef(r, "else", 4);
    case JN_LIST:
    case JN_TUPLE: {
        jv *l = jx_list(r, x->n_kids, x->kind == JN_TUPLE);
        for (int i = 0; i < x->n_kids; i++) l->u.l.a[i] = eval(r, f, x->kids[i]);
        return l;
    }
    case JN_DICT: {
        jv *d = jx_dict(r);
        for (int i = 0; i + 1 < x->n_kids; i += 2) {
            jv *k = eval(r, f, x->kids[i]);
            jx_dict_set(r, d->u.d, k, eval(r, f, x->kids[i + 1]));
        }
        return d;
    }
    case JN_CMP: {
        jv *a = eval(r, f, x->kids[0]);
        for (int i = 1; i < x->n_kids; i++) {
            jv *b = eval(r, f, x->kids[i]);
            bool t;
            switch (x->cmp_ops[i - 1]) {
            case OP_EQ: t = jx_equal(a, b); break;
            case OP_NE: t = !jx_equal(a, b); break;
            case OP_LT: t = jx_compare(r, x->line, a, b) < 0; break;
            case OP_LE: t = jx_compare(r, x->line, a, b) <= 0; break;
            case OP_GT: t = jx_compare(r, x->line, a, b) > 0; break;
            case OP_GE: t = jx_compare(r, x->line, a, b) >= 0; break;
            case OP_IN: t = contains(r, x->line, a, b); break;
            case OP_NOTIN: t = !contains(r, x->line, a, b); break;
            default: t = false;
            }
            if (!t) return jx_bool(false);
            a = b;
        }
        return jx_bool(true);
    }
    default:
        jx_fail(r, x->line, "internal: node %d is not an expression", x->kind);
    }
}

static jv *eval(jrender *r, jframe *f, const jnode *x) {
    if (++r->depth > MAX_DEPTH) jx_fail(r, x->line, "the template nests too deeply (more than %d levels)", MAX_DEPTH);
    jv *v = eval_inner(r, f, x);
    r->depth--;
    return v;
}

// ---- statements -----------------------------------------------------------------------

enum { EX_OK, EX_BREAK, EX_CONTINUE };

static int exec(jrender *r, jframe *f, const jnode *x);

static void out(jrender *r, const char *s, size_t n) {
    if (r->out->n + n > r->max_output) jx_fail(r, 0, "the output is larger than %zu bytes", r->max_output);
    jx_buf_put(r, r->out, s, n);
}

static jframe *frame_new(jrender *r, jframe *parent) {
    jframe *f = jx_alloc(r, sizeof(jframe));
    f->parent = parent;
    return f;
}

static void unpack(jrender *r, int line, jframe *f, const jnode *x, jv *v) {
    if (x->n_names == 1) {
        frame_set(r, f, x->names[0], v);
        return;
    }
    jv *l = jx_iter_list(r, line, v);
    if (l->u.l.n != x->n_names)
        jx_fail(r, line, l->u.l.n > x->n_names ? "too many values to unpack (expected %d)" : "not enough values to unpack (expected %d)",
                x->n_names);
    for (int i = 0; i < x->n_names; i++) frame_set(r, f, x->names[i], l->u.l.a[i]);
}

// Renders body into a fresh buffer in a child frame; returns the text.
static jv *capture(jrender *r, jframe *f, const jnode *body) {
    jbuf b = { 0 }, *saved = r->out;
    jx_buf_put(r, &b, "", 0);
    r->out = &b;
    exec(r, frame_new(r, f), body);
    r->out = saved;
    jv *v = jx_new(r, JV_STR);
    v->u.s = (jstr){ b.s, b.n };
    return v;
}

static jv *apply_chain(jrender *r, jframe *f, const jnode *chain, jv *v) {
    jv *saved = r->placeholder;
    r->placeholder = v;
    jv *res = eval(r, f, chain);
    r->placeholder = saved;
    return res;
}

static int exec_for(jrender *r, jframe *f, const jnode *x) {
    jv *seq = jx_iter_list(r, x->line, eval(r, f, x->kids[0]));
    jv **items = seq->u.l.a;
    int n = seq->u.l.n;
    if (x->kids[2]) {   // for ... if cond: filter first (loop.* counts the kept items)
        jv **kept = n ? jx_alloc(r, sizeof(jv *) * (size_t)n) : NULL;
        int k = 0;
        for (int i = 0; i < n; i++) {
            jframe *it = frame_new(r, f);
            unpack(r, x->line, it, x, items[i]);
            if (jx_truthy(eval(r, it, x->kids[2]))) kept[k++] = items[i];
        }
        items = kept;
        n = k;
    }
    struct jloop *L = jx_alloc(r, sizeof(struct jloop));
    L->length = n;
    L->items = items;
    jv *lv = jx_new(r, JV_LOOP);
    lv->u.loop = L;
    for (int i = 0; i < n; i++) {
        L->index0 = i;
        jframe *it = frame_new(r, f);
        unpack(r, x->line, it, x, items[i]);
        frame_set(r, it, (jstr){ "loop", 4 }, lv);
        int rc = exec(r, it, x->kids[1]);
        if (rc == EX_BREAK) break;
    }
    if (n == 0 && x->kids[3]) return exec(r, frame_new(r, f), x->kids[3]);
    return EX_OK;
}

static int exec_inner(jrender *r, jframe *f, const jnode *x) {
    switch ((jnode_kind)x->kind) {
    case JN_BODY:
        for (int i = 0; i < x->n_kids; i++) {
            int rc = exec(r, f, x->kids[i]);
            if (rc != EX_OK) return rc;
        }
        return EX_OK;
    case JN_TEXT:
        out(r, x->lit->u.s.s, x->lit->u.s.n);
        return EX_OK;
    case JN_OUT: {
        jstr s = jx_to_str(r, eval(r, f, x->kids[0]));
        out(r, s.s, s.n);
        return EX_OK;
    }
    case JN_IF:
        for (int i = 0; i + 1 < x->n_kids; i += 2)
            if (jx_truthy(eval(r, f, x->kids[i]))) return exec(r, f, x->kids[i + 1]);
        if (x->n_kids % 2) return exec(r, f, x->kids[x->n_kids - 1]);
        return EX_OK;
    case JN_FOR:
        return exec_for(r, f, x);
    case JN_SET: {
        jv *v = eval(r, f, x->kids[0]);
        if (x->op == 1) {   // ns.attr = v
            jv *ns = lookup(r, f, x->name);
            if (ns->t != JV_NS) jx_fail(r, x->line, "cannot assign attribute on non-namespace object");
            jx_dict_set(r, ns->u.d, jx_str(r, x->names[0].s, x->names[0].n), v);
        } else {
            unpack(r, x->line, f, x, v);
        }
        return EX_OK;
    }
    case JN_SETBLOCK: {
        jv *v = capture(r, f, x->kids[0]);
        if (x->kids[1]) v = apply_chain(r, f, x->kids[1], v);
        frame_set(r, f, x->names[0], v);
        return EX_OK;
    }
    case JN_FILTERBLOCK: {
        jv *v = apply_chain(r, f, x->kids[1], capture(r, f, x->kids[0]));
        jstr s = jx_to_str(r, v);
        out(r, s.s, s.n);
        return EX_OK;
    }
    case JN_MACRO: {
        jv *m = jx_new(r, JV_MACRO);
        m->u.mac.node = x;
        m->u.mac.frame = f;
        frame_set(r, f, x->name, m);
        return EX_OK;
    }
    case JN_WITH: {
        jframe *w = frame_new(r, f);
        jv **vals = jx_alloc(r, sizeof(jv *) * (size_t)(x->n_kids));
        for (int i = 0; i + 1 < x->n_kids; i++) vals[i] = eval(r, f, x->kids[i]);
        for (int i = 0; i + 1 < x->n_kids; i++) frame_set(r, w, x->names[i], vals[i]);
        return exec(r, w, x->kids[x->n_kids - 1]);
    }
    case JN_BREAK: return EX_BREAK;
    case JN_CONTINUE: return EX_CONTINUE;
    default:
        jx_fail(r, x->line, "internal: node %d is not a statement", x->kind);
    }
}

static int exec(jrender *r, jframe *f, const jnode *x) {
    if (++r->depth > MAX_DEPTH) jx_fail(r, x->line, "the template nests too deeply (more than %d levels)", MAX_DEPTH);
    int rc = exec_inner(r, f, x);
    r->depth--;
    return rc;
}

jv *jx_call_macro(jrender *r, int line, jv *mac, jv **args, int n_args, jstr *kw, jv **kwv, int n_kw) {
    const jnode *m = mac->u.mac.node;
    int n_params = m->n_kids - 1;   // kids[0] is the body; names[i] / kids[i] for i >= 1 the parameters
    if (n_args > n_params)
        jx_fail(r, line, "macro '%.*s' takes not more than %d argument(s)", (int)m->name.n, m->name.s, n_params);
    if (++r->macro_depth > MAX_MACRO_DEPTH) jx_fail(r, line, "macros call each other more than %d deep", MAX_MACRO_DEPTH);
    jframe *f = frame_new(r, mac->u.mac.frame);
    for (int k = 0; k < n_kw; k++) {
        bool found = false;
        for (int i = 1; i <= n_params; i++)
            if (m->names[i].n == kw[k].n && memcmp(m->names[i].s, kw[k].s, kw[k].n) == 0) found = true;
        if (!found) jx_fail(r, line, "macro '%.*s' has no parameter named '%.*s'", (int)m->name.n, m->name.s, (int)kw[k].n, kw[k].s);
    }
    for (int i = 1; i <= n_params; i++) {
        jv *v = NULL;
        if (i - 1 < n_args) v = args[i - 1];
        for (int k = 0; k < n_kw && !v; k++)
            if (m->names[i].n == kw[k].n && memcmp(m->names[i].s, kw[k].s, kw[k].n) == 0) v = kwv[k];
        if (!v) v = m->kids[i] ? eval(r, f, m->kids[i]) : jx_undef(r, m->names[i].s, m->names[i].n);
        frame_set(r, f, m->names[i], v);
    }
    jbuf b = { 0 }, *saved = r->out;
    jx_buf_put(r, &b, "", 0);
    r->out = &b;
    exec(r, f, m->kids[0]);
    r->out = saved;
    r->macro_depth--;
    jv *v = jx_new(r, JV_STR);
    v->u.s = (jstr){ b.s, b.n };
    return v;
}

// ---- entry ---------------------------------------------------------------------------

static jv *from_json(jrender *r, const cJSON *j, int depth) {
    if (depth > 200) jx_fail(r, 0, "the variables nest more than 200 levels deep");
    if (cJSON_IsNull(j) || !j) return jx_none();
    if (cJSON_IsBool(j)) return jx_bool(cJSON_IsTrue(j));
    if (cJSON_IsNumber(j)) {
        double d = j->valuedouble;
        if (isfinite(d) && d == floor(d) && fabs(d) < 9.2e18) return jx_int(r, (int64_t)d);
        return jx_float(r, d);
    }
    if (cJSON_IsString(j)) return jx_cstr(r, j->valuestring ? j->valuestring : "");
    if (cJSON_IsArray(j)) {
        int n = cJSON_GetArraySize(j), i = 0;
        jv *l = jx_list(r, n, false);
        const cJSON *e;
        cJSON_ArrayForEach(e, j) l->u.l.a[i++] = from_json(r, e, depth + 1);
        return l;
    }
    if (cJSON_IsObject(j)) {
        jv *d = jx_dict(r);
        const cJSON *e;
        cJSON_ArrayForEach(e, j) jx_dict_set(r, d->u.d, jx_cstr(r, e->string ? e->string : ""), from_json(r, e, depth + 1));
        return d;
    }
    return jx_none();
}

char *qt_jinja_render(const qt_jinja *t, const cJSON *vars, const qt_jinja_opts *o, size_t *len, char *err,
                      size_t err_cap) {
    static const qt_jinja_opts defaults = { 0 };
    if (!o) o = &defaults;
    if (err_cap) err[0] = 0;
    jrender *r = qt_calloc(1, sizeof(jrender));   // on the heap: its fields change between setjmp and longjmp
    r->err = err;
    r->err_cap = err_cap;
    r->mem.max = o->max_memory ? o->max_memory : (size_t)256 << 20;
    r->max_output = o->max_output ? o->max_output : (size_t)16 << 20;
    r->now = o->now ? o->now : (int64_t)time(NULL);
    char *result = NULL;
    if (setjmp(r->fail) == 0) {
        jframe *root = frame_new(r, NULL);
        if (vars) {
            const cJSON *e;
            cJSON_ArrayForEach(e, vars)
                if (e->string) frame_set(r, root, (jstr){ e->string, strlen(e->string) }, from_json(r, e, 0));
        }
        jbuf b = { 0 };
        jx_buf_put(r, &b, "", 0);
        r->out = &b;
        exec(r, root, t->root);
        result = qt_malloc(b.n + 1);
        memcpy(result, b.s, b.n + 1);
        if (len) *len = b.n;
    }
    ja_free(&r->mem);
    qt_free(r);
    return result;
}
