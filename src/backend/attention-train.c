// attention-train.c: causal self-attention for training, streaming
// ("flash") style: the (T, T) score matrix is never materialised. The
// forward keeps only each query row's log-sum-exp; the backward recomputes
// the scores block by block. Memory is O(T * HS) per head instead of
// O(T^2) (a 7B model at T = 4096 held 16 GiB of probabilities per step
// before).
// Follows FlashAttention-2 (Dao 2023): the running max m and sum l of the
// online softmax give each row's lse in a first pass, a second pass forms the
// normalised probabilities and O (see fa_forward_worker), and the backward's D = rowsum(dO * O), P = exp(S * scale - lse),
// dS = P * (dP - D) * scale. The backward runs in two phases so that no two
// threads ever add into the same rows and the sums do not depend on the
// thread count: phase 1 by query blocks (dQ), phase 2 by key blocks (dK, dV,
// with the scores recomputed transposed).
// The products run on the kernel context's single-threaded gemm
// (qt_gemm_acc, which honours the training precision), over the causal
// blocks only.
// Reference: F.scaled_dot_product_attention(is_causal=True) with PyTorch
// autograd; tests/test-layers.c compares with a materialised double version.
#include <math.h>
#include <string.h>

#include "backend/layers-train.h"
#include "base/base.h"

// Query rows per task and keys per block: 84 = 6 x 14 and 224 = 7 x 32 =
// 16 x 14, so the products' rows are whole micro-tiles of the f32 AVX2 gemm
// (6 rows) and the AVX-512 gemms (14; the key blocks are the rows of phase
// 2's transposed products) and the forward's and phase 1's scores whole
// 32-column panels: few tiles go through the drivers' ragged-edge path.
// Phase 2's key blocks (FA_TKB) stay small: its first query chunk of each
// key block computes a triangle that is thrown away (224 there lost 4-5% on
// the AVX2 table). The earlier 48 / 128 / 128 blocks ran a TinyLlama layer's
// attention (T = 512, bf16, 2 threads, Zen 5) in 7.0 + 22.0 ms forward +
// backward, these in 5.6 + 17.3 (T = 2048: 89 + 281 -> 72 + 235 ms; f32 on
// the AVX2 table: 11.8 + 31.4 -> 12.0 + 32.6).
#define FA_TQ 84
#define FA_TK 224
#define FA_TKB 84
// Up to this T the forward keeps a task's scores (FA_TQ x T floats per
// thread) from the pass that finds the log-sum-exp for the pass that forms
// P, and the backward's phase 1 its P and dP (2 x FA_TQ x T, 5.25 MiB at
// 8192) from the pass that sums D for the pass that forms dQ, instead of
// computing them again.
#define FA_KEEP_T 8192

// Task i of n (most expensive first) runs on thread snake(i): 0, 1, ..,
// nth-1, nth-1, .., 0, 0, 1, .. so the costly early tasks spread evenly and
// the split does not depend on timing.
static bool my_task(int i, int ith, int nth) {
    int round = i / nth, pos = i % nth;
    return (round % 2 ? nth - 1 - pos : pos) == ith;
}

// dst (n_cols, n_rows) = src (n_rows, n_cols)^T, src rows src_stride apart
static void transpose(float *dst, const float *src, size_t src_stride, int n_rows, int n_cols) {
    for (int r0 = 0; r0 < n_rows; r0 += 16) {
        int r1 = QT_MIN(n_rows, r0 + 16);
        for (int c = 0; c < n_cols; c++)
            for (int r = r0; r < r1; r++) dst[(size_t)c * n_rows + r] = src[(size_t)r * src_stride + c];
    }
}

typedef struct {
    const qt_kctx *kc;
    float *out, *lse;                       // forward outputs
    float *dq, *dk, *dv;                    // backward outputs (+=)
    const float *q, *k, *v, *dout;
    const float *Kt, *Vt;                   // (NKV, HS, T)
    const float *Qt, *dOt;                  // (NH, HS, T)
    const float *LT;                        // (NH, T): lse per head
    float *DT;                              // (NH, T): D = rowsum(P * dP) per head (phase 1 writes it)
    int T, NH, NKV, HS;
    float scale;
} fa_job;

// (NKV or NH, HS, T) transposes of one head per task.
typedef struct {
    float *dst;
    const float *src;
    int T, n_heads, HS;
} tr_job;

static void transpose_heads_worker(void *ctx, int ith, int nth) {
    const tr_job *j = ctx;
    size_t stride = (size_t)j->n_heads * j->HS;
    for (int h = ith; h < j->n_heads; h += nth)
        transpose(j->dst + (size_t)h * j->HS * j->T, j->src + (size_t)h * j->HS, stride, j->T, j->HS);
}

static void transpose_heads(const qt_kctx *kc, float *dst, const float *src, int T, int n_heads, int HS) {
    tr_job j = { dst, src, T, n_heads, HS };
    qt_pool_run(kc->pool, transpose_heads_worker, &j);
}

// Valid keys of query row t in the block starting at key k0 of nk keys.
static inline int n_valid(int t, int k0, int nk) { return QT_MAX(0, QT_MIN(nk, t + 1 - k0)); }

// ---- forward ----

// Task (query head hg, block of query rows t0..t1), two passes over the
// causal key blocks: the first finds each row's log-sum-exp (running max and
// sum), the second forms the normalised probabilities P = exp(S * scale -
// lse) and accumulates O = P V. S is kept from the first pass up to
// FA_KEEP_T (computed twice beyond), and P is exactly the matrix the backward
// recomputes (and what a materialised softmax holds, also when products round
// to bf16), and O needs no rescaling.
static void fa_forward_worker(void *ctx, int ith, int nth) {
    const fa_job *j = ctx;
    const qt_kernel_table *K = j->kc->kt;
    const int T = j->T, HS = j->HS, G = j->NH / j->NKV, qd = j->NH * HS, kvd = j->NKV * HS;
    const int n_tb = (T + FA_TQ - 1) / FA_TQ;
    // keep: the task's scores from pass 1 for pass 2 (FA_TQ x T)
    const bool keep = T <= FA_KEEP_T;
    float *S = NULL, *m = NULL, *L = NULL;
    double *l = NULL;
    for (int i = 0; i < j->NH * n_tb; i++) {
        if (!my_task(i, ith, nth)) continue;
        if (!S) {
            S = qt_malloc(sizeof(float) * (keep ? (size_t)FA_TQ * T : (size_t)FA_TQ * FA_TK));
            m = qt_malloc(sizeof(float) * FA_TQ);
            L = qt_malloc(sizeof(float) * FA_TQ);
            l = qt_malloc(sizeof(double) * FA_TQ);
        }
        int hg = i % j->NH, b = n_tb - 1 - i / j->NH, h = hg / G;
        int t0 = b * FA_TQ, t1 = QT_MIN(T, t0 + FA_TQ), nr = t1 - t0;
        const float *Q = j->q + (size_t)t0 * qd + (size_t)hg * HS;
        const float *Kt = j->Kt + (size_t)h * HS * T;
        float *O = j->out + (size_t)t0 * qd + (size_t)hg * HS;
        for (int r = 0; r < nr; r++) { m[r] = -INFINITY; l[r] = 0; }
        // pass 1: lse per row
        for (int k0 = 0; k0 < t1; k0 += FA_TK) {
            int nk = QT_MIN(t1, k0 + FA_TK) - k0;
            float *Sb = keep ? S + (size_t)nr * k0 : S;
            memset(Sb, 0, sizeof(float) * (size_t)nr * nk);
            qt_gemm_acc(j->kc, nr, nk, HS, Q, qd, Kt + k0, T, Sb, nk);
            for (int r = 0; r < nr; r++) {
                int n = n_valid(t0 + r, k0, nk);
                if (n == 0) continue;
                float *s = Sb + (size_t)r * nk;
                float mn = QT_MAX(m[r], j->scale * K->max_f32(n, s));   // scale > 0: max commutes
                double sum = K->exp_sum_f32(n, s, j->scale, mn, NULL);
                l[r] = l[r] * exp((double)m[r] - mn) + sum;            // exp(-inf) = 0 on the first block
                m[r] = mn;
            }
        }
        for (int r = 0; r < nr; r++) {
            L[r] = m[r] + (float)log(l[r]);
            memset(O + (size_t)r * qd, 0, sizeof(float) * HS);
        }
        // pass 2: P = exp(S * scale - lse), O += P V
        for (int k0 = 0; k0 < t1; k0 += FA_TK) {
            int nk = QT_MIN(t1, k0 + FA_TK) - k0;
            float *Sb = keep ? S + (size_t)nr * k0 : S;
            if (!keep) {
                memset(Sb, 0, sizeof(float) * (size_t)nr * nk);
                qt_gemm_acc(j->kc, nr, nk, HS, Q, qd, Kt + k0, T, Sb, nk);
            }
            for (int r = 0; r < nr; r++) {
                float *s = Sb + (size_t)r * nk;
                int n = n_valid(t0 + r, k0, nk);
                if (n > 0) K->exp_sum_f32(n, s, j->scale, L[r], s);
                for (int c = n; c < nk; c++) s[c] = 0;
            }
            qt_gemm_acc(j->kc, nr, HS, nk, Sb, nk, j->v + (size_t)k0 * kvd + (size_t)h * HS, kvd, O, qd);
        }
        if (j->lse)
            for (int r = 0; r < nr; r++) j->lse[(size_t)(t0 + r) * j->NH + hg] = L[r];
    }
    qt_free(S);
    qt_free(m);
    qt_free(L);
    qt_free(l);
}

size_t qt_attention_train_scratch(int T, int NH, int NKV, int HS) {
    size_t t = (size_t)T, hs = (size_t)HS;
    // Kt, Vt (NKV, HS, T); Qt, dOt (NH, HS, T); LT, DT (NH, T)
    return 2 * (size_t)NKV * hs * t + 2 * (size_t)NH * hs * t + 2 * (size_t)NH * t;
}

void qt_attention_train_forward(const qt_kctx *kc, float *out, float *lse, const float *q, const float *k,
                                const float *v, int T, int NH, int NKV, int HS, float *scratch) {
    QT_ASSERT(T > 0 && NKV > 0 && NH % NKV == 0 && HS > 0);
    float *Kt = scratch;
    transpose_heads(kc, Kt, k, T, NKV, HS);
    fa_job j = { .kc = kc, .out = out, .lse = lse, .q = q, .k = k, .v = v, .Kt = Kt,
                 .T = T, .NH = NH, .NKV = NKV, .HS = HS, .scale = 1.0f / sqrtf((float)HS) };
    qt_pool_run(kc->pool, fa_forward_worker, &j);
}

// ---- backward ----

// Phase 1, task (query head hg, block of query rows t0..t1):
//   first D = rowsum(P * dP) over every key block, then for each key block:
//   S = Q Kt, P = exp(S * scale - lse), dP = dO Vt (kept from the first
//   pass up to FA_KEEP_T), dS = P * (dP - D) * scale, dQ += dS K. D is the
//   materialised softmax backward's sum, not FlashAttention's dO . O (equal in exact arithmetic): dP - D cancels, and
//   with bf16 products the two differ by a rounding that the cancellation
//   amplifies. Phase 2 reads the D this phase leaves in DT.
static void fa_backward_q_worker(void *ctx, int ith, int nth) {
    const fa_job *j = ctx;
    const qt_kernel_table *K = j->kc->kt;
    const int T = j->T, HS = j->HS, G = j->NH / j->NKV, qd = j->NH * HS, kvd = j->NKV * HS;
    const int n_tb = (T + FA_TQ - 1) / FA_TQ;
    // keep: the task's P and dP blocks from pass 0 for pass 1 (FA_TQ x T each)
    const bool keep = j->dq && T <= FA_KEEP_T;
    const size_t blk = keep ? (size_t)FA_TQ * T : (size_t)FA_TQ * FA_TK;
    float *S = NULL, *dP = NULL, *acc = NULL;
    double *Dacc = NULL;
    for (int i = 0; i < j->NH * n_tb; i++) {
        if (!my_task(i, ith, nth)) continue;
        if (!S) {
            S = qt_malloc(sizeof(float) * blk);
            dP = qt_malloc(sizeof(float) * blk);
            acc = qt_malloc(sizeof(float) * FA_TQ * (size_t)HS);
            Dacc = qt_malloc(sizeof(double) * FA_TQ);
        }
        int hg = i % j->NH, b = n_tb - 1 - i / j->NH, h = hg / G;
        int t0 = b * FA_TQ, t1 = QT_MIN(T, t0 + FA_TQ), nr = t1 - t0;
        const float *Q = j->q + (size_t)t0 * qd + (size_t)hg * HS;
        const float *dO = j->dout + (size_t)t0 * qd + (size_t)hg * HS;
        const float *lse = j->LT + (size_t)hg * T + t0;
        float *D = j->DT + (size_t)hg * T + t0;
        for (int pass = 0; pass < (j->dq ? 2 : 1); pass++) {
            if (pass == 0) memset(Dacc, 0, sizeof(double) * (size_t)nr);
            else memset(acc, 0, sizeof(float) * (size_t)nr * HS);
            for (int k0 = 0; k0 < t1; k0 += FA_TK) {
                int nk = QT_MIN(t1, k0 + FA_TK) - k0;
                float *Sb = keep ? S + (size_t)nr * k0 : S, *dPb = keep ? dP + (size_t)nr * k0 : dP;
                if (pass == 0 || !keep) {   // (kept: pass 0 left P and dP of this block)
                    memset(Sb, 0, sizeof(float) * (size_t)nr * nk);
                    memset(dPb, 0, sizeof(float) * (size_t)nr * nk);
                    qt_gemm_acc(j->kc, nr, nk, HS, Q, qd, j->Kt + (size_t)h * HS * T + k0, T, Sb, nk);
                    qt_gemm_acc(j->kc, nr, nk, HS, dO, qd, j->Vt + (size_t)h * HS * T + k0, T, dPb, nk);
                }
                for (int r = 0; r < nr; r++) {
                    float *s = Sb + (size_t)r * nk, *dp = dPb + (size_t)r * nk;
                    int n = n_valid(t0 + r, k0, nk);
                    if (n > 0 && (pass == 0 || !keep)) K->exp_sum_f32(n, s, j->scale, lse[r], s);
                    if (pass == 0) {
                        Dacc[r] += K->dot_f32_f64(n, s, dp);
                        continue;
                    }
                    K->softmax_grad_f32(n, s, dp, NULL, D[r], j->scale, s);
                    for (int c = n; c < nk; c++) s[c] = 0;
                }
                if (pass == 1)
                    qt_gemm_acc(j->kc, nr, HS, nk, Sb, nk, j->k + (size_t)k0 * kvd + (size_t)h * HS, kvd, acc, HS);
            }
            if (pass == 0)
                for (int r = 0; r < nr; r++) D[r] = (float)Dacc[r];
        }
        if (!j->dq) continue;
        // summed apart and then added: independent of dq's old value
        for (int r = 0; r < nr; r++)
            K->axpy_f32(HS, 1.0f, acc + (size_t)r * HS, j->dq + (size_t)(t0 + r) * qd + (size_t)hg * HS);
    }
    qt_free(S);
    qt_free(dP);
    qt_free(acc);
    qt_free(Dacc);
}

// Phase 2, task (kv head h, block of keys k0..k1), over the group's query
// heads in order and the query rows from k0 on (earlier rows cannot see
// these keys), scores transposed:
//   St = K Qt, Pt = exp(St * scale - lse), dPt = V dOt,
//   dSt = Pt * (dPt - D) * scale, dV += Pt dO, dK += dSt Q.
static void fa_backward_kv_worker(void *ctx, int ith, int nth) {
    const fa_job *j = ctx;
    const qt_kernel_table *K = j->kc->kt;
    const int T = j->T, HS = j->HS, G = j->NH / j->NKV, qd = j->NH * HS, kvd = j->NKV * HS;
    const int n_kb = (T + FA_TKB - 1) / FA_TKB;
    float *St = NULL, *dPt = NULL, *accv = NULL, *acck = NULL, *row = NULL;
    for (int i = 0; i < j->NKV * n_kb; i++) {
        if (!my_task(i, ith, nth)) continue;
        if (!St) {
            St = qt_malloc(sizeof(float) * FA_TKB * FA_TQ);
            dPt = qt_malloc(sizeof(float) * FA_TKB * FA_TQ);
            accv = qt_malloc(sizeof(float) * FA_TKB * (size_t)HS);
            acck = qt_malloc(sizeof(float) * FA_TKB * (size_t)HS);
            row = qt_malloc(sizeof(float) * FA_TQ);
        }
        int h = i % j->NKV, kb = i / j->NKV;   // earlier key blocks see more queries: most expensive first
        int k0 = kb * FA_TKB, nk = QT_MIN(T, k0 + FA_TKB) - k0;
        const float *Kb = j->k + (size_t)k0 * kvd + (size_t)h * HS, *Vb = j->v + (size_t)k0 * kvd + (size_t)h * HS;
        memset(accv, 0, sizeof(float) * (size_t)nk * HS);
        memset(acck, 0, sizeof(float) * (size_t)nk * HS);
        for (int g = 0; g < G; g++) {
            int hg = h * G + g;
            const float *Qt = j->Qt + (size_t)hg * HS * T, *dOt = j->dOt + (size_t)hg * HS * T;
            const float *lse = j->LT + (size_t)hg * T, *D = j->DT + (size_t)hg * T;
            for (int tq0 = k0; tq0 < T; tq0 += FA_TQ) {
                int nr = QT_MIN(T, tq0 + FA_TQ) - tq0;
                memset(St, 0, sizeof(float) * (size_t)nk * nr);
                memset(dPt, 0, sizeof(float) * (size_t)nk * nr);
                qt_gemm_acc(j->kc, nk, nr, HS, Kb, kvd, Qt + tq0, T, St, nr);
                qt_gemm_acc(j->kc, nk, nr, HS, Vb, kvd, dOt + tq0, T, dPt, nr);
                for (int a = 0; a < nk; a++) {
                    float *st = St + (size_t)a * nr, *dpt = dPt + (size_t)a * nr;
                    // query row tq0 + r sees key k0 + a iff tq0 + r >= k0 + a
                    int r0 = QT_MIN(nr, QT_MAX(0, k0 + a - tq0));
                    for (int r = 0; r < r0; r++) st[r] = 0;
                    int n = nr - r0;
                    if (n <= 0) { memset(dpt, 0, sizeof(float) * nr); continue; }
                    for (int r = 0; r < n; r++) row[r] = st[r0 + r] * j->scale - lse[tq0 + r0 + r];
                    K->exp_f32(n, row, st + r0);                                  // Pt
                    for (int r = 0; r < r0; r++) dpt[r] = 0;
                    K->softmax_grad_f32(n, st + r0, dpt + r0, D + tq0 + r0, 0.0f, j->scale, dpt + r0);   // dSt
                }
                qt_gemm_acc(j->kc, nk, HS, nr, St, nr, j->dout + (size_t)tq0 * qd + (size_t)hg * HS, qd, accv, HS);
                qt_gemm_acc(j->kc, nk, HS, nr, dPt, nr, j->q + (size_t)tq0 * qd + (size_t)hg * HS, qd, acck, HS);
            }
        }
        for (int a = 0; a < nk; a++) {   // (y += 1 * x: the bits of y + x)
            if (j->dk) K->axpy_f32(HS, 1.0f, acck + (size_t)a * HS, j->dk + (size_t)(k0 + a) * kvd + (size_t)h * HS);
            if (j->dv) K->axpy_f32(HS, 1.0f, accv + (size_t)a * HS, j->dv + (size_t)(k0 + a) * kvd + (size_t)h * HS);
        }
    }
    qt_free(St);
    qt_free(dPt);
    qt_free(accv);
    qt_free(acck);
    qt_free(row);
}

// LT (NH, T) = lse transposed
typedef struct {
    float *LT;
    const float *lse;
    int T, NH;
} ld_job;

static void ld_worker(void *ctx, int ith, int nth) {
    const ld_job *j = ctx;
    for (int hg = ith; hg < j->NH; hg += nth)
        for (int t = 0; t < j->T; t++) j->LT[(size_t)hg * j->T + t] = j->lse[(size_t)t * j->NH + hg];
}

void qt_attention_train_backward(const qt_kctx *kc, float *dq, float *dk, float *dv, const float *dout,
                                 const float *out, const float *lse, const float *q, const float *k, const float *v,
                                 int T, int NH, int NKV, int HS, float *scratch) {
    QT_ASSERT(T > 0 && NKV > 0 && NH % NKV == 0 && HS > 0);
    if (!dq && !dk && !dv) return;
    const size_t t = (size_t)T, hs = (size_t)HS;
    float *Kt = scratch, *Vt = Kt + (size_t)NKV * hs * t;
    float *Qt = Vt + (size_t)NKV * hs * t, *dOt = Qt + (size_t)NH * hs * t;
    float *LT = dOt + (size_t)NH * hs * t, *DT = LT + (size_t)NH * t;
    transpose_heads(kc, Kt, k, T, NKV, HS);
    transpose_heads(kc, Vt, v, T, NKV, HS);
    ld_job lj = { LT, lse, T, NH };
    qt_pool_run(kc->pool, ld_worker, &lj);
    fa_job j = { .kc = kc, .dq = dq, .dk = dk, .dv = dv, .q = q, .k = k, .v = v, .dout = dout, .Kt = Kt, .Vt = Vt,
                 .Qt = Qt, .dOt = dOt, .LT = LT, .DT = DT, .T = T, .NH = NH, .NKV = NKV, .HS = HS,
                 .scale = 1.0f / sqrtf((float)HS) };
    qt_pool_run(kc->pool, fa_backward_q_worker, &j);   // D always; dQ when dq
    if (dk || dv) {
        transpose_heads(kc, Qt, q, T, NH, HS);
        transpose_heads(kc, dOt, dout, T, NH, HS);
        qt_pool_run(kc->pool, fa_backward_kv_worker, &j);
    }
}
