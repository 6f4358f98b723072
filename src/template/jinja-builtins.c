// jinja-builtins.c: the filters, tests and global functions of the Jinja
// engine (jinja.h) and the Python methods templates call on str, dict and
// list values. Behaviour as jinja2 3.1's filters.py / tests.py / defaults.py
// and CPython's str methods; tojson is transformers' (json.dumps with
// ensure_ascii=False, indent, separators, sort_keys), range is the sandbox's
// (at most 100000 items), raise_exception and strftime_now are the globals
// transformers adds. Not here: filters no chat template uses (batch, groupby,
// slice, truncate, urlize, xmlattr, ...); they are parse errors.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <utf8proc.h>

#include "base/base.h"
#include "template/jinja-impl.h"

#define MAX_RANGE 100000   // jinja2.sandbox.MAX_RANGE

// ---- argument access --------------------------------------------------------------

// Positional argument pos, else the keyword name, else NULL.
static jv *arg(const jargs *a, int pos, const char *name) {
    if (pos >= 0 && pos < a->n_args) return a->args[pos];
    size_t n = strlen(name);
    for (int i = 0; i < a->n_kw; i++)
        if (a->kw[i].n == n && memcmp(a->kw[i].s, name, n) == 0) return a->kwv[i];
    return NULL;
}

static void check_args(jrender *r, int line, const char *what, const jargs *a, int max_pos, const char *const *kw) {
    if (a->n_args > max_pos) jx_fail(r, line, "%s takes at most %d positional argument(s)", what, max_pos);
    for (int i = 0; i < a->n_kw; i++) {
        bool ok = false;
        for (int k = 0; kw && kw[k]; k++)
            if (a->kw[i].n == strlen(kw[k]) && memcmp(a->kw[i].s, kw[k], a->kw[i].n) == 0) ok = true;
        if (!ok) jx_fail(r, line, "%s got an unexpected keyword argument '%.*s'", what, (int)a->kw[i].n, a->kw[i].s);
    }
}

static bool is_intlike(const jv *v) { return v->t == JV_INT || v->t == JV_BOOL; }
static int64_t int_of(const jv *v) { return v->t == JV_INT ? v->u.i : (int64_t)v->u.b; }

static int64_t want_int(jrender *r, int line, const jv *v, const char *what) {
    if (!is_intlike(v)) jx_fail(r, line, "%s must be an integer, not %s", what, jx_type_name(v));
    return int_of(v);
}

static jstr want_str(jrender *r, int line, const jv *v, const char *what) {
    if (v->t != JV_STR) jx_fail(r, line, "%s must be a string, not %s", what, jx_type_name(v));
    return v->u.s;
}

static jv *str_val(jrender *r, jbuf *b) {
    jv *v = jx_new(r, JV_STR);
    v->u.s = b->s ? (jstr){ b->s, b->n } : (jstr){ "", 0 };
    return v;
}

static jv *undef_fail_or_list(jrender *r, int line, jv *v) {
    if (v->t == JV_UNDEF) return jx_list(r, 0, false);
    return jx_iter_list(r, line, v);
}

// ---- UTF-8 and Python string helpers ------------------------------------------------

static size_t cp_at(const char *s, size_t n, int32_t *cp) {
    utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, cp);
    if (k <= 0) { *cp = (unsigned char)s[0]; return 1; }
    return (size_t)k;
}

static void put_cp(jrender *r, jbuf *b, int32_t cp) {
    utf8proc_uint8_t o[4];
    utf8proc_ssize_t k = utf8proc_encode_char(cp, o);
    jx_buf_put(r, b, (const char *)o, (size_t)k);
}

static bool cp_cased(int32_t c) {
    utf8proc_category_t cat = utf8proc_category(c);
    return cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LL || cat == UTF8PROC_CATEGORY_LT;
}

enum { CASE_UPPER, CASE_LOWER, CASE_TITLE, CASE_CAPITALIZE };

static jv *change_case(jrender *r, jstr s, int mode) {
    jbuf b = { 0 };
    jx_buf_put(r, &b, "", 0);
    bool prev_cased = false, first = true;
    for (size_t i = 0; i < s.n;) {
        int32_t c;
        i += cp_at(s.s + i, s.n - i, &c);
        int32_t o = c;
        switch (mode) {
        case CASE_UPPER: o = utf8proc_toupper(c); break;
        case CASE_LOWER: o = utf8proc_tolower(c); break;
        case CASE_TITLE: o = prev_cased ? utf8proc_tolower(c) : utf8proc_totitle(c); break;
        case CASE_CAPITALIZE: o = first ? utf8proc_totitle(c) : utf8proc_tolower(c); break;
        }
        prev_cased = cp_cased(c);
        first = false;
        put_cp(r, &b, o);
    }
    return str_val(r, &b);
}

static bool in_chars(int32_t c, jstr chars) {
    for (size_t i = 0; i < chars.n;) {
        int32_t d;
        i += cp_at(chars.s + i, chars.n - i, &d);
        if (c == d) return true;
    }
    return false;
}

// Python's strip / lstrip / rstrip: chars NULL strips Unicode whitespace.
static jv *strip(jrender *r, jstr s, const jstr *chars, bool left, bool right) {
    size_t a = 0, b = s.n;
    if (left) {
        while (a < b) {
            int32_t c;
            size_t k = chars ? cp_at(s.s + a, b - a, &c) : jx_space_len(s.s + a, b - a);
            if (!k || (chars && !in_chars(c, *chars))) break;
            a += k;
        }
    }
    if (right) {
        if (!chars) {
            b = a + jx_rstrip_len(s.s + a, b - a);
        } else {
            size_t keep = a;
            for (size_t i = a; i < b;) {
                int32_t c;
                i += cp_at(s.s + i, b - i, &c);
                if (!in_chars(c, *chars)) keep = i;
            }
            b = keep;
        }
    }
    return jx_str(r, s.s + a, b - a);
}

// str.splitlines(): \n \r \r\n \v \f \x1c \x1d \x1e \x85 \u2028 \u2029
static size_t line_break_at(const char *s, size_t n) {
    unsigned char c = (unsigned char)s[0];
    if (c == '\r') return n > 1 && s[1] == '\n' ? 2 : 1;
    if (c == '\n' || c == '\v' || c == '\f' || c == 0x1c || c == 0x1d || c == 0x1e) return 1;
    if (c == 0xc2 && n > 1 && (unsigned char)s[1] == 0x85) return 2;
    if (c == 0xe2 && n > 2 && (unsigned char)s[1] == 0x80 && ((unsigned char)s[2] == 0xa8 || (unsigned char)s[2] == 0xa9)) return 3;
    return 0;
}

static jv *splitlines(jrender *r, jstr s, bool keepends) {
    int cap = 8, n = 0;
    jv **items = jx_alloc(r, sizeof(jv *) * (size_t)cap);
    size_t start = 0;
    for (size_t i = 0; i < s.n;) {
        size_t k = line_break_at(s.s + i, s.n - i);
        if (!k) { i++; continue; }
        if (n == cap) {
            jv **ni = jx_alloc(r, sizeof(jv *) * (size_t)(cap *= 2));
            memcpy(ni, items, sizeof(jv *) * (size_t)n);
            items = ni;
        }
        items[n++] = jx_str(r, s.s + start, (keepends ? i + k : i) - start);
        i += k;
        start = i;
    }
    if (start < s.n) {
        if (n == cap) {
            jv **ni = jx_alloc(r, sizeof(jv *) * (size_t)(cap *= 2));
            memcpy(ni, items, sizeof(jv *) * (size_t)n);
            items = ni;
        }
        items[n++] = jx_str(r, s.s + start, s.n - start);
    }
    jv *l = jx_list(r, n, false);
    if (n) memcpy(l->u.l.a, items, sizeof(jv *) * (size_t)n);
    return l;
}

typedef struct {
    jv **a;
    int n, cap;
} vec;

static void vec_push(jrender *r, vec *v, jv *x) {
    if (v->n == v->cap) {
        int cap = v->cap ? 2 * v->cap : 16;
        jv **na = jx_alloc(r, sizeof(jv *) * (size_t)cap);
        if (v->n) memcpy(na, v->a, sizeof(jv *) * (size_t)v->n);
        v->a = na;
        v->cap = cap;
    }
    v->a[v->n++] = x;
}

static jv *vec_list(jrender *r, vec *v, bool gen) {
    jv *l = jx_list(r, v->n, false);
    if (v->n) memcpy(l->u.l.a, v->a, sizeof(jv *) * (size_t)v->n);
    l->gen = gen;
    return l;
}

// str.split(sep, maxsplit) and rsplit
static jv *split(jrender *r, int line, jstr s, const jv *sepv, int64_t maxsplit, bool from_right) {
    vec out = { 0 };
    if (!sepv || sepv->t == JV_NONE) {
        // runs of whitespace; leading and trailing ignored
        size_t i = 0;
        if (!from_right) {
            while (i < s.n) {
                size_t k;
                while (i < s.n && (k = jx_space_len(s.s + i, s.n - i))) i += k;
                if (i >= s.n) break;
                if (maxsplit >= 0 && out.n == maxsplit) {
                    vec_push(r, &out, jx_str(r, s.s + i, jx_rstrip_len(s.s + i, s.n - i)));
                    break;
                }
                size_t st = i;
                while (i < s.n && !jx_space_len(s.s + i, s.n - i)) i++;
                vec_push(r, &out, jx_str(r, s.s + st, i - st));
            }
            return vec_list(r, &out, false);
        }
        // rsplit without sep: split all, then join the leading ones back when maxsplit limits
        jv *all = split(r, line, s, NULL, -1, false);
        if (maxsplit < 0 || all->u.l.n <= maxsplit + 1) return all;
        int keep = (int)maxsplit;
        // the head is the text up to the start of the (n - keep)th word, right-stripped
        int head_words = all->u.l.n - keep;
        size_t i2 = 0;
        int w = 0;
        size_t head_end = 0;
        while (i2 < s.n && w < head_words) {
            size_t k;
            while (i2 < s.n && (k = jx_space_len(s.s + i2, s.n - i2))) i2 += k;
            while (i2 < s.n && !jx_space_len(s.s + i2, s.n - i2)) i2++;
            head_end = i2;
            w++;
        }
        size_t hs = 0, k2;
        while (hs < s.n && (k2 = jx_space_len(s.s + hs, s.n - hs))) hs += k2;
        jv *l = jx_list(r, keep + 1, false);
        l->u.l.a[0] = jx_str(r, s.s + hs, head_end - hs);
        for (int i3 = 0; i3 < keep; i3++) l->u.l.a[i3 + 1] = all->u.l.a[head_words + i3];
        return l;
    }
    jstr sep = want_str(r, line, sepv, "split separator");
    if (sep.n == 0) jx_fail(r, line, "empty separator");
    if (!from_right) {
        size_t i = 0;
        for (;;) {
            const char *hit = maxsplit >= 0 && out.n >= maxsplit ? NULL : memmem(s.s + i, s.n - i, sep.s, sep.n);
            if (!hit) {
                vec_push(r, &out, jx_str(r, s.s + i, s.n - i));
                break;
            }
            vec_push(r, &out, jx_str(r, s.s + i, (size_t)(hit - (s.s + i))));
            i = (size_t)(hit - s.s) + sep.n;
        }
        return vec_list(r, &out, false);
    }
    // from the right
    size_t end = s.n;
    vec rev = { 0 };
    for (;;) {
        const char *hit = NULL;
        if (!(maxsplit >= 0 && rev.n >= maxsplit) && end >= sep.n)
            for (size_t j = end - sep.n + 1; j-- > 0;)
                if (memcmp(s.s + j, sep.s, sep.n) == 0) { hit = s.s + j; break; }
        if (!hit) {
            vec_push(r, &rev, jx_str(r, s.s, end));
            break;
        }
        size_t at = (size_t)(hit - s.s);
        vec_push(r, &rev, jx_str(r, s.s + at + sep.n, end - at - sep.n));
        end = at;
    }
    for (int i = rev.n - 1; i >= 0; i--) vec_push(r, &out, rev.a[i]);
    return vec_list(r, &out, false);
}

static jv *replace(jrender *r, jstr s, jstr old, jstr new_, int64_t count) {
    jbuf b = { 0 };
    jx_buf_put(r, &b, "", 0);
    if (old.n == 0) {   // inserts between code points
        int64_t done = 0;
        size_t i = 0;
        for (;;) {
            if (count < 0 || done < count) { jx_buf_put(r, &b, new_.s, new_.n); done++; }
            if (i >= s.n) break;
            size_t k = jx_utf8_offset(s.s + i, s.n - i, 1);
            jx_buf_put(r, &b, s.s + i, k);
            i += k;
        }
        return str_val(r, &b);
    }
    size_t i = 0;
    int64_t done = 0;
    while (i <= s.n) {
        const char *hit = count >= 0 && done >= count ? NULL : memmem(s.s + i, s.n - i, old.s, old.n);
        if (!hit) {
            jx_buf_put(r, &b, s.s + i, s.n - i);
            break;
        }
        jx_buf_put(r, &b, s.s + i, (size_t)(hit - (s.s + i)));
        jx_buf_put(r, &b, new_.s, new_.n);
        i = (size_t)(hit - s.s) + old.n;
        done++;
    }
    return str_val(r, &b);
}

static int64_t count_sub(jstr s, jstr sub) {
    if (sub.n == 0) return (int64_t)jx_utf8_len(s.s, s.n) + 1;
    int64_t k = 0;
    for (size_t i = 0; i + sub.n <= s.n;) {
        const char *hit = memmem(s.s + i, s.n - i, sub.s, sub.n);
        if (!hit) break;
        k++;
        i = (size_t)(hit - s.s) + sub.n;
    }
    return k;
}

static bool starts_or_ends(jrender *r, int line, jstr s, const jv *p, bool ends) {
    if (p->t == JV_LIST && p->tuple) {
        for (int i = 0; i < p->u.l.n; i++)
            if (starts_or_ends(r, line, s, p->u.l.a[i], ends)) return true;
        return false;
    }
    jstr x = want_str(r, line, p, ends ? "endswith argument" : "startswith argument");
    if (x.n > s.n) return false;
    return memcmp(ends ? s.s + s.n - x.n : s.s, x.s, x.n) == 0;
}

// Python's printf-style formatting (str % args, the format filter): %s %r %d %i %f %x %% with flags, width, precision.
static jv *percent_format(jrender *r, int line, jstr fmt, jv *args) {
    jv *list = args->t == JV_LIST && args->tuple ? args : NULL;
    int n_args = list ? list->u.l.n : 1, next = 0;
    jbuf b = { 0 };
    jx_buf_put(r, &b, "", 0);
    for (size_t i = 0; i < fmt.n; i++) {
        if (fmt.s[i] != '%') { jx_buf_put(r, &b, fmt.s + i, 1); continue; }
        size_t j = i + 1;
        char spec[32];
        size_t k = 0;
        spec[k++] = '%';
        while (j < fmt.n && strchr("-+ #0", fmt.s[j]) && k < 8) spec[k++] = fmt.s[j++];
        while (j < fmt.n && fmt.s[j] >= '0' && fmt.s[j] <= '9' && k < 16) spec[k++] = fmt.s[j++];
        if (j < fmt.n && fmt.s[j] == '.') {
            spec[k++] = fmt.s[j++];
            while (j < fmt.n && fmt.s[j] >= '0' && fmt.s[j] <= '9' && k < 24) spec[k++] = fmt.s[j++];
        }
        if (j >= fmt.n) jx_fail(r, line, "incomplete format");
        char conv = fmt.s[j];
        i = j;
        if (conv == '%') { jx_buf_put(r, &b, "%", 1); continue; }
        if (next >= n_args) jx_fail(r, line, "not enough arguments for format string");
        jv *v = list ? list->u.l.a[next++] : (next++, args);
        char tmp[512];
        if (conv == 's' || conv == 'r') {
            jstr s;
            if (conv == 'r') {
                jbuf rb = { 0 };
                jx_repr(r, &rb, v);
                s = (jstr){ rb.s ? rb.s : "", rb.n };
            } else {
                s = jx_to_str(r, v);
            }
            spec[k++] = '.';
            spec[k++] = '*';
            spec[k++] = 's';
            spec[k] = 0;
            if (k == 4) { jx_buf_put(r, &b, s.s, s.n); continue; }   // plain %s
            snprintf(tmp, sizeof(tmp), spec, (int)s.n, s.s);
        } else if (conv == 'd' || conv == 'i' || conv == 'x' || conv == 'X' || conv == 'o') {
            if (v->t != JV_INT && v->t != JV_BOOL && v->t != JV_FLOAT)
                jx_fail(r, line, "%%%c format: a number is required, not %s", conv, jx_type_name(v));
            long long x = v->t == JV_FLOAT ? (long long)v->u.f : (long long)int_of(v);
            spec[k++] = 'l';
            spec[k++] = 'l';
            spec[k++] = conv == 'i' ? 'd' : conv;
            spec[k] = 0;
            snprintf(tmp, sizeof(tmp), spec, x);
        } else if (conv == 'f' || conv == 'F' || conv == 'e' || conv == 'E' || conv == 'g' || conv == 'G') {
            if (v->t != JV_INT && v->t != JV_BOOL && v->t != JV_FLOAT)
                jx_fail(r, line, "%%%c format: a number is required, not %s", conv, jx_type_name(v));
            double x = v->t == JV_FLOAT ? v->u.f : (double)int_of(v);
            spec[k++] = conv;
            spec[k] = 0;
            snprintf(tmp, sizeof(tmp), spec, x);
        } else {
            jx_fail(r, line, "unsupported format character '%c'", conv);
        }
        jx_buf_put(r, &b, tmp, strlen(tmp));
    }
    if (next < n_args && list) jx_fail(r, line, "not all arguments converted during string formatting");
    return str_val(r, &b);
}

// str.format with {} / {0} / {name} fields (no format specs) and {{ }} escapes.
static jv *brace_format(jrender *r, int line, jstr fmt, const jargs *a) {
    jbuf b = { 0 };
    jx_buf_put(r, &b, "", 0);
    int auto_i = 0;
    for (size_t i = 0; i < fmt.n; i++) {
        char c = fmt.s[i];
        if ((c == '{' || c == '}') && i + 1 < fmt.n && fmt.s[i + 1] == c) { jx_buf_put(r, &b, &c, 1); i++; continue; }
        if (c == '}') jx_fail(r, line, "single '}' encountered in format string");
        if (c != '{') { jx_buf_put(r, &b, &c, 1); continue; }
        size_t j = i + 1;
        while (j < fmt.n && fmt.s[j] != '}') j++;
        if (j >= fmt.n) jx_fail(r, line, "single '{' encountered in format string");
        jstr field = { fmt.s + i + 1, j - i - 1 };
        jv *v = NULL;
        if (field.n == 0) {
            if (auto_i >= a->n_args) jx_fail(r, line, "format: not enough positional arguments");
            v = a->args[auto_i++];
        } else if (field.s[0] >= '0' && field.s[0] <= '9') {
            int idx = atoi(field.s);
            if (idx >= a->n_args) jx_fail(r, line, "format: not enough positional arguments");
            v = a->args[idx];
        } else {
            for (int k = 0; k < a->n_kw; k++)
                if (a->kw[k].n == field.n && memcmp(a->kw[k].s, field.s, field.n) == 0) v = a->kwv[k];
            if (!v) jx_fail(r, line, "format: no argument named '%.*s'", (int)field.n, field.s);
        }
        jstr s = jx_to_str(r, v);
        jx_buf_put(r, &b, s.s, s.n);
        i = j;
    }
    return str_val(r, &b);
}

jv *jx_percent_format(jrender *r, int line, jstr fmt, jv *args) { return percent_format(r, line, fmt, args); }

// ---- JSON (Python's json.dumps) ------------------------------------------------------------

static void json_str(jrender *r, jbuf *b, jstr s, bool ensure_ascii) {
    jx_buf_put(r, b, "\"", 1);
    for (size_t i = 0; i < s.n;) {
        unsigned char c = (unsigned char)s.s[i];
        char esc[16];
        if (c == '"') { jx_buf_put(r, b, "\\\"", 2); i++; }
        else if (c == '\\') { jx_buf_put(r, b, "\\\\", 2); i++; }
        else if (c == '\n') { jx_buf_put(r, b, "\\n", 2); i++; }
        else if (c == '\r') { jx_buf_put(r, b, "\\r", 2); i++; }
        else if (c == '\t') { jx_buf_put(r, b, "\\t", 2); i++; }
        else if (c == '\b') { jx_buf_put(r, b, "\\b", 2); i++; }
        else if (c == '\f') { jx_buf_put(r, b, "\\f", 2); i++; }
        else if (c < 0x20 || (ensure_ascii && c == 0x7f)) { snprintf(esc, sizeof(esc), "\\u%04x", c); jx_buf_put(r, b, esc, 6); i++; }
        else if (c < 0x80 || !ensure_ascii) { jx_buf_put(r, b, s.s + i, 1); i++; }
        else {
            int32_t cp;
            i += cp_at(s.s + i, s.n - i, &cp);
            if (cp >= 0x10000) {
                cp -= 0x10000;
                snprintf(esc, sizeof(esc), "\\u%04x\\u%04x", 0xd800 + (cp >> 10), 0xdc00 + (cp & 0x3ff));
                jx_buf_put(r, b, esc, 12);
            } else {
                snprintf(esc, sizeof(esc), "\\u%04x", cp);
                jx_buf_put(r, b, esc, 6);
            }
        }
    }
    jx_buf_put(r, b, "\"", 1);
}

static void json_float(jrender *r, jbuf *b, double f) {
    char tmp[64];
    if (isnan(f)) snprintf(tmp, sizeof(tmp), "NaN");
    else if (isinf(f)) snprintf(tmp, sizeof(tmp), f < 0 ? "-Infinity" : "Infinity");
    else jx_float_repr(tmp, sizeof(tmp), f);
    jx_buf_put(r, b, tmp, strlen(tmp));
}

static void json_newline(jrender *r, jbuf *b, const char *indent, int level) {
    jx_buf_put(r, b, "\n", 1);
    for (int i = 0; i < level; i++) jx_buf_put(r, b, indent, strlen(indent));
}

// a key as json.dumps writes it (str keys as is; numbers, booleans, None converted)
static jstr json_key(jrender *r, int line, const jv *k) {
    switch (k->t) {
    case JV_STR: return k->u.s;
    case JV_BOOL: return k->u.b ? (jstr){ "true", 4 } : (jstr){ "false", 5 };
    case JV_NONE: return (jstr){ "null", 4 };
    case JV_INT: case JV_FLOAT: return jx_to_str(r, k);
    default: jx_fail(r, line, "keys must be str, int, float, bool or None, not %s", jx_type_name(k));
    }
}

static int cmp_jstr(jstr a, jstr b) {
    size_t n = QT_MIN(a.n, b.n);
    int c = n ? memcmp(a.s, b.s, n) : 0;
    return c ? c : (a.n < b.n ? -1 : a.n > b.n);
}

void jx_tojson(jrender *r, jbuf *b, const jv *v, const char *indent, const char *item_sep, const char *key_sep,
               bool sort_keys, bool ensure_ascii, int level) {
    if (level > 200) jx_fail(r, 0, "tojson: nested too deeply");
    switch (v->t) {
    case JV_NONE: jx_buf_put(r, b, "null", 4); return;
    case JV_BOOL: jx_buf_put(r, b, v->u.b ? "true" : "false", v->u.b ? 4 : 5); return;
    case JV_INT: case JV_FLOAT: {
        if (v->t == JV_FLOAT) { json_float(r, b, v->u.f); return; }
        jstr s = jx_to_str(r, v);
        jx_buf_put(r, b, s.s, s.n);
        return;
    }
    case JV_STR: json_str(r, b, v->u.s, ensure_ascii); return;
    case JV_LIST:
        if (v->gen) jx_fail(r, 0, "Object of type generator is not JSON serializable");
        if (v->u.l.n == 0) { jx_buf_put(r, b, "[]", 2); return; }
        jx_buf_put(r, b, "[", 1);
        for (int i = 0; i < v->u.l.n; i++) {
            if (i) jx_buf_put(r, b, item_sep, strlen(item_sep));
            if (indent) json_newline(r, b, indent, level + 1);
            jx_tojson(r, b, v->u.l.a[i], indent, item_sep, key_sep, sort_keys, ensure_ascii, level + 1);
        }
        if (indent) json_newline(r, b, indent, level);
        jx_buf_put(r, b, "]", 1);
        return;
    case JV_DICT: {
        const jdict *d = v->u.d;
        if (d->n == 0) { jx_buf_put(r, b, "{}", 2); return; }
        int *order = jx_alloc(r, sizeof(int) * (size_t)d->n);
        jstr *keys = jx_alloc(r, sizeof(jstr) * (size_t)d->n);
        for (int i = 0; i < d->n; i++) {
            order[i] = i;
            keys[i] = json_key(r, 0, d->k[i]);
        }
        if (sort_keys)   // insertion sort: stable, dicts are small
            for (int i = 1; i < d->n; i++)
                for (int j = i; j > 0 && cmp_jstr(keys[order[j - 1]], keys[order[j]]) > 0; j--) {
                    int t = order[j]; order[j] = order[j - 1]; order[j - 1] = t;
                }
        jx_buf_put(r, b, "{", 1);
        for (int i = 0; i < d->n; i++) {
            if (i) jx_buf_put(r, b, item_sep, strlen(item_sep));
            if (indent) json_newline(r, b, indent, level + 1);
            json_str(r, b, keys[order[i]], ensure_ascii);
            jx_buf_put(r, b, key_sep, strlen(key_sep));
            jx_tojson(r, b, d->v[order[i]], indent, item_sep, key_sep, sort_keys, ensure_ascii, level + 1);
        }
        if (indent) json_newline(r, b, indent, level);
        jx_buf_put(r, b, "}", 1);
        return;
    }
    default:
        jx_fail(r, 0, "Object of type %s is not JSON serializable", jx_type_name(v));
    }
}

// ---- sorting helpers ----------------------------------------------------------------------

// value at a dotted attribute path ("function.name", "0"), as jinja2's make_attrgetter
static jv *attr_path(jrender *r, int line, jv *v, jstr path) {
    size_t i = 0;
    while (i <= path.n) {
        size_t j = i;
        while (j < path.n && path.s[j] != '.') j++;
        jstr part = { path.s + i, j - i };
        bool digits = part.n > 0;
        for (size_t k = 0; k < part.n; k++) digits = digits && part.s[k] >= '0' && part.s[k] <= '9';
        jv *key = digits ? jx_int(r, strtoll(part.s, NULL, 10)) : jx_str(r, part.s, part.n);
        v = jx_getitem(r, line, v, key);
        if (j >= path.n) break;
        i = j + 1;
    }
    return v;
}

static jv *fold_case(jrender *r, jv *v, bool case_sensitive) {
    if (case_sensitive || v->t != JV_STR) return v;
    return change_case(r, v->u.s, CASE_LOWER);
}

typedef struct {
    jv *key, *val;
} keyed;

static void merge_sort(jrender *r, int line, keyed *a, keyed *tmp, int n, bool reverse) {
    if (n < 2) return;
    int h = n / 2;
    merge_sort(r, line, a, tmp, h, reverse);
    merge_sort(r, line, a + h, tmp, n - h, reverse);
    int i = 0, j = h, k = 0;
    while (i < h && j < n) {
        int c = jx_compare(r, line, a[j].key, a[i].key);
        if (reverse ? c > 0 : c < 0) tmp[k++] = a[j++];   // strictly smaller from the right: stable
        else tmp[k++] = a[i++];
    }
    while (i < h) tmp[k++] = a[i++];
    while (j < n) tmp[k++] = a[j++];
    memcpy(a, tmp, sizeof(keyed) * (size_t)n);
}

// Python's sorted(reverse=True) keeps equal items in their order; merge_sort
// with reverse compares the other way round, which does the same.
static jv *sort_values(jrender *r, int line, jv **items, int n, jv **keys, bool reverse, bool tuple) {
    keyed *k = jx_alloc(r, sizeof(keyed) * (size_t)(n ? n : 1)), *tmp = jx_alloc(r, sizeof(keyed) * (size_t)(n ? n : 1));
    for (int i = 0; i < n; i++) k[i] = (keyed){ keys[i], items[i] };
    merge_sort(r, line, k, tmp, n, reverse);
    jv *l = jx_list(r, n, tuple);
    for (int i = 0; i < n; i++) l->u.l.a[i] = k[i].val;
    return l;
}

// ---- tests -----------------------------------------------------------------------------------

static const char *const TESTS[] = {
    "defined", "undefined", "none", "boolean", "false", "true", "integer", "float", "number", "string", "mapping",
    "iterable", "sequence", "callable", "sameas", "escaped", "odd", "even", "divisibleby", "eq", "equalto", "==",
    "ne", "!=", "lt", "lessthan", "<", "le", "<=", "gt", "greaterthan", ">", "ge", ">=", "in", "lower", "upper",
    "filter", "test",
};

int jx_test_find(const char *name, size_t n) {
    for (size_t i = 0; i < QT_ARRAY_LEN(TESTS); i++)
        if (strlen(TESTS[i]) == n && memcmp(TESTS[i], name, n) == 0) return (int)i;
    return -1;
}

static bool all_cased(jrender *r, jstr s, bool upper) {
    bool any = false;
    for (size_t i = 0; i < s.n;) {
        int32_t c;
        i += cp_at(s.s + i, s.n - i, &c);
        utf8proc_category_t cat = utf8proc_category(c);
        if (cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LT) { if (!upper) return false; any = true; }
        if (cat == UTF8PROC_CATEGORY_LL) { if (upper) return false; any = true; }
    }
    (void)r;
    return any;
}

bool jx_test_call(jrender *r, int line, int test, jv *v, const jargs *a) {
    const char *name = TESTS[test];
    jv *x = arg(a, 0, "value");
    if (!strcmp(name, "defined")) return v->t != JV_UNDEF;
    if (!strcmp(name, "undefined")) return v->t == JV_UNDEF;
    if (!strcmp(name, "none")) return v->t == JV_NONE;
    if (!strcmp(name, "boolean")) return v->t == JV_BOOL;
    if (!strcmp(name, "false")) return v->t == JV_BOOL && !v->u.b;
    if (!strcmp(name, "true")) return v->t == JV_BOOL && v->u.b;
    if (!strcmp(name, "integer")) return v->t == JV_INT;
    if (!strcmp(name, "float")) return v->t == JV_FLOAT;
    if (!strcmp(name, "number")) return v->t == JV_INT || v->t == JV_FLOAT || v->t == JV_BOOL;
    if (!strcmp(name, "string")) return v->t == JV_STR;
    if (!strcmp(name, "mapping")) return v->t == JV_DICT;
    if (!strcmp(name, "iterable")) return v->t == JV_STR || v->t == JV_LIST || v->t == JV_DICT || v->t == JV_UNDEF;
    if (!strcmp(name, "sequence")) return v->t == JV_STR || (v->t == JV_LIST && !v->gen) || v->t == JV_DICT;
    if (!strcmp(name, "callable")) return v->t == JV_FUNC || v->t == JV_METHOD || v->t == JV_MACRO;
    if (!strcmp(name, "escaped")) return false;
    if (!strcmp(name, "lower") || !strcmp(name, "upper")) {
        jstr s = jx_to_str(r, v);
        return all_cased(r, s, name[0] == 'u');
    }
    if (!strcmp(name, "filter")) { jstr s = want_str(r, line, v, "filter test"); return jx_filter_find(s.s, s.n) >= 0; }
    if (!strcmp(name, "test")) { jstr s = want_str(r, line, v, "test test"); return jx_test_find(s.s, s.n) >= 0; }
    if (!strcmp(name, "odd") || !strcmp(name, "even")) {
        int64_t i = want_int(r, line, v, name);
        return (i % 2 != 0) == (name[0] == 'o');
    }
    if (!x) jx_fail(r, line, "test '%s' needs an argument", name);
    if (!strcmp(name, "sameas")) {
        if (v->t != x->t) return false;
        if (v->t == JV_NONE || v->t == JV_BOOL || v->t == JV_INT) return jx_equal(v, x);
        return v == x;
    }
    if (!strcmp(name, "divisibleby")) {
        int64_t d = want_int(r, line, x, "divisibleby");
        if (d == 0) jx_fail(r, line, "integer division or modulo by zero");
        return want_int(r, line, v, "divisibleby") % d == 0;
    }
    if (!strcmp(name, "eq") || !strcmp(name, "equalto") || !strcmp(name, "==")) return jx_equal(v, x);
    if (!strcmp(name, "ne") || !strcmp(name, "!=")) return !jx_equal(v, x);
    if (!strcmp(name, "lt") || !strcmp(name, "lessthan") || !strcmp(name, "<")) return jx_compare(r, line, v, x) < 0;
    if (!strcmp(name, "le") || !strcmp(name, "<=")) return jx_compare(r, line, v, x) <= 0;
    if (!strcmp(name, "gt") || !strcmp(name, "greaterthan") || !strcmp(name, ">")) return jx_compare(r, line, v, x) > 0;
    if (!strcmp(name, "ge") || !strcmp(name, ">=")) return jx_compare(r, line, v, x) >= 0;
    if (!strcmp(name, "in")) {
        if (x->t == JV_STR) {
            jstr s = want_str(r, line, v, "'in <string>' left operand");
            return s.n == 0 || memmem(x->u.s.s, x->u.s.n, s.s, s.n) != NULL;
        }
        if (x->t == JV_DICT) return jx_dict_find(x->u.d, v) != NULL;
        jv *l = jx_iter_list(r, line, x);
        for (int i = 0; i < l->u.l.n; i++)
            if (jx_equal(l->u.l.a[i], v)) return true;
        return false;
    }
    jx_fail(r, line, "test '%s' is not implemented", name);
}

// ---- filters ---------------------------------------------------------------------------------

static const char *const FILTERS[] = {
    "abs", "attr", "capitalize", "center", "count", "d", "default", "dictsort", "e", "escape", "first", "float",
    "format", "indent", "int", "items", "join", "last", "length", "list", "lower", "map", "max", "min", "reject",
    "rejectattr", "replace", "reverse", "round", "safe", "select", "selectattr", "sort", "string", "sum", "title",
    "tojson", "trim", "unique", "upper", "wordcount",
};

int jx_filter_find(const char *name, size_t n) {
    for (size_t i = 0; i < QT_ARRAY_LEN(FILTERS); i++)
        if (strlen(FILTERS[i]) == n && memcmp(FILTERS[i], name, n) == 0) return (int)i;
    return -1;
}

static int64_t py_len(jrender *r, int line, jv *v) {
    switch (v->t) {
    case JV_STR: return (int64_t)jx_utf8_len(v->u.s.s, v->u.s.n);
    case JV_LIST:
        if (v->gen) jx_fail(r, line, "object of type 'generator' has no len()");
        return v->u.l.n;
    case JV_DICT: return v->u.d->n;
    case JV_UNDEF: return 0;
    default: jx_fail(r, line, "object of type '%s' has no len()", jx_type_name(v));
    }
}

// select / reject / selectattr / rejectattr: items whose test (or truthiness) is `want`
static jv *select_items(jrender *r, int line, jv *seq, const jargs *a, bool by_attr, bool want) {
    jv *l = jx_truthy(seq) ? undef_fail_or_list(r, line, seq) : jx_list(r, 0, false);   // "if value:" in jinja2
    int first = 0;
    jstr attr = { 0 };
    if (by_attr) {
        if (a->n_args < 1) jx_fail(r, line, "selectattr / rejectattr need an attribute name");
        attr = want_str(r, line, a->args[0], "attribute");
        first = 1;
    }
    int test = -1;
    if (a->n_args > first) {
        jstr tn = want_str(r, line, a->args[first], "test name");
        test = jx_test_find(tn.s, tn.n);
        if (test < 0) jx_fail(r, line, "no test named '%.*s'", (int)tn.n, tn.s);
    }
    jargs ta = { a->args + first + 1, a->n_args > first + 1 ? a->n_args - first - 1 : 0, a->kw, a->kwv, a->n_kw };
    vec out = { 0 };
    for (int i = 0; i < l->u.l.n; i++) {
        jv *x = by_attr ? attr_path(r, line, l->u.l.a[i], attr) : l->u.l.a[i];
        bool t = test >= 0 ? jx_test_call(r, line, test, x, &ta) : jx_truthy(x);
        if (t == want) vec_push(r, &out, l->u.l.a[i]);
    }
    return vec_list(r, &out, true);
}

static jv *do_map(jrender *r, int line, jv *seq, const jargs *a) {
    jv *l = jx_truthy(seq) ? undef_fail_or_list(r, line, seq) : jx_list(r, 0, false);   // "if value:" in jinja2
    vec out = { 0 };
    jv *attribute = arg(a, -1, "attribute");
    if (attribute) {
        jstr path = want_str(r, line, attribute, "attribute");
        jv *def = arg(a, -1, "default");
        for (int i = 0; i < l->u.l.n; i++) {
            jv *x = attr_path(r, line, l->u.l.a[i], path);
            vec_push(r, &out, x->t == JV_UNDEF && def ? def : x);
        }
        return vec_list(r, &out, true);
    }
    if (a->n_args < 1) jx_fail(r, line, "map needs a filter name or attribute=");
    jstr fname = want_str(r, line, a->args[0], "filter name");
    int f = jx_filter_find(fname.s, fname.n);
    if (f < 0) jx_fail(r, line, "no filter named '%.*s'", (int)fname.n, fname.s);
    jargs fa = { a->args + 1, a->n_args - 1, a->kw, a->kwv, a->n_kw };
    for (int i = 0; i < l->u.l.n; i++) vec_push(r, &out, jx_filter_call(r, line, f, l->u.l.a[i], &fa));
    return vec_list(r, &out, true);
}

static jv *do_indent(jrender *r, int line, jv *v, const jargs *a) {
    jstr s = jx_to_str(r, v);
    jv *w = arg(a, 0, "width"), *first = arg(a, 1, "first"), *blank = arg(a, 2, "blank");
    jstr ind;
    if (w && w->t == JV_STR) ind = w->u.s;
    else {
        int64_t n = w ? want_int(r, line, w, "indent width") : 4;
        if (n < 0) n = 0;
        if (n > 1000) jx_fail(r, line, "indent width too large");
        jbuf sp = { 0 };
        jx_buf_put(r, &sp, "", 0);
        for (int64_t i = 0; i < n; i++) jx_buf_put(r, &sp, " ", 1);
        ind = (jstr){ sp.s, sp.n };
    }
    jbuf tmp = { 0 };
    jx_buf_put(r, &tmp, s.s, s.n);
    jx_buf_put(r, &tmp, "\n", 1);
    jv *lines = splitlines(r, (jstr){ tmp.s, tmp.n }, false);
    jbuf b = { 0 };
    jx_buf_put(r, &b, "", 0);
    if (first && jx_truthy(first)) jx_buf_put(r, &b, ind.s, ind.n);
    for (int i = 0; i < lines->u.l.n; i++) {
        jstr ln = lines->u.l.a[i]->u.s;
        if (i) {
            jx_buf_put(r, &b, "\n", 1);
            if (ln.n || (blank && jx_truthy(blank))) jx_buf_put(r, &b, ind.s, ind.n);
        }
        jx_buf_put(r, &b, ln.s, ln.n);
    }
    return str_val(r, &b);
}

jv *jx_escape_html(jrender *r, jstr s) {
    jbuf b = { 0 };
    jx_buf_put(r, &b, "", 0);
    for (size_t i = 0; i < s.n; i++) {
        switch (s.s[i]) {
        case '&': jx_buf_put(r, &b, "&amp;", 5); break;
        case '<': jx_buf_put(r, &b, "&lt;", 4); break;
        case '>': jx_buf_put(r, &b, "&gt;", 4); break;
        case '"': jx_buf_put(r, &b, "&#34;", 5); break;
        case '\'': jx_buf_put(r, &b, "&#39;", 5); break;
        default: jx_buf_put(r, &b, s.s + i, 1);
        }
    }
    return str_val(r, &b);
}

static jv *min_max(jrender *r, int line, jv *v, const jargs *a, bool want_max) {
    jv *l = undef_fail_or_list(r, line, v);
    jv *cs = arg(a, 0, "case_sensitive"), *attr = arg(a, 1, "attribute");
    if (l->u.l.n == 0) return jx_undef(r, "min/max", 7);
    jv *best = NULL, *best_key = NULL;
    for (int i = 0; i < l->u.l.n; i++) {
        jv *x = l->u.l.a[i];
        jv *k = attr ? attr_path(r, line, x, want_str(r, line, attr, "attribute")) : x;
        k = fold_case(r, k, cs && jx_truthy(cs));
        if (!best || (want_max ? jx_compare(r, line, k, best_key) > 0 : jx_compare(r, line, k, best_key) < 0)) {
            best = x;
            best_key = k;
        }
    }
    return best;
}

static jv *do_round(jrender *r, int line, jv *v, const jargs *a) {
    jv *pv = arg(a, 0, "precision"), *mv = arg(a, 1, "method");
    int64_t prec = pv ? want_int(r, line, pv, "precision") : 0;
    jstr method = mv ? want_str(r, line, mv, "method") : (jstr){ "common", 6 };
    if (v->t != JV_INT && v->t != JV_FLOAT && v->t != JV_BOOL) jx_fail(r, line, "round: a number is required, not %s", jx_type_name(v));
    double x = v->t == JV_FLOAT ? v->u.f : (double)int_of(v);
    double m = pow(10.0, (double)prec);
    double y;
    if (method.n == 4 && !memcmp(method.s, "ceil", 4)) y = ceil(x * m) / m;
    else if (method.n == 5 && !memcmp(method.s, "floor", 5)) y = floor(x * m) / m;
    else if (method.n == 6 && !memcmp(method.s, "common", 6)) {
        if (v->t != JV_FLOAT) return jx_int(r, int_of(v));   // round(int, n) stays an int
        y = nearbyint(x * m) / m;   // half to even, as Python's round
    } else jx_fail(r, line, "method must be common, ceil or floor");
    return jx_float(r, y);
}

static jv *do_int(jrender *r, int line, jv *v, const jargs *a) {
    jv *def = arg(a, 0, "default"), *basev = arg(a, 1, "base");
    int64_t base = basev ? want_int(r, line, basev, "base") : 10;
    if (v->t == JV_INT) return v;
    if (v->t == JV_BOOL) return jx_int(r, v->u.b);
    if (v->t == JV_FLOAT && isfinite(v->u.f) && fabs(v->u.f) < 9.2e18) return jx_int(r, (int64_t)v->u.f);
    if (v->t == JV_STR && v->u.s.n < 64) {
        char tmp[80];
        memcpy(tmp, v->u.s.s, v->u.s.n);
        tmp[v->u.s.n] = 0;
        char *e;
        long long i = strtoll(tmp, &e, (int)base);
        while (*e == ' ' || *e == '\t' || *e == '\n') e++;
        if (*e == 0 && e != tmp) return jx_int(r, i);
        double d = strtod(tmp, &e);
        while (*e == ' ' || *e == '\t' || *e == '\n') e++;
        if (*e == 0 && e != tmp && isfinite(d) && fabs(d) < 9.2e18) return jx_int(r, (int64_t)d);
    }
    return def ? def : jx_int(r, 0);
}

static jv *do_float(jrender *r, int line, jv *v, const jargs *a) {
    jv *def = arg(a, 0, "default");
    if (v->t == JV_FLOAT) return v;
    if (v->t == JV_INT || v->t == JV_BOOL) return jx_float(r, (double)int_of(v));
    if (v->t == JV_STR && v->u.s.n < 64) {
        char tmp[80];
        memcpy(tmp, v->u.s.s, v->u.s.n);
        tmp[v->u.s.n] = 0;
        char *e;
        double d = strtod(tmp, &e);
        while (*e == ' ' || *e == '\t' || *e == '\n') e++;
        if (*e == 0 && e != tmp) return jx_float(r, d);
    }
    (void)line;
    return def ? def : jx_float(r, 0.0);
}

jv *jx_filter_call(jrender *r, int line, int filter, jv *v, const jargs *a) {
    const char *name = FILTERS[filter];
#define IS(s) (strcmp(name, s) == 0)
    if (IS("default") || IS("d")) {
        jv *def = arg(a, 0, "default_value"), *boolean = arg(a, 1, "boolean");
        bool use = v->t == JV_UNDEF || (boolean && jx_truthy(boolean) && !jx_truthy(v));
        return use ? (def ? def : jx_cstr(r, "")) : v;
    }
    if (IS("length") || IS("count")) return jx_int(r, py_len(r, line, v));
    if (IS("string")) return v->t == JV_STR ? v : jx_str(r, jx_to_str(r, v).s, jx_to_str(r, v).n);
    if (IS("safe")) {
        if (v->t != JV_STR) v = jx_str(r, jx_to_str(r, v).s, jx_to_str(r, v).n);
        else v = jx_str(r, v->u.s.s, v->u.s.n);
        v->safe = true;
        return v;
    }
    if (IS("upper") || IS("lower") || IS("capitalize")) {
        jstr s = jx_to_str(r, v);
        return change_case(r, s, IS("upper") ? CASE_UPPER : IS("lower") ? CASE_LOWER : CASE_CAPITALIZE);
    }
    if (IS("title")) {   // each piece after [-\s({\[<]+ : first char upper, rest lower
        jstr s = jx_to_str(r, v);
        jbuf b = { 0 };
        jx_buf_put(r, &b, "", 0);
        bool start = true;
        for (size_t i = 0; i < s.n;) {
            int32_t c;
            size_t k = cp_at(s.s + i, s.n - i, &c);
            bool sep = jx_space_len(s.s + i, s.n - i) || (c < 0x80 && strchr("-({[<", (int)c) && c);
            if (sep) { jx_buf_put(r, &b, s.s + i, k); start = true; }
            else { put_cp(r, &b, start ? utf8proc_toupper(c) : utf8proc_tolower(c)); start = false; }
            i += k;
        }
        return str_val(r, &b);
    }
    if (IS("trim")) {
        jv *chars = arg(a, 0, "chars");
        jstr s = jx_to_str(r, v);
        if (chars && chars->t != JV_NONE) { jstr c = want_str(r, line, chars, "chars"); return strip(r, s, &c, true, true); }
        return strip(r, s, NULL, true, true);
    }
    if (IS("tojson")) {
        static const char *const kw[] = { "ensure_ascii", "indent", "separators", "sort_keys", NULL };
        check_args(r, line, "tojson", a, 4, kw);
        jv *ea = arg(a, 0, "ensure_ascii"), *ind = arg(a, 1, "indent"), *seps = arg(a, 2, "separators"),
           *sk = arg(a, 3, "sort_keys");
        const char *indent = NULL;
        if (ind && ind->t != JV_NONE) {
            if (ind->t == JV_STR) indent = ind->u.s.s;
            else {
                int64_t n = want_int(r, line, ind, "indent");
                if (n < 0) n = 0;
                if (n > 100) jx_fail(r, line, "tojson indent too large");
                char *sp = jx_alloc(r, (size_t)n + 1);
                memset(sp, ' ', (size_t)n);
                indent = sp;
            }
        }
        const char *item_sep = indent ? "," : ", ", *key_sep = ": ";
        if (seps && seps->t != JV_NONE) {
            if (seps->t != JV_LIST || seps->u.l.n != 2) jx_fail(r, line, "separators must be a (item, key) pair");
            item_sep = want_str(r, line, seps->u.l.a[0], "separator").s;
            key_sep = want_str(r, line, seps->u.l.a[1], "separator").s;
        }
        jbuf b = { 0 };
        jx_buf_put(r, &b, "", 0);
        jx_tojson(r, &b, v, indent, item_sep, key_sep, sk && jx_truthy(sk), ea && jx_truthy(ea), 0);
        return str_val(r, &b);
    }
    if (IS("join")) {
        jv *l = undef_fail_or_list(r, line, v);
        jv *d = arg(a, 0, "d"), *attr = arg(a, 1, "attribute");
        jstr sep = d ? want_str(r, line, d, "join separator") : (jstr){ "", 0 };
        jbuf b = { 0 };
        jx_buf_put(r, &b, "", 0);
        for (int i = 0; i < l->u.l.n; i++) {
            if (i) jx_buf_put(r, &b, sep.s, sep.n);
            jv *x = attr ? attr_path(r, line, l->u.l.a[i], want_str(r, line, attr, "attribute")) : l->u.l.a[i];
            jstr s = jx_to_str(r, x);
            jx_buf_put(r, &b, s.s, s.n);
        }
        return str_val(r, &b);
    }
    if (IS("list")) {
        jv *l = undef_fail_or_list(r, line, v);
        jv *c = jx_list(r, l->u.l.n, false);
        if (l->u.l.n) memcpy(c->u.l.a, l->u.l.a, sizeof(jv *) * (size_t)l->u.l.n);
        return c;
    }
    if (IS("first")) {
        jv *l = undef_fail_or_list(r, line, v);
        return l->u.l.n ? l->u.l.a[0] : jx_undef(r, "first", 5);
    }
    if (IS("last")) {
        if (v->t == JV_LIST && v->gen) jx_fail(r, line, "'generator' object is not reversible");
        jv *l = undef_fail_or_list(r, line, v);
        return l->u.l.n ? l->u.l.a[l->u.l.n - 1] : jx_undef(r, "last", 4);
    }
    if (IS("reverse")) {
        if (v->t == JV_STR) {
            jv *chars = jx_iter_list(r, line, v);
            jbuf b = { 0 };
            jx_buf_put(r, &b, "", 0);
            for (int i = chars->u.l.n - 1; i >= 0; i--) jx_buf_put(r, &b, chars->u.l.a[i]->u.s.s, chars->u.l.a[i]->u.s.n);
            return str_val(r, &b);
        }
        jv *l = undef_fail_or_list(r, line, v);
        jv *o = jx_list(r, l->u.l.n, false);
        for (int i = 0; i < l->u.l.n; i++) o->u.l.a[i] = l->u.l.a[l->u.l.n - 1 - i];
        o->gen = true;
        return o;
    }
    if (IS("items")) {
        if (v->t == JV_UNDEF) { jv *e = jx_list(r, 0, false); e->gen = true; return e; }
        if (v->t != JV_DICT) jx_fail(r, line, "can only get item pairs from a mapping");
        jv *o = jx_list(r, v->u.d->n, false);
        for (int i = 0; i < v->u.d->n; i++) {
            jv *t = jx_list(r, 2, true);
            t->u.l.a[0] = v->u.d->k[i];
            t->u.l.a[1] = v->u.d->v[i];
            o->u.l.a[i] = t;
        }
        o->gen = true;
        return o;
    }
    if (IS("dictsort")) {
        if (v->t != JV_DICT) jx_fail(r, line, "dictsort: a mapping is required");
        jv *cs = arg(a, 0, "case_sensitive"), *by = arg(a, 1, "by"), *rev = arg(a, 2, "reverse");
        bool by_value = by && by->t == JV_STR && by->u.s.n == 5 && !memcmp(by->u.s.s, "value", 5);
        int n = v->u.d->n;
        jv **items = jx_alloc(r, sizeof(jv *) * (size_t)(n ? n : 1)), **keys = jx_alloc(r, sizeof(jv *) * (size_t)(n ? n : 1));
        for (int i = 0; i < n; i++) {
            jv *t = jx_list(r, 2, true);
            t->u.l.a[0] = v->u.d->k[i];
            t->u.l.a[1] = v->u.d->v[i];
            items[i] = t;
            keys[i] = fold_case(r, by_value ? v->u.d->v[i] : v->u.d->k[i], cs && jx_truthy(cs));
        }
        return sort_values(r, line, items, n, keys, rev && jx_truthy(rev), false);
    }
    if (IS("sort")) {
        jv *l = undef_fail_or_list(r, line, v);
        jv *rev = arg(a, 0, "reverse"), *cs = arg(a, 1, "case_sensitive"), *attr = arg(a, 2, "attribute");
        int n = l->u.l.n;
        jv **keys = jx_alloc(r, sizeof(jv *) * (size_t)(n ? n : 1));
        for (int i = 0; i < n; i++) {
            jv *k = attr ? attr_path(r, line, l->u.l.a[i], want_str(r, line, attr, "attribute")) : l->u.l.a[i];
            keys[i] = fold_case(r, k, cs && jx_truthy(cs));
        }
        return sort_values(r, line, l->u.l.a, n, keys, rev && jx_truthy(rev), false);
    }
    if (IS("unique")) {
        jv *l = undef_fail_or_list(r, line, v);
        jv *cs = arg(a, 0, "case_sensitive"), *attr = arg(a, 1, "attribute");
        vec out = { 0 }, seen = { 0 };
        for (int i = 0; i < l->u.l.n; i++) {
            jv *k = attr ? attr_path(r, line, l->u.l.a[i], want_str(r, line, attr, "attribute")) : l->u.l.a[i];
            k = fold_case(r, k, cs && jx_truthy(cs));
            bool dup = false;
            for (int j = 0; j < seen.n && !dup; j++) dup = jx_equal(seen.a[j], k);
            if (dup) continue;
            vec_push(r, &seen, k);
            vec_push(r, &out, l->u.l.a[i]);
        }
        return vec_list(r, &out, true);
    }
    if (IS("map")) return do_map(r, line, v, a);
    if (IS("select")) return select_items(r, line, v, a, false, true);
    if (IS("reject")) return select_items(r, line, v, a, false, false);
    if (IS("selectattr")) return select_items(r, line, v, a, true, true);
    if (IS("rejectattr")) return select_items(r, line, v, a, true, false);
    if (IS("replace")) {
        jv *o = arg(a, 0, "old"), *nw = arg(a, 1, "new"), *c = arg(a, 2, "count");
        if (!o || !nw) jx_fail(r, line, "replace needs old and new");
        jstr s = jx_to_str(r, v);
        return replace(r, s, jx_to_str(r, o), jx_to_str(r, nw), c && c->t != JV_NONE ? want_int(r, line, c, "count") : -1);
    }
    if (IS("indent")) return do_indent(r, line, v, a);
    if (IS("e") || IS("escape")) {
        if (v->t == JV_STR && v->safe) return v;
        jv *e = jx_escape_html(r, jx_to_str(r, v));
        e->safe = true;
        return e;
    }
    if (IS("abs")) {
        if (v->t == JV_FLOAT) return jx_float(r, fabs(v->u.f));
        int64_t i = want_int(r, line, v, "abs");
        if (i == INT64_MIN) jx_fail(r, line, "integer overflow in abs");
        return jx_int(r, i < 0 ? -i : i);
    }
    if (IS("attr")) {
        jv *nm = arg(a, 0, "name");
        if (!nm) jx_fail(r, line, "attr needs a name");
        jstr s = want_str(r, line, nm, "attribute name");
        if (v->t == JV_DICT) return jx_undef(r, s.s, s.n);   // attr() is getattr only: dict keys are not attributes
        return jx_getattr(r, line, v, s.s, s.n);
    }
    if (IS("center")) {
        jv *wv = arg(a, 0, "width");
        int64_t w = wv ? want_int(r, line, wv, "width") : 80;
        jstr s = jx_to_str(r, v);
        int64_t len = (int64_t)jx_utf8_len(s.s, s.n);
        if (w <= len) return jx_str(r, s.s, s.n);
        if (w > 100000) jx_fail(r, line, "center width too large");
        int64_t marg = w - len, left = marg / 2 + (marg & w & 1);
        jbuf b = { 0 };
        jx_buf_put(r, &b, "", 0);
        for (int64_t i = 0; i < left; i++) jx_buf_put(r, &b, " ", 1);
        jx_buf_put(r, &b, s.s, s.n);
        for (int64_t i = 0; i < marg - left; i++) jx_buf_put(r, &b, " ", 1);
        return str_val(r, &b);
    }
    if (IS("int")) return do_int(r, line, v, a);
    if (IS("float")) return do_float(r, line, v, a);
    if (IS("round")) return do_round(r, line, v, a);
    if (IS("max")) return min_max(r, line, v, a, true);
    if (IS("min")) return min_max(r, line, v, a, false);
    if (IS("sum")) {
        jv *l = undef_fail_or_list(r, line, v);
        jv *attr = arg(a, 0, "attribute"), *start = arg(a, 1, "start");
        bool is_f = start && start->t == JV_FLOAT;
        int64_t si = start && !is_f ? want_int(r, line, start, "start") : 0;
        double sf = is_f ? start->u.f : 0;
        for (int i = 0; i < l->u.l.n; i++) {
            jv *x = attr ? attr_path(r, line, l->u.l.a[i], want_str(r, line, attr, "attribute")) : l->u.l.a[i];
            if (x->t == JV_FLOAT) { if (!is_f) { sf = (double)si; is_f = true; } sf += x->u.f; }
            else if (is_f) sf += (double)want_int(r, line, x, "sum item");
            else if (__builtin_add_overflow(si, want_int(r, line, x, "sum item"), &si)) jx_fail(r, line, "integer overflow in sum");
        }
        return is_f ? jx_float(r, sf) : jx_int(r, si);
    }
    if (IS("format")) {
        jstr fmt = jx_to_str(r, v);
        jv *t = jx_list(r, a->n_args, true);
        for (int i = 0; i < a->n_args; i++) t->u.l.a[i] = a->args[i];
        return percent_format(r, line, fmt, t);
    }
    if (IS("wordcount")) {
        jstr s = jx_to_str(r, v);
        int64_t k = 0;
        bool in = false;
        for (size_t i = 0; i < s.n;) {
            int32_t c;
            i += cp_at(s.s + i, s.n - i, &c);
            utf8proc_category_t cat = utf8proc_category(c);
            bool w = c == '_' || (cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO) ||
                     (cat >= UTF8PROC_CATEGORY_ND && cat <= UTF8PROC_CATEGORY_NO) || cat == UTF8PROC_CATEGORY_MN;
            if (w && !in) k++;
            in = w;
        }
        return jx_int(r, k);
    }
#undef IS
    jx_fail(r, line, "filter '%s' is not implemented", name);
}

// ---- global functions ------------------------------------------------------------------------

static const char *const FUNCS[] = { "range", "namespace", "dict", "raise_exception", "strftime_now" };

int jx_func_find(const char *name, size_t n) {
    for (size_t i = 0; i < QT_ARRAY_LEN(FUNCS); i++)
        if (strlen(FUNCS[i]) == n && memcmp(FUNCS[i], name, n) == 0) return (int)i;
    return -1;
}

jv *jx_func_call(jrender *r, int line, int fn, const jargs *a) {
    const char *name = FUNCS[fn];
    if (!strcmp(name, "range")) {
        if (a->n_kw) jx_fail(r, line, "range() takes no keyword arguments");
        if (a->n_args < 1 || a->n_args > 3) jx_fail(r, line, "range expected 1 to 3 arguments, got %d", a->n_args);
        int64_t start = 0, stop, step = 1;
        if (a->n_args == 1) stop = want_int(r, line, a->args[0], "range argument");
        else {
            start = want_int(r, line, a->args[0], "range argument");
            stop = want_int(r, line, a->args[1], "range argument");
            if (a->n_args == 3) step = want_int(r, line, a->args[2], "range argument");
        }
        if (step == 0) jx_fail(r, line, "range() arg 3 must not be zero");
        double cnt = step > 0 ? ceil(((double)stop - (double)start) / (double)step) : ceil(((double)start - (double)stop) / (double)-step);
        if (cnt < 0) cnt = 0;
        if (cnt > MAX_RANGE) jx_fail(r, line, "Range too big. The sandbox blocks ranges larger than MAX_RANGE (%d).", MAX_RANGE);
        jv *l = jx_list(r, (int)cnt, false);
        for (int i = 0; i < (int)cnt; i++) l->u.l.a[i] = jx_int(r, start + (int64_t)i * step);
        return l;
    }
    if (!strcmp(name, "namespace") || !strcmp(name, "dict")) {
        jv *d = jx_dict(r);
        if (name[0] == 'n') d->t = JV_NS;
        if (a->n_args > 1) jx_fail(r, line, "%s expected at most 1 positional argument", name);
        if (a->n_args == 1) {
            jv *src = a->args[0];
            if (src->t != JV_DICT && src->t != JV_NS) jx_fail(r, line, "%s(): the argument must be a mapping", name);
            for (int i = 0; i < src->u.d->n; i++) jx_dict_set(r, d->u.d, src->u.d->k[i], src->u.d->v[i]);
        }
        for (int i = 0; i < a->n_kw; i++) jx_dict_set(r, d->u.d, jx_str(r, a->kw[i].s, a->kw[i].n), a->kwv[i]);
        return d;
    }
    if (!strcmp(name, "raise_exception")) {
        jv *m = arg(a, 0, "message");
        jstr s = m ? jx_to_str(r, m) : (jstr){ "", 0 };
        jx_fail(r, 0, "%.*s", (int)QT_MIN(s.n, 400), s.s);
    }
    if (!strcmp(name, "strftime_now")) {
        jv *f = arg(a, 0, "format");
        if (!f) jx_fail(r, line, "strftime_now needs a format");
        jstr fmt = want_str(r, line, f, "strftime format");
        if (fmt.n > 256) jx_fail(r, line, "strftime format too long");
        char cfmt[260], out[1024];
        memcpy(cfmt, fmt.s, fmt.n);
        cfmt[fmt.n] = 0;
        time_t t = (time_t)r->now;
        struct tm tm;
        localtime_r(&t, &tm);
        size_t k = strftime(out, sizeof(out), cfmt, &tm);
        return jx_str(r, out, k);
    }
    jx_fail(r, line, "function '%s' is not implemented", name);
}

// ---- methods ---------------------------------------------------------------------------------

static const char *const STR_METHODS[] = {
    "strip", "lstrip", "rstrip", "split", "rsplit", "startswith", "endswith", "upper", "lower", "title", "capitalize",
    "replace", "find", "rfind", "count", "join", "splitlines", "isdigit", "isalpha", "isalnum", "isspace", "islower",
    "isupper", "format", NULL,
};
static const char *const DICT_METHODS[] = { "items", "keys", "values", "get", NULL };
// the mutating ones exist (jinja2's sandbox refuses them when called)
static const char *const LIST_METHODS[] = { "index", "count", "append", "pop", "insert", "extend", "remove", "sort",
                                            "reverse", "clear", NULL };

static bool in_list(const char *const *l, const char *name, size_t n) {
    for (int i = 0; l[i]; i++)
        if (strlen(l[i]) == n && memcmp(l[i], name, n) == 0) return true;
    return false;
}

bool jx_has_method(const jv *self, const char *name, size_t n) {
    if (self->t == JV_STR) return in_list(STR_METHODS, name, n);
    if (self->t == JV_DICT) return in_list(DICT_METHODS, name, n);
    if (self->t == JV_LIST) return in_list(LIST_METHODS, name, n);
    return false;
}

static bool str_all(jstr s, int kind) {
    if (s.n == 0) return false;
    for (size_t i = 0; i < s.n;) {
        int32_t c;
        size_t k = cp_at(s.s + i, s.n - i, &c);
        utf8proc_category_t cat = utf8proc_category(c);
        bool letter = cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO;
        bool digit = cat == UTF8PROC_CATEGORY_ND;
        bool ok = kind == 0 ? digit : kind == 1 ? letter : kind == 2 ? (letter || digit || cat == UTF8PROC_CATEGORY_NL || cat == UTF8PROC_CATEGORY_NO)
                : jx_space_len(s.s + i, s.n - i) > 0;
        if (!ok) return false;
        i += k;
    }
    return true;
}

jv *jx_method_call(jrender *r, int line, jv *self, const char *name, const jargs *a) {
#define IS(s) (strcmp(name, s) == 0)
    if (self->t == JV_LOOP) {
        if (IS("cycle")) {
            if (a->n_args == 0) jx_fail(r, line, "no items for cycling given");
            return a->args[self->u.loop->index0 % a->n_args];
        }
        jx_fail(r, line, "loop.%s() is not supported", name);
    }
    if (self->t == JV_DICT) {
        const jdict *d = self->u.d;
        if (IS("get")) {
            jv *k = arg(a, 0, "key"), *def = arg(a, 1, "default");
            if (!k) jx_fail(r, line, "get expected at least 1 argument");
            jv *v = jx_dict_find(d, k);
            return v ? v : def ? def : jx_none();
        }
        jv *l = jx_list(r, d->n, false);
        for (int i = 0; i < d->n; i++) {
            if (IS("keys")) l->u.l.a[i] = d->k[i];
            else if (IS("values")) l->u.l.a[i] = d->v[i];
            else {
                jv *t = jx_list(r, 2, true);
                t->u.l.a[0] = d->k[i];
                t->u.l.a[1] = d->v[i];
                l->u.l.a[i] = t;
            }
        }
        return l;
    }
    if (self->t == JV_LIST) {
        jv *x = arg(a, 0, "value");
        if (IS("index") || IS("count")) {
            if (!x) jx_fail(r, line, "%s expected 1 argument", name);
            int64_t k = 0;
            for (int i = 0; i < self->u.l.n; i++) {
                if (!jx_equal(self->u.l.a[i], x)) continue;
                if (IS("index")) return jx_int(r, i);
                k++;
            }
            if (IS("index")) jx_fail(r, line, "value is not in list");
            return jx_int(r, k);
        }
        jx_fail(r, line, "access to attribute '%s' of 'list' object is unsafe", name);
    }
    jstr s = self->u.s;
    if (IS("strip") || IS("lstrip") || IS("rstrip")) {
        jv *c = arg(a, 0, "chars");
        jstr cs;
        if (c && c->t != JV_NONE) cs = want_str(r, line, c, "chars");
        return strip(r, s, c && c->t != JV_NONE ? &cs : NULL, name[0] != 'r', name[0] != 'l');
    }
    if (IS("split") || IS("rsplit")) {
        jv *sep = arg(a, 0, "sep"), *mx = arg(a, 1, "maxsplit");
        return split(r, line, s, sep, mx ? want_int(r, line, mx, "maxsplit") : -1, name[0] == 'r');
    }
    if (IS("startswith") || IS("endswith")) {
        jv *p = arg(a, 0, "prefix");
        if (!p) jx_fail(r, line, "%s takes at least 1 argument", name);
        return jx_bool(starts_or_ends(r, line, s, p, name[0] == 'e'));
    }
    if (IS("upper")) return change_case(r, s, CASE_UPPER);
    if (IS("lower")) return change_case(r, s, CASE_LOWER);
    if (IS("title")) return change_case(r, s, CASE_TITLE);
    if (IS("capitalize")) return change_case(r, s, CASE_CAPITALIZE);
    if (IS("replace")) {
        jv *o = arg(a, 0, "old"), *nw = arg(a, 1, "new"), *c = arg(a, 2, "count");
        if (!o || !nw) jx_fail(r, line, "replace expected at least 2 arguments");
        return replace(r, s, want_str(r, line, o, "old"), want_str(r, line, nw, "new"), c ? want_int(r, line, c, "count") : -1);
    }
    if (IS("find") || IS("rfind")) {
        jv *x = arg(a, 0, "sub");
        if (!x) jx_fail(r, line, "%s expected 1 argument", name);
        jstr sub = want_str(r, line, x, "substring");
        const char *hit = NULL;
        if (IS("find")) hit = memmem(s.s, s.n, sub.s, sub.n);
        else if (sub.n <= s.n)
            for (size_t j = s.n - sub.n + 1; j-- > 0;)
                if (memcmp(s.s + j, sub.s, sub.n) == 0) { hit = s.s + j; break; }
        if (sub.n == 0 && !hit) hit = IS("find") ? s.s : s.s + s.n;
        return jx_int(r, hit ? (int64_t)jx_utf8_len(s.s, (size_t)(hit - s.s)) : -1);
    }
    if (IS("count")) {
        jv *x = arg(a, 0, "sub");
        if (!x) jx_fail(r, line, "count expected 1 argument");
        return jx_int(r, count_sub(s, want_str(r, line, x, "substring")));
    }
    if (IS("join")) {
        jv *x = arg(a, 0, "iterable");
        if (!x) jx_fail(r, line, "join expected 1 argument");
        jv *l = jx_iter_list(r, line, x);
        jbuf b = { 0 };
        jx_buf_put(r, &b, "", 0);
        for (int i = 0; i < l->u.l.n; i++) {
            if (i) jx_buf_put(r, &b, s.s, s.n);
            jstr it = l->u.l.a[i]->t == JV_STR ? l->u.l.a[i]->u.s : (jx_fail(r, line, "sequence item %d: expected str instance, %s found", i, jx_type_name(l->u.l.a[i])), (jstr){ 0 });
            jx_buf_put(r, &b, it.s, it.n);
        }
        return str_val(r, &b);
    }
    if (IS("splitlines")) {
        jv *k = arg(a, 0, "keepends");
        return splitlines(r, s, k && jx_truthy(k));
    }
    if (IS("isdigit")) return jx_bool(str_all(s, 0));
    if (IS("isalpha")) return jx_bool(str_all(s, 1));
    if (IS("isalnum")) return jx_bool(str_all(s, 2));
    if (IS("isspace")) return jx_bool(str_all(s, 3));
    if (IS("islower") || IS("isupper")) return jx_bool(all_cased(r, s, IS("isupper")));
    if (IS("format")) return brace_format(r, line, s, a);
#undef IS
    jx_fail(r, line, "str.%s() is not implemented", name);
}
