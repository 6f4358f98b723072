// metrics.c: exact match, BLEU-4 and ROUGE-L for generated text (metrics.h).
// BLEU follows Papineni et al. 2002 with sacrebleu's conventions (13a
// tokenizer, "exp" smoothing, effective order for single sentences, one
// reference per hypothesis); ROUGE-L follows Lin 2004 with rouge-score's
// tokenizer (see metrics.h for the one deliberate difference). Not here:
// multiple references, other tokenizers (intl, char, zh), stemming, ROUGE-Lsum.
// Independent reference: tests/ref/metrics_ref.py.
#include "train/metrics.h"

#include <math.h>
#include <string.h>

#include "base/base.h"

// ---- a growable byte buffer ----

typedef struct {
    char *p;
    size_t n, cap;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        b->cap = (b->n + n + 1) * 2;
        b->p = qt_realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}
static void sb_c(sbuf *b, char c) { sb_put(b, &c, 1); }

// ---- the 13a tokenizer (sacrebleu tokenizer_13a.py / mteval-v13a.pl) ----

// Punctuation class of the first 13a rule: [{-~[-` -&(-+:-@/]
static bool is_punct13a(unsigned char c) {
    return (c >= 0x7b && c <= 0x7e) || (c >= 0x5b && c <= 0x60) || (c >= 0x20 && c <= 0x26) ||
           (c >= 0x28 && c <= 0x2b) || (c >= 0x3a && c <= 0x40) || c == '/';
}
static bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
static bool is_dotcomma(unsigned char c) { return c == '.' || c == ','; }

// One re.sub of a two-character pattern (a)(b) -> left-to-right, non-overlapping,
// as Python's re.sub does: "\1 \2 " (mode 0) or " \1 \2" (mode 1).
static char *sub2(const char *s, bool (*a)(unsigned char), bool (*b)(unsigned char), int mode) {
    sbuf o = { 0 };
    sb_put(&o, "", 0);
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        unsigned char c0 = (unsigned char)s[i], c1 = i + 1 < n ? (unsigned char)s[i + 1] : 0;
        if (i + 1 < n && a(c0) && b(c1)) {
            char t[5];
            if (mode == 0) { t[0] = (char)c0; t[1] = ' '; t[2] = (char)c1; t[3] = ' '; }
            else { t[0] = ' '; t[1] = (char)c0; t[2] = ' '; t[3] = (char)c1; }
            sb_put(&o, t, 4);
            i += 2;
        } else {
            sb_c(&o, (char)c0);
            i++;
        }
    }
    return o.p;
}
static bool not_digit(unsigned char c) { return !is_digit(c); }
static bool is_dash(unsigned char c) { return c == '-'; }

static void replace_all(sbuf *o, const char *s, const char *from, const char *to) {
    size_t nf = strlen(from);
    const char *p;
    while ((p = strstr(s, from))) {
        sb_put(o, s, (size_t)(p - s));
        sb_put(o, to, strlen(to));
        s = p + nf;
    }
    sb_put(o, s, strlen(s));
}

char *qt_bleu_tokenize(const char *s) {
    // mteval's clean-up: drop <skipped>, join "-\n" hyphenation, newlines to spaces, unescape 4 entities
    static const char *rep[][2] = { { "<skipped>", "" }, { "-\n", "" }, { "\n", " " }, { "&quot;", "\"" },
                                    { "&amp;", "&" }, { "&lt;", "<" }, { "&gt;", ">" } };
    char *cur = qt_strdup(s);
    for (size_t k = 0; k < QT_ARRAY_LEN(rep); k++) {
        if (k == 3 && !strchr(cur, '&')) break;
        sbuf o = { 0 };
        sb_put(&o, "", 0);
        replace_all(&o, cur, rep[k][0], rep[k][1]);
        qt_free(cur);
        cur = o.p;
    }
    // " line ", then the four regexes
    sbuf o = { 0 };
    sb_c(&o, ' ');
    for (const char *p = cur; *p; p++) {
        if (is_punct13a((unsigned char)*p)) { sb_c(&o, ' '); sb_c(&o, *p); sb_c(&o, ' '); }
        else sb_c(&o, *p);
    }
    sb_c(&o, ' ');
    qt_free(cur);
    char *t1 = sub2(o.p, not_digit, is_dotcomma, 0);
    qt_free(o.p);
    char *t2 = sub2(t1, is_dotcomma, not_digit, 1);
    qt_free(t1);
    char *t3 = sub2(t2, is_digit, is_dash, 0);
    qt_free(t2);
    // split on whitespace (Python str.split(): space, \t, \n, \r, \v, \f), join with one space
    sbuf w = { 0 };
    sb_put(&w, "", 0);
    for (const char *p = t3; *p;) {
        while (*p && strchr(" \t\n\r\v\f", *p)) p++;
        const char *q = p;
        while (*q && !strchr(" \t\n\r\v\f", *q)) q++;
        if (q > p) {
            if (w.n) sb_c(&w, ' ');
            sb_put(&w, p, (size_t)(q - p));
        }
        p = q;
    }
    qt_free(t3);
    return w.p;
}

// ---- token lists: (start, length) spans into a string ----

typedef struct {
    const char *s;
    int *off, *len;
    int n;
} toks;

static void split_spaces(toks *t, const char *s) {
    int cap = 16;
    t->s = s;
    t->off = qt_malloc(sizeof(int) * (size_t)cap);
    t->len = qt_malloc(sizeof(int) * (size_t)cap);
    t->n = 0;
    for (int i = 0; s[i];) {
        while (s[i] == ' ') i++;
        int j = i;
        while (s[j] && s[j] != ' ') j++;
        if (j > i) {
            if (t->n == cap) {
                cap *= 2;
                t->off = qt_realloc(t->off, sizeof(int) * (size_t)cap);
                t->len = qt_realloc(t->len, sizeof(int) * (size_t)cap);
            }
            t->off[t->n] = i;
            t->len[t->n] = j - i;
            t->n++;
        }
        i = j;
    }
}
static void toks_free(toks *t) {
    qt_free(t->off);
    qt_free(t->len);
}
static bool tok_eq(const toks *a, int i, const toks *b, int j) {
    return a->len[i] == b->len[j] && memcmp(a->s + a->off[i], b->s + b->off[j], (size_t)a->len[i]) == 0;
}
static bool ngram_eq(const toks *a, int i, const toks *b, int j, int n) {
    for (int k = 0; k < n; k++)
        if (!tok_eq(a, i + k, b, j + k)) return false;
    return true;
}

// ---- BLEU ----

void qt_bleu_add(qt_bleu_stats *s, const char *hyp, const char *ref) {
    char *th = qt_bleu_tokenize(hyp), *tr = qt_bleu_tokenize(ref);
    toks h, r;
    split_spaces(&h, th);
    split_spaces(&r, tr);
    s->sys_len += h.n;
    s->ref_len += r.n;
    for (int n = 1; n <= QT_BLEU_ORDER; n++) {
        int nh = h.n - n + 1, nr = r.n - n + 1;
        if (nh <= 0) continue;
        s->total[n - 1] += nh;
        // clipped counts: for each distinct hypothesis n-gram (its first
        // occurrence), min(count in hyp, count in ref)
        for (int i = 0; i < nh; i++) {
            bool seen = false;
            for (int j = 0; j < i && !seen; j++) seen = ngram_eq(&h, i, &h, j, n);
            if (seen) continue;
            int64_t ch = 0, cr = 0;
            for (int j = i; j < nh; j++) ch += ngram_eq(&h, i, &h, j, n);
            for (int j = 0; j < nr; j++) cr += ngram_eq(&h, i, &r, j, n);
            s->correct[n - 1] += ch < cr ? ch : cr;
        }
    }
    toks_free(&h);
    toks_free(&r);
    qt_free(th);
    qt_free(tr);
}

double qt_bleu_score(const qt_bleu_stats *s, bool effective_order) {
    // sacrebleu: no matching n-gram of any order scores 0, before any smoothing
    // ("Early stop if there are no matches", BLEU.compute_bleu)
    bool any = false;
    for (int n = 0; n < QT_BLEU_ORDER; n++) any |= s->correct[n] > 0;
    if (!any) return 0.0;
    double logsum = 0, smooth = 1;
    int order = QT_BLEU_ORDER;
    for (int n = 1; n <= QT_BLEU_ORDER; n++) {
        if (s->total[n - 1] == 0) break;   // the remaining precisions stay 0
        if (effective_order) order = n;
        double p;
        if (s->correct[n - 1] == 0) {
            smooth *= 2;
            p = 100.0 / (smooth * (double)s->total[n - 1]);
        } else {
            p = 100.0 * (double)s->correct[n - 1] / (double)s->total[n - 1];
        }
        logsum += log(p);
    }
    // orders with no hypothesis n-grams count as precision 0 (log -> -inf)
    // unless the effective order leaves them out
    int counted = 0;
    for (int n = 1; n <= QT_BLEU_ORDER && s->total[n - 1] > 0; n++) counted++;
    if (counted < order || s->sys_len == 0) return 0.0;
    double bp = s->sys_len < s->ref_len ? exp(1.0 - (double)s->ref_len / (double)s->sys_len) : 1.0;
    return bp * exp(logsum / order);
}

double qt_bleu_sentence(const char *hyp, const char *ref) {
    qt_bleu_stats s;
    memset(&s, 0, sizeof(s));
    qt_bleu_add(&s, hyp, ref);
    return qt_bleu_score(&s, true);
}

// ---- ROUGE-L ----

static bool rouge_word(unsigned char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c >= 0x80; }

static char *rouge_tokenize(const char *s) {
    sbuf o = { 0 };
    sb_put(&o, "", 0);
    bool sep = false;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        unsigned char c = (unsigned char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
        if (rouge_word(c)) {
            if (sep && o.n) sb_c(&o, ' ');
            sep = false;
            sb_c(&o, (char)c);
        } else {
            sep = true;
        }
    }
    return o.p;
}

double qt_rouge_l(const char *hyp, const char *ref, double *p, double *r) {
    char *th = rouge_tokenize(hyp), *tr = rouge_tokenize(ref);
    toks h, rf;
    split_spaces(&h, th);
    split_spaces(&rf, tr);
    // LCS length by dynamic programming over two rows
    int *prev = qt_calloc((size_t)rf.n + 1, sizeof(int)), *cur = qt_calloc((size_t)rf.n + 1, sizeof(int));
    for (int i = 1; i <= h.n; i++) {
        for (int j = 1; j <= rf.n; j++)
            cur[j] = tok_eq(&h, i - 1, &rf, j - 1) ? prev[j - 1] + 1 : QT_MAX(prev[j], cur[j - 1]);
        int *t = prev; prev = cur; cur = t;
    }
    int lcs = prev[rf.n];
    double P = h.n ? (double)lcs / h.n : 0, R = rf.n ? (double)lcs / rf.n : 0;
    double F = P + R > 0 ? 2 * P * R / (P + R) : 0;
    if (p) *p = P;
    if (r) *r = R;
    qt_free(prev);
    qt_free(cur);
    toks_free(&h);
    toks_free(&rf);
    qt_free(th);
    qt_free(tr);
    return F;
}

// ---- exact match ----

static void trim(const char **s, size_t *n) {
    const char *a = *s, *b = *s + strlen(*s);
    while (a < b && strchr(" \t\n\r\v\f", *a)) a++;
    while (b > a && strchr(" \t\n\r\v\f", b[-1])) b--;
    *s = a;
    *n = (size_t)(b - a);
}

bool qt_exact_match(const char *hyp, const char *ref) {
    size_t nh, nr;
    trim(&hyp, &nh);
    trim(&ref, &nr);
    return nh == nr && memcmp(hyp, ref, nh) == 0;
}
