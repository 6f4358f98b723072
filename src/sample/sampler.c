// sampler.c: next-token choice from logits, in llama.cpp's default order:
// repetition penalty, top-k, top-p, min-p, temperature, then one draw.
//
// Definitions follow llama.cpp's src/llama-sampling.cpp:
//  - repetition penalty (CTRL, Keskar et al. 2019): each distinct token among
//    the last repeat_last_n accepted ones gets logit/p if logit > 0 else logit*p;
//  - top-k: the k highest logits (ties to the lower id);
//  - top-p (nucleus): the shortest prefix of the sorted candidates whose
//    softmax mass (temperature 1) reaches p, the crossing token included;
//  - min-p: tokens with prob >= min_p * max prob, i.e. logit >= max + log(min_p);
//  - temperature: logits / temp, softmax, inverse-CDF draw with qt_rng.
// At least one token always survives. temp <= 0 is greedy (penalties still apply).
//
// Cost per token for a vocabulary of n: O(n) copies plus an O(n) selection
// for top-k (a k-heap for small k, quickselect otherwise) and a sort of only
// the k survivors. Top-p without top-k sorts a
// growing prefix (64, 512, ... tokens) selected the same way and stops when it
// holds mass p, so a peaked distribution never sorts the whole vocabulary.
// Before the chain: logit bias (added), then OpenAI's frequency and presence
// penalties over the tokens counted with qt_sampler_count (the API reference's
// formula: mu[j] -= c[j] * alpha_frequency + float(c[j] > 0) * alpha_presence).
// Grammar constraints are sample/grammar.h's mask, applied by the caller.
// Not here: typical-p, mirostat, DRY, XTC.
#include "sample/sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"

typedef struct {
    float logit;
    int32_t id;
} cand;

struct qt_sampler {
    qt_sampler_params p;
    int n_vocab;
    qt_rng rng;
    int32_t *last;       // (repeat_last_n) ring of accepted tokens
    int n_last, i_last;  // filled count, next write position
    uint32_t *seen;      // (n_vocab) stamp per token: dedupes the penalty window
    uint32_t stamp;
    cand *c;             // (n_vocab) candidates
    int32_t *counts;     // (n_vocab) generated-token counts, allocated when a frequency/presence penalty is set
    int32_t *counted;    // ids with a nonzero count (to reset and to penalise without a vocabulary scan)
    int n_counted;
    int32_t *bias_ids;   // (n_bias) logit bias
    float *bias;
    int n_bias;
};

qt_sampler_params qt_sampler_defaults(void) {
    qt_sampler_params p = {
        .temp = 0.8f, .top_k = 40, .top_p = 0.95f, .min_p = 0.05f,
        .repeat_penalty = 1.0f, .repeat_last_n = 64, .frequency_penalty = 0.0f, .presence_penalty = 0.0f, .seed = 0,
    };
    return p;
}

qt_sampler *qt_sampler_init(const qt_sampler_params *p, int n_vocab) {
    QT_ASSERT(p && n_vocab > 0);
    qt_sampler *s = qt_calloc(1, sizeof(*s));
    s->p = *p;
    if (s->p.repeat_last_n < 0) s->p.repeat_last_n = 0;
    s->n_vocab = n_vocab;
    s->last = qt_malloc(((size_t)s->p.repeat_last_n + 1) * sizeof(int32_t));
    s->seen = qt_calloc((size_t)n_vocab, sizeof(uint32_t));
    s->c = qt_malloc((size_t)n_vocab * sizeof(cand));
    if (p->frequency_penalty != 0.0f || p->presence_penalty != 0.0f) {
        s->counts = qt_calloc((size_t)n_vocab, sizeof(int32_t));
        s->counted = qt_malloc((size_t)n_vocab * sizeof(int32_t));
    }
    qt_rng_seed(&s->rng, p->seed);
    return s;
}

void qt_sampler_count(qt_sampler *s, int token) {
    if (!s->counts || token < 0 || token >= s->n_vocab) return;
    if (s->counts[token]++ == 0) s->counted[s->n_counted++] = token;
}

void qt_sampler_set_bias(qt_sampler *s, const int32_t *ids, const float *bias, int n) {
    qt_free(s->bias_ids);
    qt_free(s->bias);
    s->bias_ids = NULL;
    s->bias = NULL;
    s->n_bias = 0;
    if (n <= 0) return;
    s->bias_ids = qt_malloc(sizeof(int32_t) * (size_t)n);
    s->bias = qt_malloc(sizeof(float) * (size_t)n);
    for (int i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= s->n_vocab) continue;
        s->bias_ids[s->n_bias] = ids[i];
        s->bias[s->n_bias++] = bias[i];
    }
}

void qt_sampler_free(qt_sampler *s) {
    if (!s) return;
    qt_free(s->last);
    qt_free(s->seen);
    qt_free(s->c);
    qt_free(s->counts);
    qt_free(s->counted);
    qt_free(s->bias_ids);
    qt_free(s->bias);
    qt_free(s);
}

void qt_sampler_reset(qt_sampler *s) {
    for (int i = 0; i < s->n_counted; i++) s->counts[s->counted[i]] = 0;
    s->n_counted = 0;
    s->n_last = s->i_last = 0;
    qt_rng_seed(&s->rng, s->p.seed);
}

void qt_sampler_accept(qt_sampler *s, int token) {
    if (s->p.repeat_last_n == 0) return;
    s->last[s->i_last] = token;
    s->i_last = (s->i_last + 1) % s->p.repeat_last_n;
    if (s->n_last < s->p.repeat_last_n) s->n_last++;
}

static void apply_penalty(qt_sampler *s, float *logits) {
    float pen = s->p.repeat_penalty;
    if (pen == 1.0f || pen <= 0.0f || s->n_last == 0) return;
    if (++s->stamp == 0) {   // wrapped: clear the stamps once every 2^32 calls
        memset(s->seen, 0, (size_t)s->n_vocab * sizeof(uint32_t));
        s->stamp = 1;
    }
    for (int i = 0; i < s->n_last; i++) {
        int id = s->last[i];
        if (id < 0 || id >= s->n_vocab || s->seen[id] == s->stamp) continue;
        s->seen[id] = s->stamp;
        logits[id] = logits[id] > 0 ? logits[id] / pen : logits[id] * pen;
    }
}

// a comes before b: higher logit, then lower id
static inline bool before(const cand *a, const cand *b) {
    return a->logit > b->logit || (a->logit == b->logit && a->id < b->id);
}

static int cmp_cand(const void *x, const void *y) {
    const cand *a = x, *b = y;
    return before(a, b) ? -1 : before(b, a) ? 1 : 0;
}

static void swap(cand *a, cand *b) { cand t = *a; *a = *b; *b = t; }

// Rearrange c[0..n) so that its k best (by `before`) come first, in any order.
// Quickselect with a median-of-three pivot; falls back to a full sort after
// too many rounds (an adversarial input cannot make it quadratic).
static void select_top(cand *c, int n, int k) {
    if (k >= n) return;
    int lo = 0, hi = n - 1, rounds = 0;
    while (hi > lo) {
        if (++rounds > 64) {
            qsort(c + lo, (size_t)(hi - lo + 1), sizeof(cand), cmp_cand);
            return;
        }
        int mid = lo + (hi - lo) / 2;
        if (before(&c[mid], &c[lo])) swap(&c[mid], &c[lo]);
        if (before(&c[hi], &c[lo])) swap(&c[hi], &c[lo]);
        if (before(&c[hi], &c[mid])) swap(&c[hi], &c[mid]);
        cand pivot = c[mid];
        int i = lo, j = hi;
        while (i <= j) {   // Hoare partition: [lo, j] before-or-equal pivot, [i, hi] after-or-equal
            while (before(&c[i], &pivot)) i++;
            while (before(&pivot, &c[j])) j--;
            if (i <= j) { swap(&c[i], &c[j]); i++; j--; }
        }
        // k-th element (index k-1) lies in one side
        if (k - 1 <= j) hi = j;
        else if (k - 1 >= i) lo = i;
        else return;
    }
}

// Small k: a heap of the k best seen so far, its worst at the root. Most
// candidates cost one compare against the root, so this is ~n compares.
static void sift_down(cand *h, int k, int i) {
    for (;;) {
        int w = i, l = 2 * i + 1, r = l + 1;
        if (l < k && before(&h[w], &h[l])) w = l;   // root holds the worst: a max-heap on "after"
        if (r < k && before(&h[w], &h[r])) w = r;
        if (w == i) return;
        swap(&h[i], &h[w]);
        i = w;
    }
}

static void heap_top(cand *c, int n, int k) {
    for (int i = k / 2 - 1; i >= 0; i--) sift_down(c, k, i);
    for (int i = k; i < n; i++) {
        if (before(&c[i], &c[0])) {
            swap(&c[i], &c[0]);
            sift_down(c, k, 0);
        }
    }
}

// Sorted prefix of length k: select, then sort those k.
static void sort_top(cand *c, int n, int k) {
    if (k > n) k = n;
    if (k < n) {
        if (k <= n / 32) heap_top(c, n, k);
        else select_top(c, n, k);
    }
    qsort(c, (size_t)k, sizeof(cand), cmp_cand);
}

int qt_sampler_sample(qt_sampler *s, float *logits) {
    int n = s->n_vocab;
    for (int i = 0; i < s->n_bias; i++) logits[s->bias_ids[i]] += s->bias[i];
    for (int i = 0; i < s->n_counted; i++) {
        int id = s->counted[i];
        logits[id] -= (float)s->counts[id] * s->p.frequency_penalty + s->p.presence_penalty;
    }
    apply_penalty(s, logits);

    // NaN logits never win: they become -inf
    for (int i = 0; i < n; i++) if (logits[i] != logits[i]) logits[i] = -INFINITY;

    if (s->p.temp <= 0.0f) {
        int best = 0;
        for (int i = 1; i < n; i++) if (logits[i] > logits[best]) best = i;
        return best;
    }

    cand *c = s->c;
    for (int i = 0; i < n; i++) c[i] = (cand){ logits[i], i };
    int m = n;
    bool sorted = false;

    if (s->p.top_k > 0 && s->p.top_k < m) {
        sort_top(c, m, s->p.top_k);
        m = s->p.top_k;
        sorted = true;
    }

    if (s->p.top_p < 1.0f && m > 1) {
        float mx = -INFINITY;
        for (int i = 0; i < m; i++) mx = QT_MAX(mx, c[i].logit);
        double total = 0;
        for (int i = 0; i < m; i++) total += exp((double)c[i].logit - mx);
        double target = (double)s->p.top_p * total;
        int k = sorted ? m : QT_MIN(m, 64);
        for (;;) {
            if (!sorted || k < m) sort_top(c, m, k);
            double cum = 0;
            int keep = -1;
            for (int i = 0; i < k; i++) {
                cum += exp((double)c[i].logit - mx);
                if (cum >= target) { keep = i + 1; break; }
            }
            if (keep > 0) { m = keep; sorted = true; break; }
            if (k == m) { sorted = true; break; }   // rounding: keep everything
            k = k > m / 8 ? m : k * 8;
        }
    }

    if (s->p.min_p > 0.0f && m > 1) {
        float mx = -INFINITY;
        for (int i = 0; i < m; i++) mx = QT_MAX(mx, c[i].logit);
        float thr = mx + logf(s->p.min_p);
        int j = 0;
        for (int i = 0; i < m; i++) if (c[i].logit >= thr) c[j++] = c[i];   // keeps order
        m = j;   // the max always passes: m >= 1
    }

    // temperature, softmax, draw
    float mx = -INFINITY;
    for (int i = 0; i < m; i++) mx = QT_MAX(mx, c[i].logit);
    if (mx == -INFINITY) return c[0].id;   // every logit -inf: nothing to weigh
    double total = 0;
    double inv_t = 1.0 / s->p.temp;
    for (int i = 0; i < m; i++) total += exp(((double)c[i].logit - mx) * inv_t);
    double r = (double)(qt_rng_u64(&s->rng) >> 11) * (1.0 / 9007199254740992.0) * total;
    double cum = 0;
    for (int i = 0; i < m; i++) {
        cum += exp(((double)c[i].logit - mx) * inv_t);
        if (r < cum) return c[i].id;
    }
    // rounding at the top end: the last candidate with nonzero weight
    for (int i = m - 1; i > 0; i--)
        if (exp(((double)c[i].logit - mx) * inv_t) > 0) return c[i].id;
    return c[0].id;
}
