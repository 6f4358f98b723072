// grammar.c: GBNF grammars and the token mask of grammar.h. Follows
// llama.cpp's llama-grammar.cpp: rules are flat element arrays (alternatives
// separated by ALT, ended by END); a parse state is a set of stacks of
// positions, each stack's top a byte-class element; accepting a byte pops
// matching tops and expands rule references until every top is a byte class
// again. Differences: bytes instead of code points (a UTF-8 character is a
// sequence of byte steps, so classes are ASCII or negated), repetitions are
// rewritten into right-recursive helper rules, and the mask first filters
// tokens by the bytes any stack can take next. Deliberately not here:
// left-recursive grammars (refused: the expansion would not end), lazy
// grammars, trigger words.
#include "sample/grammar.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"

enum { GE_END, GE_ALT, GE_REF, GE_CLASS };

typedef struct {
    uint8_t type;
    uint32_t v;   // GE_REF: rule id; GE_CLASS: class id
} gelem;

typedef struct {
    uint64_t bits[4];   // bytes 0..255
} gclass;

struct qt_grammar {
    gelem *e;           // all rules' elements
    int n_e, cap_e;
    int *rule_start;    // (n_rules) first element of each rule
    char **rule_name;   // (n_rules)
    int n_rules, cap_rules;
    gclass *cls;
    int n_cls, cap_cls;
    int root;
};

#define MAX_STACKS 1024
#define MAX_STACK_DEPTH 512
#define MAX_EXPAND 4096

// ---- parser --------------------------------------------------------------------

typedef struct {
    qt_grammar *g;
    const char *s;
    int line;
    char *err;
    size_t err_cap;
    bool failed;
    int n_helpers;
    // rule bodies are built in temporary element lists, then appended
} gparser;

typedef struct {
    gelem *e;
    int n, cap;
} elist;

static void el_push(elist *l, gelem x) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 16;
        l->e = qt_realloc(l->e, sizeof(gelem) * (size_t)l->cap);
    }
    l->e[l->n++] = x;
}

static void gfail(gparser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void gfail(gparser *p, const char *fmt, ...) {
    if (p->failed) return;
    p->failed = true;
    int k = snprintf(p->err, p->err_cap, "line %d: ", p->line);
    va_list ap;
    va_start(ap, fmt);
    if (k >= 0 && (size_t)k < p->err_cap) vsnprintf(p->err + k, p->err_cap - (size_t)k, fmt, ap);
    va_end(ap);
}

static int rule_id(qt_grammar *g, const char *name, size_t n) {
    for (int i = 0; i < g->n_rules; i++)
        if (strlen(g->rule_name[i]) == n && memcmp(g->rule_name[i], name, n) == 0) return i;
    if (g->n_rules == g->cap_rules) {
        g->cap_rules = g->cap_rules ? 2 * g->cap_rules : 32;
        g->rule_name = qt_realloc(g->rule_name, sizeof(char *) * (size_t)g->cap_rules);
        g->rule_start = qt_realloc(g->rule_start, sizeof(int) * (size_t)g->cap_rules);
    }
    char *nm = qt_malloc(n + 1);
    memcpy(nm, name, n);
    nm[n] = 0;
    g->rule_name[g->n_rules] = nm;
    g->rule_start[g->n_rules] = -1;   // not defined yet
    return g->n_rules++;
}

static uint32_t add_class(qt_grammar *g, const gclass *c) {
    for (int i = 0; i < g->n_cls; i++)
        if (!memcmp(&g->cls[i], c, sizeof(gclass))) return (uint32_t)i;
    if (g->n_cls == g->cap_cls) {
        g->cap_cls = g->cap_cls ? 2 * g->cap_cls : 32;
        g->cls = qt_realloc(g->cls, sizeof(gclass) * (size_t)g->cap_cls);
    }
    g->cls[g->n_cls] = *c;
    return (uint32_t)g->n_cls++;
}

static void cls_set(gclass *c, int b) { c->bits[b >> 6] |= 1ull << (b & 63); }
static bool cls_has(const gclass *c, int b) { return (c->bits[b >> 6] >> (b & 63)) & 1; }

static void define_rule(gparser *p, int id, const elist *body) {
    qt_grammar *g = p->g;
    if (g->rule_start[id] >= 0) { gfail(p, "rule '%s' defined twice", g->rule_name[id]); return; }
    g->rule_start[id] = g->n_e;
    for (int i = 0; i < body->n; i++) {
        if (g->n_e == g->cap_e) {
            g->cap_e = g->cap_e ? 2 * g->cap_e : 256;
            g->e = qt_realloc(g->e, sizeof(gelem) * (size_t)g->cap_e);
        }
        g->e[g->n_e++] = body->e[i];
    }
    if (g->n_e == g->cap_e) {
        g->cap_e = 2 * g->cap_e;
        g->e = qt_realloc(g->e, sizeof(gelem) * (size_t)g->cap_e);
    }
    g->e[g->n_e++] = (gelem){ GE_END, 0 };
}

static int helper_rule(gparser *p) {
    char nm[32];
    snprintf(nm, sizeof(nm), "-h%d", p->n_helpers++);   // '-' cannot start a user rule name
    return rule_id(p->g, nm, strlen(nm));
}

static const char *skip_ws(gparser *p, const char *s, bool newlines) {
    for (;;) {
        if (*s == '#') { while (*s && *s != '\n') s++; continue; }
        if (*s == ' ' || *s == '\t' || *s == '\r' || (newlines && *s == '\n')) {
            if (*s == '\n') p->line++;
            s++;
            continue;
        }
        return s;
    }
}

static bool is_word(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_'; }

static int hexv(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

// One character of a literal or class (escapes decoded) as UTF-8 bytes in out; returns bytes written.
static int parse_char(gparser *p, const char **sp, unsigned char *out) {
    const char *s = *sp;
    uint32_t cp;
    if (*s == '\\') {
        s++;
        int digits = 0;
        switch (*s) {
        case 'n': cp = '\n'; break;
        case 't': cp = '\t'; break;
        case 'r': cp = '\r'; break;
        case '\\': cp = '\\'; break;
        case '"': cp = '"'; break;
        case '\'': cp = '\''; break;
        case '[': cp = '['; break;
        case ']': cp = ']'; break;
        case '-': cp = '-'; break;
        case '^': cp = '^'; break;
        case 'x': digits = 2; break;
        case 'u': digits = 4; break;
        case 'U': digits = 8; break;
        default: gfail(p, "unknown escape \\%c", *s ? *s : '0'); return 0;
        }
        if (digits) {
            cp = 0;
            for (int i = 0; i < digits; i++) {
                int h = hexv(s[1 + i]);
                if (h < 0) { gfail(p, "bad \\%c escape", *s); return 0; }
                cp = cp * 16 + (uint32_t)h;
            }
            s += digits;
            if (digits == 2) {   // \xHH is one byte
                *sp = s + 1;
                out[0] = (unsigned char)cp;
                return 1;
            }
        }
        s++;
    } else {
        // one UTF-8 character as it stands
        unsigned char c = (unsigned char)*s;
        int n = c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
        for (int i = 0; i < n; i++) {
            if (!s[i]) { gfail(p, "truncated UTF-8"); return 0; }
            out[i] = (unsigned char)s[i];
        }
        *sp = s + n;
        return n;
    }
    *sp = s;
    if (cp > 0x10ffff) { gfail(p, "code point out of range"); return 0; }
    if (cp < 0x80) { out[0] = (unsigned char)cp; return 1; }
    if (cp < 0x800) { out[0] = (unsigned char)(0xc0 | (cp >> 6)); out[1] = (unsigned char)(0x80 | (cp & 0x3f)); return 2; }
    if (cp < 0x10000) {
        out[0] = (unsigned char)(0xe0 | (cp >> 12)); out[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (unsigned char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (unsigned char)(0xf0 | (cp >> 18)); out[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f)); out[3] = (unsigned char)(0x80 | (cp & 0x3f));
    return 4;
}

static const char *parse_alternatives(gparser *p, const char *s, elist *out, bool nested, int depth);

// Appends one item (with its repetition) to seq.
static const char *parse_item(gparser *p, const char *s, elist *seq, int depth) {
    elist atom = { 0 };   // the item as a sequence of elements
    if (*s == '"') {
        s++;
        while (*s && *s != '"' && !p->failed) {
            unsigned char b[4];
            int n = parse_char(p, &s, b);
            for (int i = 0; i < n; i++) {
                gclass c = { { 0 } };
                cls_set(&c, b[i]);
                el_push(&atom, (gelem){ GE_CLASS, add_class(p->g, &c) });
            }
        }
        if (*s != '"') { gfail(p, "unterminated literal"); qt_free(atom.e); return s; }
        s++;
    } else if (*s == '[') {
        s++;
        bool neg = *s == '^';
        if (neg) s++;
        gclass c = { { 0 } };
        while (*s && *s != ']' && !p->failed) {
            unsigned char a[4], b[4];
            int na = parse_char(p, &s, a), nb = 0;
            if (*s == '-' && s[1] != ']') {
                s++;
                nb = parse_char(p, &s, b);
            }
            if ((na > 1 || nb > 1) && !neg) { gfail(p, "character classes take ASCII characters (or are negated)"); break; }
            if (na > 1 || nb > 1) continue;   // negated: a non-ASCII member is allowed anyway (bytes >= 0x80 pass)
            int lo = a[0], hi = nb ? b[0] : a[0];
            for (int x = lo; x <= hi; x++) cls_set(&c, x);
        }
        if (*s != ']') { gfail(p, "unterminated character class"); qt_free(atom.e); return s; }
        s++;
        if (neg) for (int w = 0; w < 4; w++) c.bits[w] = ~c.bits[w];
        el_push(&atom, (gelem){ GE_CLASS, add_class(p->g, &c) });
    } else if (*s == '.') {
        s++;
        gclass c;
        memset(&c, 0xff, sizeof(c));
        el_push(&atom, (gelem){ GE_CLASS, add_class(p->g, &c) });
    } else if (*s == '(') {
        if (depth > 64) { gfail(p, "groups nested too deeply"); return s; }
        elist body = { 0 };
        s = parse_alternatives(p, s + 1, &body, true, depth + 1);
        s = skip_ws(p, s, true);
        if (*s != ')') { gfail(p, "expected ')'"); qt_free(body.e); qt_free(atom.e); return s; }
        s++;
        int h = helper_rule(p);
        define_rule(p, h, &body);
        qt_free(body.e);
        el_push(&atom, (gelem){ GE_REF, (uint32_t)h });
    } else if (is_word(*s)) {
        const char *b = s;
        while (is_word(*s)) s++;
        el_push(&atom, (gelem){ GE_REF, (uint32_t)rule_id(p->g, b, (size_t)(s - b)) });
    } else {
        gfail(p, "unexpected '%c'", *s);
        return s;
    }
    // repetition: the atom becomes a reference to a helper rule when it has several elements
    int m = 1, n = 1;   // {m,n}; n < 0: unbounded
    if (*s == '*') { m = 0; n = -1; s++; }
    else if (*s == '+') { m = 1; n = -1; s++; }
    else if (*s == '?') { m = 0; n = 1; s++; }
    else if (*s == '{') {
        char *e;
        long a = strtol(s + 1, &e, 10);
        long b = a;
        if (*e == ',') {
            if (e[1] == '}') { b = -1; e++; }
            else b = strtol(e + 1, &e, 10);
        }
        if (*e != '}' || a < 0 || a > 256 || (b >= 0 && (b < a || b > 256))) { gfail(p, "bad repetition {m,n} (0 <= m <= n <= 256)"); qt_free(atom.e); return s; }
        m = (int)a;
        n = (int)b;
        s = e + 1;
    }
    if (m == 1 && n == 1) {
        for (int i = 0; i < atom.n; i++) el_push(seq, atom.e[i]);
        qt_free(atom.e);
        return s;
    }
    gelem unit = atom.e[0];
    if (atom.n > 1) {
        int h = helper_rule(p);
        define_rule(p, h, &atom);
        unit = (gelem){ GE_REF, (uint32_t)h };
    }
    qt_free(atom.e);
    for (int i = 0; i < m; i++) el_push(seq, unit);
    if (n < 0) {   // star ::= unit star | (empty)
        int h = helper_rule(p);
        elist body = { 0 };
        el_push(&body, unit);
        el_push(&body, (gelem){ GE_REF, (uint32_t)h });
        el_push(&body, (gelem){ GE_ALT, 0 });
        define_rule(p, h, &body);
        qt_free(body.e);
        el_push(seq, (gelem){ GE_REF, (uint32_t)h });
    } else if (n > m) {   // opt_k ::= unit opt_{k-1} | (empty), nested n - m deep
        int prev = -1;
        for (int k = 0; k < n - m; k++) {
            int h = helper_rule(p);
            elist body = { 0 };
            el_push(&body, unit);
            if (prev >= 0) el_push(&body, (gelem){ GE_REF, (uint32_t)prev });
            el_push(&body, (gelem){ GE_ALT, 0 });
            define_rule(p, h, &body);
            qt_free(body.e);
            prev = h;
        }
        el_push(seq, (gelem){ GE_REF, (uint32_t)prev });
    }
    return s;
}

// At a rule start ("name ::=")?
static bool at_rule_start(const char *s) {
    if (!is_word(*s)) return false;
    while (is_word(*s)) s++;
    while (*s == ' ' || *s == '\t') s++;
    return s[0] == ':' && s[1] == ':' && s[2] == '=';
}

static const char *parse_alternatives(gparser *p, const char *s, elist *out, bool nested, int depth) {
    for (;;) {
        s = skip_ws(p, s, nested);
        // a sequence ends at '|', ')', end of input, or (outside groups) a newline not followed by a continuation
        while (*s && *s != '|' && *s != ')' && !p->failed) {
            if (!nested && *s == '\n') {
                const char *t = skip_ws(p, s, true);
                int saved = p->line;
                if (!*t || at_rule_start(t)) { p->line = saved; break; }
                s = t;
                continue;
            }
            s = parse_item(p, s, out, depth);
            s = skip_ws(p, s, nested);
        }
        if (*s == '|') {
            el_push(out, (gelem){ GE_ALT, 0 });
            s++;
            continue;
        }
        return s;
    }
}

static bool left_recursive(const qt_grammar *g, int rule, int target, int depth, bool *seen) {
    if (depth > 64) return true;
    if (seen[rule]) return false;
    seen[rule] = true;
    // first element of each alternative (and further ones while they may be empty: approximated by refs)
    int i = g->rule_start[rule];
    bool at_start = true;
    for (; g->e[i].type != GE_END; i++) {
        if (g->e[i].type == GE_ALT) { at_start = true; continue; }
        if (at_start && g->e[i].type == GE_REF) {
            int r = (int)g->e[i].v;
            if (r == target || left_recursive(g, r, target, depth + 1, seen)) return true;
        }
        at_start = false;
    }
    return false;
}

qt_grammar *qt_grammar_parse(const char *text, char *err, size_t err_cap) {
    qt_grammar *g = qt_calloc(1, sizeof(qt_grammar));
    gparser p = { .g = g, .s = text, .line = 1, .err = err, .err_cap = err_cap };
    if (err_cap) err[0] = 0;
    const char *s = text;
    for (;;) {
        s = skip_ws(&p, s, true);
        if (!*s || p.failed) break;
        const char *b = s;
        while (is_word(*s)) s++;
        if (s == b) { gfail(&p, "expected a rule name"); break; }
        int id = rule_id(g, b, (size_t)(s - b));
        s = skip_ws(&p, s, false);
        if (strncmp(s, "::=", 3) != 0) { gfail(&p, "expected '::=' after '%s'", g->rule_name[id]); break; }
        elist body = { 0 };
        s = parse_alternatives(&p, s + 3, &body, false, 0);
        if (*s == ')') gfail(&p, "unbalanced ')'");
        if (!p.failed) define_rule(&p, id, &body);
        qt_free(body.e);
    }
    g->root = -1;
    for (int i = 0; i < g->n_rules && !p.failed; i++) {
        if (g->rule_start[i] < 0) gfail(&p, "rule '%s' is used but not defined", g->rule_name[i]);
        if (!strcmp(g->rule_name[i], "root")) g->root = i;
    }
    if (!p.failed && g->root < 0) gfail(&p, "no rule named 'root'");
    if (!p.failed) {
        bool *seen = qt_malloc((size_t)g->n_rules);
        for (int i = 0; i < g->n_rules && !p.failed; i++) {
            memset(seen, 0, (size_t)g->n_rules);
            if (left_recursive(g, i, i, 0, seen)) gfail(&p, "rule '%s' is left-recursive", g->rule_name[i]);
        }
        qt_free(seen);
    }
    if (p.failed) {
        qt_grammar_free(g);
        return NULL;
    }
    return g;
}

void qt_grammar_free(qt_grammar *g) {
    if (!g) return;
    for (int i = 0; i < g->n_rules; i++) qt_free(g->rule_name[i]);
    qt_free(g->rule_name);
    qt_free(g->rule_start);
    qt_free(g->e);
    qt_free(g->cls);
    qt_free(g);
}

// ---- matcher --------------------------------------------------------------------

// A set of stacks in one int buffer: stack k is pos[off[k] .. off[k] + len[k]), top last.
typedef struct {
    int *pos;
    size_t n_pos, cap_pos;
    int *off, *len;
    int n, cap;
    bool overflow;
} stackset;

struct qt_grammar_state {
    const qt_grammar *g;
    stackset cur, tmp, tmp2;
    int *scratch;
    size_t cap_scratch;
};

static void ss_clear(stackset *s) { s->n = 0; s->n_pos = 0; s->overflow = false; }

static void ss_free(stackset *s) {
    qt_free(s->pos);
    qt_free(s->off);
    qt_free(s->len);
    memset(s, 0, sizeof(*s));
}

static void ss_add(stackset *s, const int *pos, int n) {
    for (int k = 0; k < s->n; k++)   // dedupe
        if (s->len[k] == n && !memcmp(s->pos + s->off[k], pos, sizeof(int) * (size_t)n)) return;
    if (s->n >= MAX_STACKS) { s->overflow = true; return; }
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 16;
        s->off = qt_realloc(s->off, sizeof(int) * (size_t)s->cap);
        s->len = qt_realloc(s->len, sizeof(int) * (size_t)s->cap);
    }
    if (s->n_pos + (size_t)n > s->cap_pos) {
        s->cap_pos = QT_MAX(2 * s->cap_pos, s->n_pos + (size_t)n + 64);
        s->pos = qt_realloc(s->pos, sizeof(int) * s->cap_pos);
    }
    memcpy(s->pos + s->n_pos, pos, sizeof(int) * (size_t)n);
    s->off[s->n] = (int)s->n_pos;
    s->len[s->n++] = n;
    s->n_pos += (size_t)n;
}

// Expand references at the top of stack (st, n) until each top is a class, adding the results to out.
static void advance(const qt_grammar *g, int *st, int n, stackset *out, int *budget) {
    if (--*budget < 0 || n > MAX_STACK_DEPTH) { out->overflow = true; return; }
    if (n == 0) { ss_add(out, st, 0); return; }
    int p = st[n - 1];
    const gelem *e = &g->e[p];
    if (e->type == GE_CLASS) { ss_add(out, st, n); return; }
    // GE_REF: replace it by its continuation, then by each alternative's first element
    int base = n - 1;
    const gelem *nx = &g->e[p + 1];
    if (nx->type != GE_END && nx->type != GE_ALT) st[base++] = p + 1;
    int r = g->rule_start[e->v];
    for (;;) {
        const gelem *first = &g->e[r];
        if (first->type == GE_END || first->type == GE_ALT) advance(g, st, base, out, budget);   // empty alternative
        else {
            st[base] = r;
            advance(g, st, base + 1, out, budget);
        }
        while (g->e[r].type != GE_END && g->e[r].type != GE_ALT) r++;
        if (g->e[r].type == GE_END) break;
        r++;
    }
    // restore the caller's stack slot (st was modified in place)
    st[n - 1] = p;
}

qt_grammar_state *qt_grammar_state_init(const qt_grammar *g) {
    qt_grammar_state *st = qt_calloc(1, sizeof(*st));
    st->g = g;
    st->cap_scratch = MAX_STACK_DEPTH + 8;
    st->scratch = qt_malloc(sizeof(int) * st->cap_scratch);
    // the root's alternatives: a reference to root with nothing after it
    int r = g->rule_start[g->root], budget = MAX_EXPAND * 4;
    for (;;) {
        const gelem *first = &g->e[r];
        if (first->type == GE_END || first->type == GE_ALT) ss_add(&st->cur, st->scratch, 0);
        else {
            st->scratch[0] = r;
            advance(g, st->scratch, 1, &st->cur, &budget);
        }
        while (g->e[r].type != GE_END && g->e[r].type != GE_ALT) r++;
        if (g->e[r].type == GE_END) break;
        r++;
    }
    return st;
}

void qt_grammar_state_free(qt_grammar_state *st) {
    if (!st) return;
    ss_free(&st->cur);
    ss_free(&st->tmp);
    ss_free(&st->tmp2);
    qt_free(st->scratch);
    qt_free(st);
}

// out = the stacks of in after byte b.
static void step(const qt_grammar *g, const stackset *in, unsigned char b, stackset *out, int *scratch) {
    ss_clear(out);
    int budget = MAX_EXPAND;
    for (int k = 0; k < in->n; k++) {
        int n = in->len[k];
        if (n == 0) continue;
        const int *s = in->pos + in->off[k];
        int top = s[n - 1];
        if (!cls_has(&g->cls[g->e[top].v], b)) continue;
        memcpy(scratch, s, sizeof(int) * (size_t)(n - 1));
        int m = n - 1;
        const gelem *nx = &g->e[top + 1];
        if (nx->type != GE_END && nx->type != GE_ALT) scratch[m++] = top + 1;
        advance(g, scratch, m, out, &budget);
    }
}

int qt_grammar_accept(qt_grammar_state *st, const char *bytes, size_t n) {
    for (size_t i = 0; i < n; i++) {
        step(st->g, &st->cur, (unsigned char)bytes[i], &st->tmp, st->scratch);
        if (st->tmp.n == 0) return QT_ERR;
        stackset t = st->cur;
        st->cur = st->tmp;
        st->tmp = t;
    }
    return QT_OK;
}

bool qt_grammar_complete(const qt_grammar_state *st) {
    for (int k = 0; k < st->cur.n; k++)
        if (st->cur.len[k] == 0) return true;
    return false;
}

bool qt_grammar_finished(const qt_grammar_state *st) {
    for (int k = 0; k < st->cur.n; k++)
        if (st->cur.len[k] != 0) return false;
    return true;
}

// The bytes of a token run from the current stacks through the scratch sets; true if some stack survives.
static bool token_fits(qt_grammar_state *st, const unsigned char *b, uint32_t n) {
    const stackset *in = &st->cur;
    stackset *a = &st->tmp, *o = &st->tmp2;
    for (uint32_t i = 0; i < n; i++) {
        step(st->g, in, b[i], a, st->scratch);
        if (a->n == 0) return false;
        in = a;
        stackset *t = a; a = o; o = t;
    }
    return true;
}

bool qt_grammar_allows(qt_grammar_state *st, const qt_grammar_vocab *v, int id) {
    if (id < 0 || id >= v->n_vocab) return false;
    if (v->eog[id]) return qt_grammar_complete(st);
    return v->len[id] > 0 && token_fits(st, (const unsigned char *)v->piece[id], v->len[id]);
}

void qt_grammar_mask(qt_grammar_state *st, const qt_grammar_vocab *v, float *logits) {
    const qt_grammar *g = st->g;
    // bytes any stack takes next
    gclass first = { { 0 } };
    for (int k = 0; k < st->cur.n; k++) {
        if (st->cur.len[k] == 0) continue;
        const gclass *c = &g->cls[g->e[st->cur.pos[st->cur.off[k] + st->cur.len[k] - 1]].v];
        for (int w = 0; w < 4; w++) first.bits[w] |= c->bits[w];
    }
    bool complete = qt_grammar_complete(st);
    for (int id = 0; id < v->n_vocab; id++) {
        if (logits[id] == -INFINITY) continue;
        if (v->eog[id]) {
            if (!complete) logits[id] = -INFINITY;
            continue;
        }
        uint32_t n = v->len[id];
        const unsigned char *b = (const unsigned char *)v->piece[id];
        if (n == 0 || !cls_has(&first, b[0])) {
            logits[id] = -INFINITY;
            continue;
        }
        if (!token_fits(st, b, n)) logits[id] = -INFINITY;
    }
}
