// model-common.h: helpers shared by the model tests (included after test.h
// by tests/test-lora.c, test-moe.c, test-nf4.c): the inference loss of a
// packed batch with an adapter, reading reference files, capturing error lines.
#ifndef QT_MODEL_COMMON_H
#define QT_MODEL_COMMON_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "base/base.h"
#include "model/context.h"
#include "model/lora.h"

// Reads n bytes of a reference file at *p (advanced) into dst; -1 past end.
static inline int rd(const char **p, const char *end, void *dst, size_t n) {
    if ((size_t)(end - *p) < n) return -1;
    memcpy(dst, *p, n);
    *p += n;
    return 0;
}

// Mean cross-entropy over the targets (>= 0) of n_seq sequences laid end to
// end (seq_start (n_seq + 1)), computed by the inference context (KV cache
// path) with adapter l applied unmerged (NULL: the base).
static inline double test_infer_loss(const qt_model *m, const qt_lora *l, int n_seq, const int32_t *seq_start,
                              const int32_t *tokens, const int32_t *targets) {
    qt_backend *be = qt_backend_init("cpu", NULL);
    qt_ctx *c = qt_ctx_init(m, be, 64, 64, true);
    qt_ctx_set_adapter(c, l, 1.0f);
    double sum = 0;
    int cnt = 0;
    for (int s = 0; s < n_seq; s++) {
        int o = seq_start[s], T = seq_start[s + 1] - o;
        qt_ctx_truncate(c, 0);
        const float *lg = qt_ctx_eval(c, tokens + o, T);
        for (int t = 0; lg && t < T; t++) {
            int y = targets[o + t];
            if (y < 0) continue;
            const float *row = lg + (size_t)t * m->cfg.n_vocab;
            double mx = row[0], z = 0;
            for (int v = 1; v < m->cfg.n_vocab; v++) mx = fmax(mx, row[v]);
            for (int v = 0; v < m->cfg.n_vocab; v++) z += exp(row[v] - mx);
            sum += log(z) + mx - row[y];
            cnt++;
        }
    }
    qt_ctx_free(c);
    qt_backend_free(be);
    return cnt ? sum / cnt : NAN;
}

// Adapter gradients l->grads against reference ref (same arena layout):
// per tensor (A or B of each pair) max |g - ref| / max |ref|; the worst of
// them, and *n_bad the tensors above tol (each printed with its layer,
// linear and expert).
static inline double test_lora_grad_diff(const qt_lora *l, const float *ref, double tol, int *n_bad) {
    double worst = 0;
    *n_bad = 0;
    for (int il = l->first_layer; il < l->n_layer; il++)
        for (int k = 0; k < l->n_slots; k++) {
            const qt_lora_pair *p = qt_lora_at(l, il, k);
            if (!p->a) continue;
            size_t na = (size_t)l->cfg.rank * p->n_in, nb = (size_t)l->cfg.rank * p->n_out;
            size_t offs[2] = { p->off, p->off + na }, lens[2] = { na, nb };
            for (int ab = 0; ab < 2; ab++) {
                double mx = 0, md = 0;
                for (size_t i = 0; i < lens[ab]; i++) {
                    double g = ref[offs[ab] + i], d = fabs(l->grads[offs[ab] + i] - g);
                    mx = fmax(mx, fabs(g));
                    md = fmax(md, d);
                }
                double rel = md / (mx > 0 ? mx : 1);
                worst = fmax(worst, rel);
                if (!(rel <= tol)) {
                    (*n_bad)++;
                    fprintf(stderr, "layer %d %s (expert %d) .%c: grad rel err %.3g\n", il,
                            l->arch->linears[l->slot_lin[k]].name, l->slot_expert[k], "AB"[ab], rel);
                }
            }
        }
    return worst;
}

// Error lines logged between test_capture() and test_release(): their
// count and the last line.
static char test_last_log[2048];
static int test_n_errors;
static inline void test_log_sink(const char *line, void *ud) {
    (void)ud;
    if (!strncmp(line, "error: ", 7)) test_n_errors++;
    snprintf(test_last_log, sizeof(test_last_log), "%s", line);
}
static inline void test_capture(void) {
    test_last_log[0] = 0;
    test_n_errors = 0;
    qt_log_set_sink(test_log_sink, NULL);
}
static inline void test_release(void) { qt_log_set_sink(NULL, NULL); }

#endif
