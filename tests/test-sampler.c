// test-sampler.c: the sampler against a plain reference written here in
// double precision (full sort, then the llama.cpp filter definitions), by
// chi-square tests on 100000 draws, plus exact checks: greedy, top-k = 1,
// determinism per seed, the repetition penalty's effect on each logit, and
// membership of every draw in the reference's candidate set on a 150k vocabulary.
#include <stdint.h>

#include "base/base.h"
#include "sample/sampler.h"
#include "test.h"

enum { N_DRAWS = 100000 };

// Chi-square acceptance: for dof degrees of freedom the statistic has mean dof
// and sd sqrt(2 dof); mean + 6 sd (+ 10 for small dof) is exceeded with
// probability < 1e-6 by a correct sampler, while a wrong filter shifts
// expected counts by thousands and the statistic by orders of magnitude.
static double chi2_bound(int dof) { return dof + 6.0 * sqrt(2.0 * dof) + 10.0; }

static qt_sampler_params params(float temp, int top_k, float top_p, float min_p, uint64_t seed) {
    qt_sampler_params p = qt_sampler_defaults();
    p.temp = temp; p.top_k = top_k; p.top_p = top_p; p.min_p = min_p; p.seed = seed;
    p.repeat_penalty = 1.0f;
    return p;
}

// Reference: probabilities after top-k, top-p, min-p, temperature (prob[] of n).
static int cmp_desc(const void *a, const void *b) {
    const double *x = a, *y = b;   // pairs (logit, id)
    if (x[0] != y[0]) return x[0] > y[0] ? -1 : 1;
    return x[1] < y[1] ? -1 : 1;
}
static void reference(const float *logits, int n, const qt_sampler_params *p, double *prob) {
    double *v = malloc(sizeof(double) * 2 * (size_t)n);
    for (int i = 0; i < n; i++) { v[2 * i] = logits[i]; v[2 * i + 1] = i; }
    qsort(v, (size_t)n, 2 * sizeof(double), cmp_desc);
    int m = n;
    if (p->top_k > 0 && p->top_k < m) m = p->top_k;
    if (p->top_p < 1.0f) {
        double z = 0, cum = 0;
        for (int i = 0; i < m; i++) z += exp(v[2 * i] - v[0]);
        for (int i = 0; i < m; i++) {
            cum += exp(v[2 * i] - v[0]) / z;
            if (cum >= p->top_p) { m = i + 1; break; }
        }
    }
    if (p->min_p > 0.0f) {
        int k = 0;
        while (k < m && exp(v[2 * k] - v[0]) >= p->min_p) k++;
        m = k;
    }
    double z = 0;
    for (int i = 0; i < n; i++) prob[i] = 0;
    for (int i = 0; i < m; i++) z += exp((v[2 * i] - v[0]) / p->temp);
    for (int i = 0; i < m; i++) prob[(int)v[2 * i + 1]] = exp((v[2 * i] - v[0]) / p->temp) / z;
    free(v);
}

static void chi_square(const char *what, const float *logits, int n, const qt_sampler_params *p, int n_draws) {
    double *prob = malloc(sizeof(double) * (size_t)n);
    long *count = calloc((size_t)n, sizeof(long));
    float *work = malloc(sizeof(float) * (size_t)n);
    reference(logits, n, p, prob);
    qt_sampler *s = qt_sampler_init(p, n);
    long out_of_range = 0;
    for (int d = 0; d < n_draws; d++) {
        memcpy(work, logits, sizeof(float) * (size_t)n);
        int id = qt_sampler_sample(s, work);
        if (id >= 0 && id < n) count[id]++;
        else out_of_range++;
    }
    CHECK(out_of_range == 0, "%s: %ld ids out of range", what, out_of_range);
    double x2 = 0;
    int k = 0;
    long forbidden = 0;
    for (int i = 0; i < n; i++) {
        if (prob[i] == 0) { forbidden += count[i]; continue; }
        double e = prob[i] * n_draws;
        x2 += (count[i] - e) * (count[i] - e) / e;
        k++;
    }
    CHECK(forbidden == 0, "%s: %ld draws of filtered-out tokens", what, forbidden);
    CHECK(x2 < chi2_bound(k - 1), "%s: chi-square %.1f over %d categories (bound %.1f)", what, x2, k,
          chi2_bound(k - 1));
    printf("%-28s %4d kept  chi2 %8.2f  (bound %.1f)\n", what, k, x2, chi2_bound(k - 1));
    qt_sampler_free(s);
    free(prob); free(count); free(work);
}

static void test_distributions(void) {
    static const double P[8] = { 0.30, 0.20, 0.15, 0.12, 0.10, 0.08, 0.03, 0.02 };
    float lg[8];
    // shuffled positions so that order in the array is not order of probability
    static const int pos[8] = { 5, 2, 7, 0, 3, 6, 1, 4 };
    for (int i = 0; i < 8; i++) lg[pos[i]] = (float)log(P[i]) + 1.5f;

    // hand-derived filter sets, to pin the reference itself:
    double prob[8];
    qt_sampler_params p = params(1.0f, 0, 0.6f, 0.0f, 1);
    reference(lg, 8, &p, prob);   // cum 0.30, 0.50, 0.65 -> three kept
    CHECK(fabs(prob[pos[0]] - 0.30 / 0.65) < 1e-6 && prob[pos[3]] == 0, "reference top-p");
    p = params(1.0f, 0, 1.0f, 0.3f, 1);
    reference(lg, 8, &p, prob);   // >= 0.09: five kept
    CHECK(prob[pos[4]] > 0 && prob[pos[5]] == 0, "reference min-p");

    p = params(1.0f, 0, 1.0f, 0.0f, 11);   chi_square("temp 1", lg, 8, &p, N_DRAWS);
    p = params(0.5f, 0, 1.0f, 0.0f, 12);   chi_square("temp 0.5", lg, 8, &p, N_DRAWS);
    p = params(1.7f, 0, 1.0f, 0.0f, 13);   chi_square("temp 1.7", lg, 8, &p, N_DRAWS);
    p = params(1.0f, 3, 1.0f, 0.0f, 14);   chi_square("top-k 3", lg, 8, &p, N_DRAWS);
    p = params(1.0f, 0, 0.6f, 0.0f, 15);   chi_square("top-p 0.6", lg, 8, &p, N_DRAWS);
    p = params(1.0f, 0, 0.35f, 0.0f, 16);  chi_square("top-p 0.35 (crossing kept)", lg, 8, &p, N_DRAWS);
    p = params(1.0f, 0, 1.0f, 0.3f, 17);   chi_square("min-p 0.3", lg, 8, &p, N_DRAWS);
    p = params(0.7f, 6, 0.8f, 0.2f, 18);   chi_square("k 6, p 0.8, min-p 0.2, t 0.7", lg, 8, &p, N_DRAWS);

    // a 300-token flat-ish vocabulary: top-p without top-k must grow its
    // sorted prefix past 64 tokens (expected counts stay >= ~50 per token)
    enum { NV = 300, N_DRAWS_BIG = 30000 };
    static float big[NV];
    qt_rng r;
    qt_rng_seed(&r, 99);
    for (int i = 0; i < NV; i++) big[i] = 0.3f * qt_rng_normal(&r);
    p = params(1.0f, 0, 0.9f, 0.0f, 19);   chi_square("300 tokens, top-p 0.9", big, NV, &p, N_DRAWS_BIG);
    p = params(1.0f, 0, 0.999f, 0.0f, 20); chi_square("300 tokens, top-p 0.999", big, NV, &p, N_DRAWS_BIG);
    p = params(0.9f, 50, 0.95f, 0.05f, 21); chi_square("300 tokens, defaults-like", big, NV, &p, N_DRAWS_BIG);
    p = params(1.0f, 8, 1.0f, 0.0f, 22);   chi_square("300 tokens, top-k 8 (heap)", big, NV, &p, N_DRAWS_BIG);
}

static void test_greedy_and_determinism(void) {
    enum { NV = 32000 };
    float *lg = malloc(sizeof(float) * NV), *w = malloc(sizeof(float) * NV);
    qt_rng r;
    qt_rng_seed(&r, 5);
    for (int i = 0; i < NV; i++) lg[i] = 3 * qt_rng_normal(&r);
    int arg = 0;
    for (int i = 1; i < NV; i++) if (lg[i] > lg[arg]) arg = i;

    qt_sampler_params p = params(0.0f, 40, 0.95f, 0.05f, 1);
    qt_sampler *s = qt_sampler_init(&p, NV);
    memcpy(w, lg, sizeof(float) * NV);
    CHECK(qt_sampler_sample(s, w) == arg, "greedy is argmax");
    qt_sampler_free(s);

    // ties go to the lowest id
    float tie[5] = { 1, 4, 2, 4, 4 };
    s = qt_sampler_init(&p, 5);
    CHECK(qt_sampler_sample(s, tie) == 1, "greedy tie to lowest id");
    qt_sampler_free(s);
    // NaN never wins
    float nan_lg[3] = { NAN, 0.5f, 0.1f };
    s = qt_sampler_init(&p, 3);
    CHECK(qt_sampler_sample(s, nan_lg) == 1, "NaN logit ignored");
    qt_sampler_free(s);

    // top-k = 1 equals greedy at any temperature and seed
    for (uint64_t seed = 0; seed < 20; seed++) {
        p = params(1.5f, 1, 1.0f, 0.0f, seed);
        s = qt_sampler_init(&p, NV);
        memcpy(w, lg, sizeof(float) * NV);
        int id = qt_sampler_sample(s, w);
        CHECK(id == arg, "top-k 1 gave %d, argmax %d", id, arg);
        qt_sampler_free(s);
    }

    // same seed, same sequence; reset replays it; another seed differs
    enum { STEPS = 200 };
    int seq[3][STEPS];
    for (int run = 0; run < 3; run++) {
        p = params(1.0f, 0, 1.0f, 0.0f, run == 2 ? 43 : 42);
        s = qt_sampler_init(&p, NV);
        for (int t = 0; t < STEPS; t++) {
            memcpy(w, lg, sizeof(float) * NV);
            seq[run][t] = qt_sampler_sample(s, w);
        }
        if (run == 0) {   // reset replays
            qt_sampler_reset(s);
            memcpy(w, lg, sizeof(float) * NV);
            CHECK(qt_sampler_sample(s, w) == seq[0][0], "reset restarts the stream");
        }
        qt_sampler_free(s);
    }
    CHECK(memcmp(seq[0], seq[1], sizeof(seq[0])) == 0, "same seed, same tokens");
    CHECK(memcmp(seq[0], seq[2], sizeof(seq[0])) != 0, "different seed, different tokens");
    free(lg); free(w);
}

static void test_repetition_penalty(void) {
    float lg[6] = { 2.0f, -1.0f, 0.5f, 3.0f, 0.0f, -2.0f };
    qt_sampler_params p = params(0.0f, 0, 1.0f, 0.0f, 1);
    p.repeat_penalty = 2.0f;
    p.repeat_last_n = 3;
    qt_sampler *s = qt_sampler_init(&p, 6);
    qt_sampler_accept(s, 5);   // falls out of the window of 3
    qt_sampler_accept(s, 0);
    qt_sampler_accept(s, 1);
    qt_sampler_accept(s, 1);   // repeated: penalized once, not twice
    float w[6];
    memcpy(w, lg, sizeof(w));
    qt_sampler_sample(s, w);
    const float want[6] = { 1.0f, -2.0f, 0.5f, 3.0f, 0.0f, -2.0f };
    for (int i = 0; i < 6; i++) CHECK(w[i] == want[i], "penalized logit %d: %g, want %g", i, w[i], want[i]);
    qt_sampler_free(s);

    // the penalty can change the greedy choice
    p.repeat_last_n = 64;
    s = qt_sampler_init(&p, 6);
    qt_sampler_accept(s, 3);
    memcpy(w, lg, sizeof(w));
    CHECK(qt_sampler_sample(s, w) == 0, "penalized 3.0 -> 1.5 loses to 2.0");
    qt_sampler_reset(s);   // forgets the history
    memcpy(w, lg, sizeof(w));
    CHECK(qt_sampler_sample(s, w) == 3, "after reset no penalty");
    qt_sampler_free(s);
}

// Large vocabulary: every draw lies in the reference candidate set, and the
// cost per token stays small.
static void test_large_vocab(void) {
    enum { NV = 150000, STEPS = 100 };
    float *lg = malloc(sizeof(float) * NV), *w = malloc(sizeof(float) * NV);
    double *prob = malloc(sizeof(double) * NV);
    qt_rng r;
    qt_rng_seed(&r, 7);
    for (int i = 0; i < NV; i++) lg[i] = 2.5f * qt_rng_normal(&r);
    static const struct { int k; float p, mp; } CFG[] = {
        { 40, 0.95f, 0.05f }, { 0, 0.95f, 0.0f }, { 0, 0.5f, 0.0f }, { 1000, 1.0f, 0.0f }, { 10000, 0.9f, 0.0f }, { 0, 1.0f, 0.1f },
    };
    for (size_t c = 0; c < QT_ARRAY_LEN(CFG); c++) {
        qt_sampler_params p = params(0.8f, CFG[c].k, CFG[c].p, CFG[c].mp, 3 + c);
        reference(lg, NV, &p, prob);
        qt_sampler *s = qt_sampler_init(&p, NV);
        int bad = 0;
        double t0 = qt_time_s();
        for (int t = 0; t < STEPS; t++) {
            memcpy(w, lg, sizeof(float) * NV);
            int id = qt_sampler_sample(s, w);
            bad += id < 0 || id >= NV || prob[id] == 0;
        }
        double ms = (qt_time_s() - t0) * 1e3 / STEPS;
        CHECK(bad == 0, "150k vocab config %zu: %d draws outside the candidate set", c, bad);
        printf("150k vocab, top-k %d top-p %.2f min-p %.2f: %.3f ms/token\n", CFG[c].k, CFG[c].p, CFG[c].mp, ms);
        // generous (ASan, loaded CI machine); a full sort per token is ~10-20 ms
        const double MAX_MS_TOPK = 50.0;
        if (CFG[c].k > 0) CHECK(ms < MAX_MS_TOPK, "top-k path %.2f ms/token", ms);
        qt_sampler_free(s);
    }
    free(lg); free(w); free(prob);
}

// OpenAI's penalties and logit bias, checked on the logits the chain then
// sees: greedy picks argmax(logit + bias - count * frequency - (count > 0) * presence),
// counts over the tokens given to qt_sampler_count only (not the prompt's).
static void test_openai_penalties(void) {
    enum { NV = 6 };
    const float base[NV] = { 1.0f, 2.0f, 2.5f, 0.5f, 2.2f, -1.0f };
    qt_sampler_params p = qt_sampler_defaults();
    p.temp = 0;
    p.frequency_penalty = 0.4f;
    p.presence_penalty = 0.3f;
    qt_sampler *s = qt_sampler_init(&p, NV);
    qt_sampler_accept(s, 2);   // a prompt token: no effect on the OpenAI penalties
    int counts[NV] = { 0 };
    for (int step = 0; step < 12; step++) {
        float lg[NV];
        memcpy(lg, base, sizeof(lg));
        int want = 0;
        double best = -1e30;
        for (int i = 0; i < NV; i++) {
            double v = base[i] - counts[i] * 0.4 - (counts[i] > 0 ? 0.3 : 0.0);
            if (v > best) { best = v; want = i; }
        }
        int got = qt_sampler_sample(s, lg);
        CHECK(got == want, "penalised greedy step %d: got %d, want %d", step, got, want);
        qt_sampler_accept(s, got);
        qt_sampler_count(s, got);
        counts[got]++;
    }
    qt_sampler_reset(s);   // counts forgotten
    float lg[NV];
    memcpy(lg, base, sizeof(lg));
    CHECK(qt_sampler_sample(s, lg) == 2, "after reset the best logit wins again");
    const int32_t ids[2] = { 2, 5 };
    const float bias[2] = { -100.0f, 3.5f };
    qt_sampler_set_bias(s, ids, bias, 2);
    memcpy(lg, base, sizeof(lg));
    CHECK(qt_sampler_sample(s, lg) == 5 && lg[5] == base[5] + 3.5f, "bias +3.5 lifts token 5 to the top (%g)", lg[5]);
    const int32_t bad[1] = { 99 };
    qt_sampler_set_bias(s, bad, bias, 1);   // out of range: ignored
    memcpy(lg, base, sizeof(lg));
    CHECK(qt_sampler_sample(s, lg) == 2, "an out-of-range bias id is ignored");
    qt_sampler_free(s);
}

int main(void) {
    test_distributions();
    test_greedy_and_determinism();
    test_repetition_penalty();
    test_openai_penalties();
    test_large_vocab();
    TEST_END();
}
