// jinja-parse.c: the lexer and parser of the Jinja engine (jinja.h). The
// lexer follows jinja2/lexer.py (3.1) with transformers' settings: newlines
// normalised and one trailing newline dropped, trim_blocks (the first newline
// after a block or comment tag goes), lstrip_blocks (spaces and tabs before a
// block or comment tag on its own line go), "-" and "+" on tags, brackets
// balanced inside tags, string escapes as Python's unicode-escape. The parser
// follows jinja2/parser.py's precedence: conditional expression, or, and, not,
// comparisons (chained, in, not in), + -, ~, * / // %, **, unary - +, then
// postfix subscripts, attributes, calls, filters and tests.
// Statements: if/elif/else, for (unpacking, an "if" filter, else), set (also
// namespace attributes, tuples, block set), macro, with, filter blocks, break,
// continue, raw, and transformers' generation block. Not here: extends,
// block, include, import, call blocks, recursive loops, line statements.
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "template/jinja-impl.h"

typedef enum {
    TK_DATA, TK_VAR_BEGIN, TK_VAR_END, TK_BLOCK_BEGIN, TK_BLOCK_END, TK_NAME, TK_STRING, TK_INT, TK_FLOAT, TK_OP, TK_EOF,
} tk_kind;

typedef struct {
    uint8_t kind;
    int line;
    const char *s;    // TK_NAME, TK_OP: the source text; TK_STRING, TK_DATA: the value (arena)
    size_t n;
    int64_t i;
    double f;
} tok;

typedef struct {
    jarena *mem;
    const char *src;  // normalised source (NUL-terminated)
    size_t n;
    tok *toks;
    int n_toks, cap_toks;
    int pos;          // parser position in toks
    int loop_depth;   // for loops around the statement being parsed (break / continue)
    int depth;        // recursion of the parser (nested expressions and statements)
    char *err;
    size_t err_cap;
    jmp_buf fail;
} parser;

static _Noreturn void pfail(parser *p, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static _Noreturn void pfail(parser *p, int line, const char *fmt, ...) {
    int k = snprintf(p->err, p->err_cap, "line %d: ", line);
    va_list ap;
    va_start(ap, fmt);
    if (k >= 0 && (size_t)k < p->err_cap) vsnprintf(p->err + k, p->err_cap - (size_t)k, fmt, ap);
    va_end(ap);
    longjmp(p->fail, 1);
}

static void *palloc(parser *p, size_t n) {
    void *q = ja_alloc(p->mem, n);
    if (!q) pfail(p, 0, "the template is too large");
    return q;
}

// ---- lexer -----------------------------------------------------------------

size_t jx_space_len(const char *s, size_t n) {
    if (n == 0) return 0;
    unsigned char c = (unsigned char)s[0];
    if (c == ' ' || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f)) return 1;
    if (c < 0x80 || n < 2) return 0;
    unsigned char c1 = (unsigned char)s[1];
    if (c == 0xc2) return c1 == 0x85 || c1 == 0xa0 ? 2 : 0;
    if (n < 3) return 0;
    unsigned char c2 = (unsigned char)s[2];
    if (c == 0xe1 && c1 == 0x9a && c2 == 0x80) return 3;                            // U+1680
    if (c == 0xe2 && c1 == 0x80 && (c2 <= 0x8a || c2 == 0xa8 || c2 == 0xa9 || c2 == 0xaf)) return 3;  // U+2000..200A, 2028, 2029, 202F
    if (c == 0xe2 && c1 == 0x81 && c2 == 0x9f) return 3;                            // U+205F
    if (c == 0xe3 && c1 == 0x80 && c2 == 0x80) return 3;                            // U+3000
    return 0;
}

// Length of s[0..n) without its trailing (Unicode) whitespace: Python's rstrip().
size_t jx_rstrip_len(const char *s, size_t n) {
    size_t keep = 0, i = 0;
    while (i < n) {
        size_t k = jx_space_len(s + i, n - i);
        if (k) { i += k; continue; }
        i++;
        while (i < n && ((unsigned char)s[i] & 0xc0) == 0x80) i++;
        keep = i;
    }
    return keep;
}

static size_t skip_space(const char *s, size_t n, size_t i) {
    size_t k;
    while (i < n && (k = jx_space_len(s + i, n - i))) i += k;
    return i;
}

static void emit(parser *p, tk_kind kind, int line, const char *s, size_t n) {
    if (p->n_toks == p->cap_toks) {
        p->cap_toks = p->cap_toks ? 2 * p->cap_toks : 256;
        p->toks = qt_realloc(p->toks, (size_t)p->cap_toks * sizeof(tok));
    }
    p->toks[p->n_toks++] = (tok){ .kind = (uint8_t)kind, .line = line, .s = s, .n = n };
}

static int count_nl(const char *s, size_t n) {
    int k = 0;
    for (size_t i = 0; i < n; i++) k += s[i] == '\n';
    return k;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static size_t put_utf8(char *o, uint32_t cp) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xc0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 0x3f)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | (cp >> 12)); o[1] = (char)(0x80 | ((cp >> 6) & 0x3f)); o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | (cp >> 18)); o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f)); o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

// A string literal's body s[0..n) decoded as Python's unicode-escape.
static void decode_string(parser *p, int line, const char *s, size_t n, tok *t) {
    char *o = palloc(p, n + 1);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\\' || i + 1 >= n) { o[k++] = s[i]; continue; }
        char c = s[++i];
        int digits = 0;
        switch (c) {
        case '\n': break;
        case '\\': o[k++] = '\\'; break;
        case '\'': o[k++] = '\''; break;
        case '"': o[k++] = '"'; break;
        case 'a': o[k++] = '\a'; break;
        case 'b': o[k++] = '\b'; break;
        case 'f': o[k++] = '\f'; break;
        case 'n': o[k++] = '\n'; break;
        case 'r': o[k++] = '\r'; break;
        case 't': o[k++] = '\t'; break;
        case 'v': o[k++] = '\v'; break;
        case 'x': digits = 2; break;
        case 'u': digits = 4; break;
        case 'U': digits = 8; break;
        default:
            if (c >= '0' && c <= '7') {
                uint32_t v = 0;
                int m = 0;
                while (m < 3 && i < n && s[i] >= '0' && s[i] <= '7') { v = v * 8 + (uint32_t)(s[i] - '0'); i++; m++; }
                i--;
                k += put_utf8(o + k, v);
            } else {   // unknown escapes stay as written
                o[k++] = '\\';
                o[k++] = c;
            }
        }
        if (digits) {
            uint32_t v = 0;
            for (int d = 0; d < digits; d++) {
                int h = i + 1 + (size_t)d < n ? hexval(s[i + 1 + (size_t)d]) : -1;
                if (h < 0) pfail(p, line, "truncated \\%c escape in a string", c);
                v = v * 16 + (uint32_t)h;
            }
            if (v > 0x10ffff) pfail(p, line, "illegal Unicode character in a string");
            i += (size_t)digits;
            k += put_utf8(o + k, v);   // (a decoded code point never takes more bytes than its escape)
        }
    }
    o[k] = 0;
    t->s = o;
    t->n = k;
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static bool is_name_char(char c) { return is_name_start(c) || is_digit(c); }

// digits with single underscores between them: (\d+_)*\d+ ; returns the end or i when none
static size_t scan_digits(const char *s, size_t n, size_t i) {
    size_t j = i;
    if (j >= n || !is_digit(s[j])) return i;
    for (;;) {
        while (j < n && is_digit(s[j])) j++;
        if (j + 1 < n && s[j] == '_' && is_digit(s[j + 1])) { j++; continue; }
        return j;
    }
}

// Number at s+i: float_re, else integer_re. Returns the end (i when none).
static size_t scan_number(parser *p, int line, const char *s, size_t n, size_t i, tok *t) {
    if (i > 0 && s[i - 1] == '.') goto integer;   // float_re's (?<!\.)
    size_t j = scan_digits(s, n, i);
    if (j == i) return i;
    size_t e = j;
    bool is_float = false;
    if (e < n && s[e] == '.') {
        size_t f = scan_digits(s, n, e + 1);
        if (f > e + 1) { e = f; is_float = true; }
    }
    if (e < n && (s[e] == 'e' || s[e] == 'E')) {
        size_t x = e + 1;
        if (x < n && (s[x] == '+' || s[x] == '-')) x++;
        size_t f = scan_digits(s, n, x);
        if (f > x) { e = f; is_float = true; }
    }
    if (is_float) {
        char buf[128];
        size_t k = 0;
        for (size_t q = i; q < e && k + 1 < sizeof(buf); q++) if (s[q] != '_') buf[k++] = s[q];
        buf[k] = 0;
        t->kind = TK_FLOAT;
        t->f = strtod(buf, NULL);
        return e;
    }
integer:;
    // 0b.. 0o.. 0x.., [1-9](_?\d)*, 0(_?0)*
    size_t j2 = i;
    int base = 10;
    if (i + 1 < n && s[i] == '0' && strchr("bBoOxX", s[i + 1]) && s[i + 1]) {
        base = (s[i + 1] | 0x20) == 'b' ? 2 : (s[i + 1] | 0x20) == 'o' ? 8 : 16;
        j2 = i + 2;
    } else if (!is_digit(s[i])) {
        return i;
    }
    uint64_t v = 0;
    bool overflow = false, any = false;
    size_t q = j2;
    for (; q < n; q++) {
        if (s[q] == '_' && q + 1 < n && hexval(s[q + 1]) >= 0 && hexval(s[q + 1]) < base && (q > j2 || base != 10)) continue;
        int h = hexval(s[q]);
        if (h < 0 || h >= base) break;
        if (base == 10 && !any && h == 0 && q == i) {   // 0(_?0)*: only zeros may follow
            any = true;
            size_t z = q + 1;
            while (z < n && (s[z] == '0' || (s[z] == '_' && z + 1 < n && s[z + 1] == '0'))) z++;
            q = z;
            break;
        }
        if (v > (UINT64_MAX - (uint64_t)h) / (uint64_t)base) overflow = true;
        v = v * (uint64_t)base + (uint64_t)h;
        any = true;
    }
    if (!any) return i;
    if (overflow || v > (uint64_t)INT64_MAX) pfail(p, line, "integer literal too large");
    t->kind = TK_INT;
    t->i = (int64_t)v;
    return q;
}

static const char *const OPS[] = {
    "//", "**", "==", "!=", ">=", "<=", "+", "-", "/", "*", "%", "~", "[", "]", "(", ")", "{", "}", ">", "<", "=",
    ".", ":", "|", ",", ";",
};

// Tokens inside {{ }} or {% %} from src[i]; returns the position after the end tag.
static size_t lex_tag(parser *p, size_t i, int *line, bool block, bool *line_starting) {
    const char *s = p->src;
    size_t n = p->n;
    int depth = 0;
    char stack[256];
    for (;;) {
        size_t j = skip_space(s, n, i);
        *line += count_nl(s + i, j - i);
        i = j;
        if (i >= n) pfail(p, *line, "unexpected end of template inside a %s tag", block ? "{% %}" : "{{ }}");
        if (depth == 0) {
            const char *end = block ? "%}" : "}}";
            size_t e = 0;
            bool minus = false;
            if (s[i] == '-' && strncmp(s + i + 1, end, 2) == 0) { e = i + 3; minus = true; }
            else if (block && s[i] == '+' && strncmp(s + i + 1, end, 2) == 0) e = i + 3;
            else if (strncmp(s + i, end, 2) == 0) {
                e = i + 2;
                if (block && e < n && s[e] == '\n') e++;   // trim_blocks
            }
            if (e) {
                if (minus) {
                    size_t f = skip_space(s, n, e);
                    emit(p, block ? TK_BLOCK_END : TK_VAR_END, *line, NULL, 0);
                    *line += count_nl(s + e, f - e);
                    e = f;
                } else {
                    emit(p, block ? TK_BLOCK_END : TK_VAR_END, *line, NULL, 0);
                    *line += count_nl(s + i, e - i);
                }
                *line_starting = s[e - 1] == '\n';
                return e;
            }
        }
        tok t = { .line = *line };
        size_t e = scan_number(p, *line, s, n, i, &t);
        if (e > i) {
            emit(p, (tk_kind)t.kind, *line, s + i, e - i);
            p->toks[p->n_toks - 1].i = t.i;
            p->toks[p->n_toks - 1].f = t.f;
            i = e;
            continue;
        }
        if (is_name_start(s[i])) {
            e = i;
            while (e < n && is_name_char(s[e])) e++;
            emit(p, TK_NAME, *line, s + i, e - i);
            i = e;
            continue;
        }
        if (s[i] == '\'' || s[i] == '"') {
            char q = s[i];
            e = i + 1;
            while (e < n && s[e] != q) e += s[e] == '\\' && e + 1 < n ? 2 : 1;
            if (e >= n) pfail(p, *line, "unterminated string");
            decode_string(p, *line, s + i + 1, e - i - 1, &t);
            emit(p, TK_STRING, *line, t.s, t.n);
            *line += count_nl(s + i, e - i);
            i = e + 1;
            continue;
        }
        size_t k;
        for (k = 0; k < QT_ARRAY_LEN(OPS); k++)
            if (strncmp(s + i, OPS[k], strlen(OPS[k])) == 0) break;
        if (k == QT_ARRAY_LEN(OPS)) pfail(p, *line, "unexpected character '%c'", s[i]);
        char c = OPS[k][0];
        if (c == '(' || c == '[' || c == '{') {
            if (depth == (int)sizeof(stack)) pfail(p, *line, "brackets nested too deeply");
            stack[depth++] = c == '(' ? ')' : c == '[' ? ']' : '}';
        } else if (c == ')' || c == ']' || c == '}') {
            if (depth == 0) pfail(p, *line, "unexpected '%c'", c);
            if (stack[--depth] != c) pfail(p, *line, "unexpected '%c', expected '%c'", c, stack[depth]);
        }
        emit(p, TK_OP, *line, s + i, strlen(OPS[k]));
        i += strlen(OPS[k]);
    }
}

static void lex(parser *p) {
    const char *s = p->src;
    size_t n = p->n, i = 0;
    int line = 1;
    bool line_starting = true;
    while (i < n) {
        // the next tag start
        size_t k = i;
        while (k + 1 < n && !(s[k] == '{' && (s[k + 1] == '{' || s[k + 1] == '%' || s[k + 1] == '#'))) k++;
        if (k + 1 >= n) {
            emit(p, TK_DATA, line, s + i, n - i);
            line += count_nl(s + i, n - i);
            break;
        }
        char kind = s[k + 1];
        char sign = k + 2 < n && (s[k + 2] == '-' || s[k + 2] == '+') ? s[k + 2] : 0;
        size_t text_n = k - i;
        const char *text = s + i;
        if (sign == '-') {
            text_n = jx_rstrip_len(text, text_n);
        } else if (sign != '+' && kind != '{') {   // lstrip_blocks
            size_t l = text_n;
            while (l > 0 && text[l - 1] != '\n') l--;
            if ((l > 0 || line_starting) && l < text_n && skip_space(text, text_n, l) == text_n) text_n = l;
        }
        if (text_n) emit(p, TK_DATA, line, text, text_n);
        line += count_nl(s + i, k - i);
        size_t body = k + 2 + (sign ? 1 : 0);
        if (kind == '#') {
            // (.*?)((?:\+#}|\-#}\s*|#}\n?))
            size_t e = body;
            while (e + 1 < n && !(s[e] == '#' && s[e + 1] == '}')) e++;
            if (e + 1 >= n) pfail(p, line, "missing end of comment tag");
            size_t end = e + 2;
            if (e > body && s[e - 1] == '-') end = skip_space(s, n, end);
            else if (!(e > body && s[e - 1] == '+') && end < n && s[end] == '\n') end++;
            line += count_nl(s + k, end - k);
            line_starting = s[end - 1] == '\n';
            i = end;
            continue;
        }
        if (kind == '%') {   // {% raw %} ... {% endraw %}
            size_t j = skip_space(s, n, body);
            if (strncmp(s + j, "raw", 3) == 0 && !is_name_char(s[j + 3])) {
                size_t e = skip_space(s, n, j + 3), after;
                if (s[e] == '-' && strncmp(s + e + 1, "%}", 2) == 0) after = skip_space(s, n, e + 3);
                else if (strncmp(s + e, "%}", 2) == 0) after = e + 2;
                else pfail(p, line, "expected '%%}' after raw");
                // find {%[-+]? endraw ... %}
                size_t q = after;
                for (;; q++) {
                    if (q + 1 >= n) pfail(p, line, "missing end of raw directive");
                    if (s[q] != '{' || s[q + 1] != '%') continue;
                    size_t r = q + 2;
                    char rsign = s[r] == '-' || s[r] == '+' ? s[r] : 0;
                    if (rsign) r++;
                    r = skip_space(s, n, r);
                    if (strncmp(s + r, "endraw", 6) != 0) continue;
                    r = skip_space(s, n, r + 6);
                    size_t end;
                    if ((s[r] == '-' || s[r] == '+') && strncmp(s + r + 1, "%}", 2) == 0) {
                        end = r + 3;
                        if (s[r] == '-') end = skip_space(s, n, end);
                    } else if (strncmp(s + r, "%}", 2) == 0) {
                        end = r + 2;
                        if (end < n && s[end] == '\n') end++;
                    } else {
                        continue;
                    }
                    size_t tn = q - after;
                    if (rsign == '-') tn = jx_rstrip_len(s + after, tn);
                    else if (rsign != '+') {
                        size_t l = tn;
                        while (l > 0 && s[after + l - 1] != '\n') l--;
                        if (l > 0 && skip_space(s + after, tn, l) == tn) tn = l;
                    }
                    if (tn) emit(p, TK_DATA, line, s + after, tn);
                    line += count_nl(s + k, end - k);
                    line_starting = s[end - 1] == '\n';
                    i = end;
                    break;
                }
                continue;
            }
        }
        emit(p, kind == '{' ? TK_VAR_BEGIN : TK_BLOCK_BEGIN, line, NULL, 0);
        line_starting = false;
        i = lex_tag(p, body, &line, kind == '%', &line_starting);
    }
    emit(p, TK_EOF, line, NULL, 0);
}

// ---- parser ----------------------------------------------------------------------

static tok *cur(parser *p) { return &p->toks[p->pos]; }
static tok *peek(parser *p, int k) {
    int i = p->pos + k;
    return &p->toks[i < p->n_toks ? i : p->n_toks - 1];
}
static bool tok_is(const tok *t, tk_kind kind, const char *text) {
    return t->kind == kind && (!text || (t->n == strlen(text) && memcmp(t->s, text, t->n) == 0));
}
static bool at_op(parser *p, const char *op) { return tok_is(cur(p), TK_OP, op); }
static bool at_name(parser *p, const char *name) { return tok_is(cur(p), TK_NAME, name); }
static bool skip_op(parser *p, const char *op) {
    if (!at_op(p, op)) return false;
    p->pos++;
    return true;
}
static bool skip_name(parser *p, const char *name) {
    if (!at_name(p, name)) return false;
    p->pos++;
    return true;
}

static const char *tok_desc(const tok *t, char *buf, size_t cap) {
    switch (t->kind) {
    case TK_EOF: return "end of template";
    case TK_BLOCK_END: return "end of statement block";
    case TK_VAR_END: return "end of print statement";
    case TK_DATA: return "template data";
    case TK_STRING: return "string";
    default: snprintf(buf, cap, "'%.*s'", (int)QT_MIN(t->n, 40), t->s); return buf;
    }
}

static void expect_op(parser *p, const char *op) {
    if (!skip_op(p, op)) {
        char b[64];
        pfail(p, cur(p)->line, "expected '%s', got %s", op, tok_desc(cur(p), b, sizeof(b)));
    }
}

static jstr expect_name(parser *p) {
    tok *t = cur(p);
    if (t->kind != TK_NAME) {
        char b[64];
        pfail(p, t->line, "expected a name, got %s", tok_desc(t, b, sizeof(b)));
    }
    p->pos++;
    return (jstr){ t->s, t->n };
}

static void expect_kind(parser *p, tk_kind kind) {
    if (cur(p)->kind != kind) {
        char b[64];
        pfail(p, cur(p)->line, "expected %s, got %s", kind == TK_BLOCK_END ? "'%}'" : "'}}'", tok_desc(cur(p), b, sizeof(b)));
    }
    p->pos++;
}

static jnode *node(parser *p, jnode_kind kind, int line, int n_kids) {
    jnode *x = palloc(p, sizeof(jnode));
    x->kind = (uint8_t)kind;
    x->line = line;
    x->n_kids = n_kids;
    if (n_kids) x->kids = palloc(p, sizeof(jnode *) * (size_t)n_kids);
    return x;
}

// Growable child lists while parsing, in the arena (a failed parse longjmps
// out and frees everything with the arena).
typedef struct {
    jnode **a;
    jstr *names;
    int n, cap;
} kidlist;

static void kid_add(parser *p, kidlist *k, jnode *x, jstr name) {
    if (k->n == k->cap) {
        int cap = k->cap ? 2 * k->cap : 8;
        jnode **a = palloc(p, sizeof(jnode *) * (size_t)cap);
        jstr *names = palloc(p, sizeof(jstr) * (size_t)cap);
        if (k->n) {
            memcpy(a, k->a, sizeof(jnode *) * (size_t)k->n);
            memcpy(names, k->names, sizeof(jstr) * (size_t)k->n);
        }
        k->a = a;
        k->names = names;
        k->cap = cap;
    }
    k->a[k->n] = x;
    k->names[k->n++] = name;
}

static void kid_move(kidlist *k, jnode *x, bool with_names) {
    x->n_kids = k->n;
    x->kids = k->a;
    if (with_names) {
        x->n_names = k->n;
        x->names = k->names;
    }
}

static jv *lit_value(parser *p, jv_type t) {
    jv *v = palloc(p, sizeof(jv));
    v->t = (uint8_t)t;
    return v;
}

static jnode *parse_expr(parser *p, bool with_condexpr);
static jnode *parse_tuple(parser *p, bool with_condexpr, bool explicit_parens, const char *const *end_names);
static jnode *parse_unary(parser *p, bool with_filter);
static jnode *parse_or(parser *p);

static const char *const NO_END[] = { NULL };

#define MAX_PARSE_DEPTH 300
static void enter(parser *p) {
    if (++p->depth > MAX_PARSE_DEPTH) pfail(p, cur(p)->line, "the template nests more than %d levels deep", MAX_PARSE_DEPTH);
}

static bool at_tuple_end(parser *p, const char *const *end_names) {
    tok *t = cur(p);
    if (t->kind == TK_VAR_END || t->kind == TK_BLOCK_END || t->kind == TK_EOF) return true;
    if (tok_is(t, TK_OP, ")") || tok_is(t, TK_OP, "]") || tok_is(t, TK_OP, "}") || tok_is(t, TK_OP, "=")) return true;
    for (int i = 0; end_names[i]; i++)
        if (tok_is(t, TK_NAME, end_names[i])) return true;
    return false;
}

// Call arguments after "(": positional, name=value, *args, **kwargs (the
// last two are refused: no template in the corpus needs them).
static void parse_call_args(parser *p, kidlist *args) {
    expect_op(p, "(");
    bool first = true;
    while (!at_op(p, ")")) {
        if (!first) {
            expect_op(p, ",");
            if (at_op(p, ")")) break;
        }
        first = false;
        if (at_op(p, "*") || at_op(p, "**")) pfail(p, cur(p)->line, "*args and **kwargs in calls are not supported");
        jstr kw = { NULL, 0 };
        if (cur(p)->kind == TK_NAME && tok_is(peek(p, 1), TK_OP, "=")) {
            kw = expect_name(p);
            p->pos++;
        }
        kid_add(p, args, parse_expr(p, true), kw);
    }
    p->pos++;
}

static jnode *parse_primary(parser *p) {
    tok *t = cur(p);
    int line = t->line;
    jnode *x;
    switch (t->kind) {
    case TK_NAME: {
        p->pos++;
        const char *s = t->s;
        size_t n = t->n;
        if ((n == 4 && (!memcmp(s, "true", 4) || !memcmp(s, "True", 4))) ||
            (n == 5 && (!memcmp(s, "false", 5) || !memcmp(s, "False", 5)))) {
            x = node(p, JN_LIT, line, 0);
            x->lit = lit_value(p, JV_BOOL);
            x->lit->u.b = n == 4;
            return x;
        }
        if (n == 4 && (!memcmp(s, "none", 4) || !memcmp(s, "None", 4))) {
            x = node(p, JN_LIT, line, 0);
            x->lit = lit_value(p, JV_NONE);
            return x;
        }
        x = node(p, JN_NAME, line, 0);
        x->name = (jstr){ s, n };
        return x;
    }
    case TK_STRING: {
        // adjacent strings concatenate
        size_t total = 0;
        int k = p->pos;
        while (p->toks[k].kind == TK_STRING) total += p->toks[k++].n;
        char *buf = palloc(p, total + 1);
        size_t o = 0;
        while (cur(p)->kind == TK_STRING) {
            memcpy(buf + o, cur(p)->s, cur(p)->n);
            o += cur(p)->n;
            p->pos++;
        }
        x = node(p, JN_LIT, line, 0);
        x->lit = lit_value(p, JV_STR);
        x->lit->u.s = (jstr){ buf, total };
        return x;
    }
    case TK_INT:
    case TK_FLOAT:
        p->pos++;
        x = node(p, JN_LIT, line, 0);
        x->lit = lit_value(p, t->kind == TK_INT ? JV_INT : JV_FLOAT);
        if (t->kind == TK_INT) x->lit->u.i = t->i; else x->lit->u.f = t->f;
        return x;
    case TK_OP:
        if (skip_op(p, "(")) {
            x = parse_tuple(p, true, true, NO_END);
            expect_op(p, ")");
            return x;
        }
        if (skip_op(p, "[")) {
            kidlist k = { 0 };
            while (!at_op(p, "]")) {
                if (k.n) {
                    expect_op(p, ",");
                    if (at_op(p, "]")) break;
                }
                kid_add(p, &k, parse_expr(p, true), (jstr){ 0 });
            }
            p->pos++;
            x = node(p, JN_LIST, line, 0);
            kid_move(&k, x, false);
            return x;
        }
        if (skip_op(p, "{")) {
            kidlist k = { 0 };   // key, value, key, value ...
            while (!at_op(p, "}")) {
                if (k.n) {
                    expect_op(p, ",");
                    if (at_op(p, "}")) break;
                }
                kid_add(p, &k, parse_expr(p, true), (jstr){ 0 });
                expect_op(p, ":");
                kid_add(p, &k, parse_expr(p, true), (jstr){ 0 });
            }
            p->pos++;
            x = node(p, JN_DICT, line, 0);
            kid_move(&k, x, false);
            return x;
        }
        break;
    default:
        break;
    }
    char b[64];
    pfail(p, line, "unexpected %s", tok_desc(t, b, sizeof(b)));
}

// Subscript inside [ ]: an expression or a slice a:b:c (each part optional).
static jnode *parse_subscribed(parser *p) {
    int line = cur(p)->line;
    jnode *parts[3] = { NULL, NULL, NULL };
    if (!at_op(p, ":")) {
        parts[0] = parse_expr(p, true);
        if (!at_op(p, ":")) return parts[0];
    }
    p->pos++;   // ':'
    if (!at_op(p, "]") && !at_op(p, ",") && !at_op(p, ":")) parts[1] = parse_expr(p, true);
    if (skip_op(p, ":") && !at_op(p, "]") && !at_op(p, ",")) parts[2] = parse_expr(p, true);
    jnode *x = node(p, JN_SLICE, line, 4);   // kids: object (filled by the caller), start, stop, step
    x->kids[1] = parts[0];
    x->kids[2] = parts[1];
    x->kids[3] = parts[2];
    return x;
}

static jnode *parse_postfix(parser *p, jnode *x) {
    for (;;) {
        int line = cur(p)->line;
        if (skip_op(p, ".")) {
            tok *t = cur(p);
            if (t->kind == TK_NAME) {
                p->pos++;
                jnode *a = node(p, JN_ATTR, line, 1);
                a->kids[0] = x;
                a->name = (jstr){ t->s, t->n };
                x = a;
            } else if (t->kind == TK_INT) {
                p->pos++;
                jnode *a = node(p, JN_ITEM, line, 2);
                a->kids[0] = x;
                a->kids[1] = node(p, JN_LIT, line, 0);
                a->kids[1]->lit = lit_value(p, JV_INT);
                a->kids[1]->lit->u.i = t->i;
                x = a;
            } else {
                pfail(p, line, "expected a name after '.'");
            }
        } else if (skip_op(p, "[")) {
            kidlist k = { 0 };
            while (!at_op(p, "]")) {
                if (k.n) {
                    expect_op(p, ",");
                    if (at_op(p, "]")) break;
                }
                kid_add(p, &k, parse_subscribed(p), (jstr){ 0 });
            }
            p->pos++;
            if (k.n == 0) pfail(p, line, "expected a subscript");
            jnode *sub;
            if (k.n == 1) {
                sub = k.a[0];
            } else {
                sub = node(p, JN_TUPLE, line, 0);
                kid_move(&k, sub, false);
            }
            if (sub->kind == JN_SLICE) {
                sub->kids[0] = x;
                x = sub;
            } else {
                jnode *a = node(p, JN_ITEM, line, 2);
                a->kids[0] = x;
                a->kids[1] = sub;
                x = a;
            }
        } else if (at_op(p, "(")) {
            kidlist k = { 0 };
            kid_add(p, &k, x, (jstr){ 0 });
            parse_call_args(p, &k);
            jnode *c = node(p, JN_CALL, line, 0);   // kids: callee, args...
            kid_move(&k, c, true);
            x = c;
        } else {
            return x;
        }
    }
}

static jnode *parse_filter_or_test(parser *p, jnode *x, bool test) {
    int line = cur(p)->line;
    bool negated = test && skip_name(p, "not");
    jstr name = expect_name(p);
    // dotted names (filters from modules) do not occur in chat templates
    kidlist k = { 0 };
    kid_add(p, &k, x, (jstr){ 0 });
    if (at_op(p, "(")) {
        parse_call_args(p, &k);
    } else if (test) {
        tok *t = cur(p);
        bool arg = (t->kind == TK_NAME || t->kind == TK_STRING || t->kind == TK_INT || t->kind == TK_FLOAT ||
                    tok_is(t, TK_OP, "[") || tok_is(t, TK_OP, "{")) &&
                   !tok_is(t, TK_NAME, "else") && !tok_is(t, TK_NAME, "or") && !tok_is(t, TK_NAME, "and");
        if (arg) {
            if (tok_is(t, TK_NAME, "is")) pfail(p, line, "you cannot chain multiple tests with is");
            kid_add(p, &k, parse_postfix(p, parse_primary(p)), (jstr){ 0 });
        }
    }
    jnode *f = node(p, test ? JN_TEST : JN_FILTER, line, 0);
    f->name = name;
    f->op = negated;
    kid_move(&k, f, true);
    f->builtin = test ? jx_test_find(name.s, name.n) : jx_filter_find(name.s, name.n);
    if (f->builtin < 0) pfail(p, line, "no %s named '%.*s'", test ? "test" : "filter", (int)name.n, name.s);
    return f;
}

static jnode *parse_filter_expr(parser *p, jnode *x) {
    for (;;) {
        if (skip_op(p, "|")) x = parse_filter_or_test(p, x, false);
        else if (skip_name(p, "is")) x = parse_filter_or_test(p, x, true);
        else if (at_op(p, "(")) x = parse_postfix(p, x);
        else return x;
    }
}

static jnode *parse_unary(parser *p, bool with_filter) {
    int line = cur(p)->line;
    jnode *x;
    enter(p);
    if (skip_op(p, "-")) {
        x = node(p, JN_NEG, line, 1);
        x->kids[0] = parse_unary(p, false);
    } else if (skip_op(p, "+")) {
        x = node(p, JN_POS, line, 1);
        x->kids[0] = parse_unary(p, false);
    } else {
        x = parse_primary(p);
    }
    x = parse_postfix(p, x);
    if (with_filter) x = parse_filter_expr(p, x);
    p->depth--;
    return x;
}

static jnode *binop(parser *p, jop op, int line, jnode *a, jnode *b) {
    jnode *x = node(p, JN_BIN, line, 2);
    x->op = (uint8_t)op;
    x->kids[0] = a;
    x->kids[1] = b;
    return x;
}

static jnode *parse_pow(parser *p) {
    jnode *x = parse_unary(p, true);
    while (at_op(p, "**")) {
        int line = cur(p)->line;
        p->pos++;
        x = binop(p, OP_POW, line, x, parse_unary(p, true));
    }
    return x;
}

static jnode *parse_math2(parser *p) {
    jnode *x = parse_pow(p);
    for (;;) {
        int line = cur(p)->line;
        jop op;
        if (at_op(p, "*")) op = OP_MUL;
        else if (at_op(p, "/")) op = OP_DIV;
        else if (at_op(p, "//")) op = OP_FLOORDIV;
        else if (at_op(p, "%")) op = OP_MOD;
        else return x;
        p->pos++;
        x = binop(p, op, line, x, parse_pow(p));
    }
}

static jnode *parse_concat(parser *p) {
    jnode *x = parse_math2(p);
    while (at_op(p, "~")) {
        int line = cur(p)->line;
        p->pos++;
        x = binop(p, OP_CONCAT, line, x, parse_math2(p));
    }
    return x;
}

static jnode *parse_math1(parser *p) {
    jnode *x = parse_concat(p);
    for (;;) {
        int line = cur(p)->line;
        jop op;
        if (at_op(p, "+")) op = OP_ADD;
        else if (at_op(p, "-")) op = OP_SUB;
        else return x;
        p->pos++;
        x = binop(p, op, line, x, parse_concat(p));
    }
}

static jnode *parse_compare(parser *p) {
    int line = cur(p)->line;
    jnode *first = parse_math1(p);
    kidlist k = { 0 };
    jop ops[64];
    int n_ops = 0;
    for (;;) {
        jop op;
        if (at_op(p, "==")) op = OP_EQ;
        else if (at_op(p, "!=")) op = OP_NE;
        else if (at_op(p, "<")) op = OP_LT;
        else if (at_op(p, "<=")) op = OP_LE;
        else if (at_op(p, ">")) op = OP_GT;
        else if (at_op(p, ">=")) op = OP_GE;
        else if (at_name(p, "in")) op = OP_IN;
        else if (at_name(p, "not") && tok_is(peek(p, 1), TK_NAME, "in")) { op = OP_NOTIN; p->pos++; }
        else break;
        p->pos++;
        if (n_ops == (int)QT_ARRAY_LEN(ops)) pfail(p, line, "comparison chain too long");
        if (!k.n) kid_add(p, &k, first, (jstr){ 0 });
        ops[n_ops++] = op;
        kid_add(p, &k, parse_math1(p), (jstr){ 0 });
    }
    if (!n_ops) return first;
    jnode *x = node(p, JN_CMP, line, 0);
    kid_move(&k, x, false);
    x->cmp_ops = palloc(p, sizeof(jop) * (size_t)n_ops);
    memcpy(x->cmp_ops, ops, sizeof(jop) * (size_t)n_ops);
    return x;
}

static jnode *parse_not(parser *p) {
    int line = cur(p)->line;
    if (skip_name(p, "not")) {
        jnode *x = node(p, JN_NOT, line, 1);
        enter(p);
        x->kids[0] = parse_not(p);
        p->depth--;
        return x;
    }
    return parse_compare(p);
}

// a and b and ... / a or b or ...: left-associative chains of one operator
static jnode *parse_chain(parser *p, const char *word, jnode_kind kind, jnode *(*operand)(parser *)) {
    jnode *x = operand(p);
    while (at_name(p, word)) {
        int line = cur(p)->line;
        p->pos++;
        jnode *a = node(p, kind, line, 2);
        a->kids[0] = x;
        a->kids[1] = operand(p);
        x = a;
    }
    return x;
}

static jnode *parse_and(parser *p) { return parse_chain(p, "and", JN_AND, parse_not); }
static jnode *parse_or(parser *p) { return parse_chain(p, "or", JN_OR, parse_and); }

static jnode *parse_condexpr(parser *p) {
    jnode *x = parse_or(p);
    while (at_name(p, "if")) {
        int line = cur(p)->line;
        p->pos++;
        jnode *c = node(p, JN_COND, line, 3);   // kids: condition, then, else (may be NULL)
        c->kids[0] = parse_or(p);
        c->kids[1] = x;
        c->kids[2] = skip_name(p, "else") ? parse_condexpr(p) : NULL;
        x = c;
    }
    return x;
}

static jnode *parse_expr(parser *p, bool with_condexpr) {
    if (cur(p)->kind == TK_EOF) pfail(p, cur(p)->line, "unexpected end of template");
    enter(p);
    jnode *x = with_condexpr ? parse_condexpr(p) : parse_or(p);
    p->depth--;
    return x;
}

static jnode *parse_tuple(parser *p, bool with_condexpr, bool explicit_parens, const char *const *end_names) {
    int line = cur(p)->line;
    kidlist k = { 0 };
    bool comma = false;
    for (;;) {
        if (k.n) expect_op(p, ",");
        if (at_tuple_end(p, end_names)) break;
        kid_add(p, &k, parse_expr(p, with_condexpr), (jstr){ 0 });
        if (at_op(p, ",")) comma = true;
        else break;
    }
    if (!comma) {
        if (k.n == 1) return k.a[0];
        if (!explicit_parens) {
            char b[64];
            pfail(p, line, "expected an expression, got %s", tok_desc(cur(p), b, sizeof(b)));
        }
    }
    jnode *x = node(p, JN_TUPLE, line, 0);
    kid_move(&k, x, false);
    return x;
}

// ---- statements ------------------------------------------------------------------

// Assignment targets: a name, names separated by commas (optionally in
// parentheses), or ns.attr when with_namespace. Names go to x->names; for
// ns.attr x->name gets the namespace and names[0] the attribute, op = 1.
static void parse_targets(parser *p, jnode *x, bool with_namespace, const char *const *end_names) {
    int line = cur(p)->line;
    if (with_namespace && cur(p)->kind == TK_NAME && tok_is(peek(p, 1), TK_OP, ".")) {
        x->name = expect_name(p);
        p->pos++;
        x->names = palloc(p, sizeof(jstr));
        x->names[0] = expect_name(p);
        x->n_names = 1;
        x->op = 1;
        return;
    }
    bool paren = skip_op(p, "(");
    jstr names[32];
    int n = 0;
    for (;;) {
        if (n == (int)QT_ARRAY_LEN(names)) pfail(p, line, "too many assignment targets");
        names[n++] = expect_name(p);
        if (!skip_op(p, ",")) break;
        if (at_tuple_end(p, end_names) || at_op(p, ")")) break;
    }
    if (paren) expect_op(p, ")");
    x->names = palloc(p, sizeof(jstr) * (size_t)n);
    memcpy(x->names, names, sizeof(jstr) * (size_t)n);
    x->n_names = n;
    x->op = 0;
}

static jnode *parse_body(parser *p, const char *const *ends, int *which);

static bool name_eq(jstr s, const char *c) { return s.n == strlen(c) && memcmp(s.s, c, s.n) == 0; }

static jnode *parse_statement(parser *p) {
    int line = cur(p)->line;
    jstr kw = expect_name(p);
    jnode *x;
    int which;
    if (name_eq(kw, "if")) {
        // kids: cond, body, cond, body, ..., [else body]; n_kids odd when there is an else
        kidlist k = { 0 };
        kid_add(p, &k, parse_tuple(p, false, false, NO_END), (jstr){ 0 });
        expect_kind(p, TK_BLOCK_END);
        static const char *const ends[] = { "elif", "else", "endif", NULL };
        for (;;) {
            kid_add(p, &k, parse_body(p, ends, &which), (jstr){ 0 });
            if (which == 0) {
                kid_add(p, &k, parse_tuple(p, false, false, NO_END), (jstr){ 0 });
                expect_kind(p, TK_BLOCK_END);
                continue;
            }
            if (which == 1) {
                expect_kind(p, TK_BLOCK_END);
                static const char *const endif[] = { "endif", NULL };
                kid_add(p, &k, parse_body(p, endif, &which), (jstr){ 0 });
            }
            break;
        }
        x = node(p, JN_IF, line, 0);
        kid_move(&k, x, false);
    } else if (name_eq(kw, "for")) {
        // kids: iterable, body, filter condition (may be NULL), else body (may be NULL)
        x = node(p, JN_FOR, line, 4);
        static const char *const in_end[] = { "in", NULL };
        parse_targets(p, x, false, in_end);
        if (!skip_name(p, "in")) pfail(p, line, "expected 'in' in a for loop");
        static const char *const rec_end[] = { "recursive", NULL };
        x->kids[0] = parse_tuple(p, false, false, rec_end);
        if (skip_name(p, "if")) x->kids[2] = parse_expr(p, true);
        if (at_name(p, "recursive")) pfail(p, line, "recursive loops are not supported");
        expect_kind(p, TK_BLOCK_END);
        static const char *const ends[] = { "endfor", "else", NULL };
        p->loop_depth++;
        x->kids[1] = parse_body(p, ends, &which);
        p->loop_depth--;
        if (which == 1) {
            expect_kind(p, TK_BLOCK_END);
            static const char *const endfor[] = { "endfor", NULL };
            x->kids[3] = parse_body(p, endfor, &which);
        }
    } else if (name_eq(kw, "set")) {
        x = node(p, JN_SET, line, 2);   // kids: value (or body for a block set), filter chain holder
        parse_targets(p, x, true, NO_END);
        if (skip_op(p, "=")) {
            x->kids[0] = parse_tuple(p, true, false, NO_END);
            expect_kind(p, TK_BLOCK_END);
        } else {
            if (x->n_names != 1) pfail(p, line, "a block set takes one name");
            x->kind = JN_SETBLOCK;
            // optional filters: {% set x | trim %}: a filter chain applied to a placeholder
            jnode *ph = node(p, JN_LIT, line, 0);
            ph->lit = NULL;
            jnode *f = ph;
            while (skip_op(p, "|")) f = parse_filter_or_test(p, f, false);
            x->kids[1] = f == ph ? NULL : f;
            expect_kind(p, TK_BLOCK_END);
            static const char *const ends[] = { "endset", NULL };
            x->kids[0] = parse_body(p, ends, &which);
        }
    } else if (name_eq(kw, "macro")) {
        // names: parameters; kids: body, then one default per parameter (NULL: none)
        x = node(p, JN_MACRO, line, 0);
        x->name = expect_name(p);
        expect_op(p, "(");
        kidlist k = { 0 };
        kid_add(p, &k, NULL, (jstr){ 0 });
        while (!at_op(p, ")")) {
            if (k.n > 1) {
                expect_op(p, ",");
                if (at_op(p, ")")) break;
            }
            jstr pn = expect_name(p);
            kid_add(p, &k, skip_op(p, "=") ? parse_expr(p, true) : NULL, pn);
        }
        p->pos++;
        expect_kind(p, TK_BLOCK_END);
        static const char *const ends[] = { "endmacro", NULL };
        int saved = p->loop_depth;
        p->loop_depth = 0;
        k.a[0] = parse_body(p, ends, &which);
        p->loop_depth = saved;
        kid_move(&k, x, true);
    } else if (name_eq(kw, "break") || name_eq(kw, "continue")) {
        if (p->loop_depth == 0) pfail(p, line, "'%.*s' outside a loop", (int)kw.n, kw.s);
        x = node(p, kw.s[0] == 'b' ? JN_BREAK : JN_CONTINUE, line, 0);
        expect_kind(p, TK_BLOCK_END);
    } else if (name_eq(kw, "generation")) {
        expect_kind(p, TK_BLOCK_END);
        static const char *const ends[] = { "endgeneration", NULL };
        x = parse_body(p, ends, &which);
    } else if (name_eq(kw, "with")) {
        // names: targets; kids: values..., body last
        x = node(p, JN_WITH, line, 0);
        kidlist k = { 0 };
        while (cur(p)->kind != TK_BLOCK_END) {
            if (k.n) expect_op(p, ",");
            jstr nm = expect_name(p);
            expect_op(p, "=");
            kid_add(p, &k, parse_expr(p, true), nm);
        }
        expect_kind(p, TK_BLOCK_END);
        static const char *const ends[] = { "endwith", NULL };
        kid_add(p, &k, parse_body(p, ends, &which), (jstr){ 0 });
        kid_move(&k, x, true);
        x->n_names--;
    } else if (name_eq(kw, "filter")) {
        x = node(p, JN_FILTERBLOCK, line, 2);   // kids: body, filter chain over a placeholder
        jnode *ph = node(p, JN_LIT, line, 0);
        jnode *f = parse_filter_or_test(p, ph, false);
        while (skip_op(p, "|")) f = parse_filter_or_test(p, f, false);
        x->kids[1] = f;
        expect_kind(p, TK_BLOCK_END);
        static const char *const ends[] = { "endfilter", NULL };
        x->kids[0] = parse_body(p, ends, &which);
        return x;
    } else {
        pfail(p, line, "unknown or unsupported tag '%.*s'", (int)kw.n, kw.s);
    }
    return x;
}

// Statements until one of ends (a block tag starting with that name, which is
// consumed) or the end of the template when ends is NULL. *which: its index.
static jnode *parse_body(parser *p, const char *const *ends, int *which) {
    int line = cur(p)->line;
    kidlist k = { 0 };
    for (;;) {
        tok *t = cur(p);
        if (t->kind == TK_EOF) {
            if (ends) pfail(p, t->line, "unexpected end of template: expected '%s'", ends[0]);
            break;
        }
        if (t->kind == TK_DATA) {
            jnode *x = node(p, JN_TEXT, t->line, 0);
            x->lit = lit_value(p, JV_STR);
            x->lit->u.s = (jstr){ t->s, t->n };
            kid_add(p, &k, x, (jstr){ 0 });
            p->pos++;
        } else if (t->kind == TK_VAR_BEGIN) {
            p->pos++;
            jnode *x = node(p, JN_OUT, t->line, 1);
            x->kids[0] = parse_tuple(p, true, false, NO_END);
            expect_kind(p, TK_VAR_END);
            kid_add(p, &k, x, (jstr){ 0 });
        } else if (t->kind == TK_BLOCK_BEGIN) {
            p->pos++;
            tok *nt = cur(p);
            if (ends && nt->kind == TK_NAME) {
                int w = -1;
                for (int i = 0; ends[i]; i++)
                    if (tok_is(nt, TK_NAME, ends[i])) w = i;
                if (w >= 0) {
                    p->pos++;
                    *which = w;
                    // "endfor" etc. close here; elif / else leave their rest to the caller
                    if (!strncmp(ends[w], "end", 3)) expect_kind(p, TK_BLOCK_END);
                    break;
                }
            }
            enter(p);
            kid_add(p, &k, parse_statement(p), (jstr){ 0 });
            p->depth--;
        } else {
            char b[64];
            pfail(p, t->line, "unexpected %s", tok_desc(t, b, sizeof(b)));
        }
    }
    jnode *x = node(p, JN_BODY, line, 0);
    kid_move(&k, x, false);
    return x;
}

// ---- entry ---------------------------------------------------------------------

#define MAX_TEMPLATE_BYTES (8u << 20)

qt_jinja *qt_jinja_parse(const char *src, size_t len, char *err, size_t err_cap) {
    if (err_cap) err[0] = 0;
    if (len > MAX_TEMPLATE_BYTES) {
        snprintf(err, err_cap, "the template is %zu bytes, more than the limit of %u", len, MAX_TEMPLATE_BYTES);
        return NULL;
    }
    qt_jinja *t = qt_calloc(1, sizeof(qt_jinja));
    t->mem.max = 64 * (size_t)len + (4u << 20);
    parser *p = qt_calloc(1, sizeof(parser));   // on the heap: its fields change between setjmp and longjmp
    p->mem = &t->mem;
    p->err = err;
    p->err_cap = err_cap;
    // newlines normalised (\r\n and \r become \n), one trailing newline dropped
    char *s = ja_alloc(&t->mem, len + 1);
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '\r') {
            s[n++] = '\n';
            if (i + 1 < len && src[i + 1] == '\n') i++;
        } else {
            s[n++] = src[i];
        }
    }
    if (n && s[n - 1] == '\n') n--;
    s[n] = 0;
    p->src = s;
    p->n = n;
    if (setjmp(p->fail)) {
        qt_free(p->toks);
        qt_free(p);
        qt_jinja_free(t);
        return NULL;
    }
    lex(p);
    int which;
    t->root = parse_body(p, NULL, &which);
    qt_free(p->toks);
    qt_free(p);
    return t;
}

void qt_jinja_free(qt_jinja *t) {
    if (!t) return;
    ja_free(&t->mem);
    qt_free(t);
}
