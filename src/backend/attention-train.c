// attention-train.c: causal self-attention for training, streaming
// ("flash") style: the (T, T) score matrix is never materialised. The
// forward keeps only each query row's log-sum-exp; the backward recomputes
// the scores block by block. Memory is O(T * HS) per head instead of
// O(T^2) (a 7B model at T = 4096 held 16 GiB of probabilities per step
// before).
// Follows FlashAttention-2 (Dao 2023): the forward finds each row's max in a
// first pass and forms exp(S * scale - max), its sum l and O in a second (see
// fa_forward_worker); the backward recomputes P = exp(S * scale - lse) and
// forms dS = P * (dP - D) * scale with D = rowsum(P * dP). The backward's
// tasks are query heads: each sums its dQ rows and its own share of dK and
// dV, and a last pass adds the shares of a group's heads in order, so that no
// two threads ever add into the same memory and no sum depends on the thread
// count.
// The products run on the kernel context's single-threaded gemm
// (qt_gemm_acc, which honours the training precision), over the causal
// blocks only.
// Reference: F.scaled_dot_product_attention(is_causal=True) with PyTorch
// autograd; tests/test-layers.c compares with a materialised double version.
#include <math.h>
#include <string.h>

#include "backend/layers-train.h"
#include "base/base.h"

// Query rows per task and keys per block: 112 = 8 x 14, the AVX-512 gemms'
// micro-tile rows, and 448 = 14 x 32, whole 32-column panels of the scores.
// A TinyLlama layer's attention (T = 512, bf16, 2 threads, Zen 5), forward +
// backward: 84 x 224 blocks 3.4 + 9.1 ms, 112 x 448 3.0 + 8.1 (T = 2048: 42.6
// + 105.8 -> 37.4 + 95.3; f32 on the AVX2 table, whose micro-tiles have 6
// rows: 7.9 + 19.1 -> 7.5 + 18.1); 56, 98, 126, 140, 168 rows and 168 to 896
// keys measured between the two. (Before the one-exp forward and the
// five-product backward: 4.1 + 12.5 ms.)
#define FA_TQ 112
#define FA_TK 448
// Up to this T the forward keeps a task's scores (FA_TQ x T floats per
// thread) from the pass that finds the max for the pass that forms the
// exponentials, and the backward its P and dP (2 x FA_TQ x T, 7 MiB at 8192)
// from the pass that sums D for the pass that forms dS, instead of computing
// them again.
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
    const float *LT;                        // (NH, T): lse per head
    float *dKp, *dVp;                       // (NH, HS, T): each query head's share of dK, dV transposed
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

// Task (query head hg, block of query rows t0..t1), passes over the causal
// key blocks:
//   1: S = Q Kt and each row's max m of the scaled scores (beyond FA_KEEP_T,
//      where S is not kept: the running max and sum of the online softmax);
//   2 (S kept): E = exp(S * scale - m) in S's place and their sum l (double);
//   3: P = E / l (kept; not kept: P = exp(S * scale - lse) on S computed
//      again), O += P V; lse = m + log(l).
// P is the normalised softmax, as a materialised one holds it (and rounds it
// to bf16 for P V with bf16 products), each score's exp taken once while S is
// kept. (The earlier second exp, P = exp(S * scale - lse), cost 0.5 ms of a
// 4 ms TinyLlama layer forward at T = 512, bf16, Zen 5; leaving P
// unnormalised and O / l instead rounds other values to bf16 than PyTorch's
// softmax @ V does and moved test-lora's bf16 loss by 2.5e-3.)
static void fa_forward_worker(void *ctx, int ith, int nth) {
    const fa_job *j = ctx;
    const qt_kernel_table *K = j->kc->kt;
    const int T = j->T, HS = j->HS, G = j->NH / j->NKV, qd = j->NH * HS, kvd = j->NKV * HS;
    const int n_tb = (T + FA_TQ - 1) / FA_TQ;
    // keep: the task's scores from pass 1 for passes 2 and 3 (FA_TQ x T)
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
        for (int r = 0; r < nr; r++) {
            m[r] = -INFINITY;
            l[r] = 0;
            memset(O + (size_t)r * qd, 0, sizeof(float) * HS);
        }
        // pass 1: S, the max per row (not kept: and the running sum)
        for (int k0 = 0; k0 < t1; k0 += FA_TK) {
            int nk = QT_MIN(t1, k0 + FA_TK) - k0;
            float *Sb = keep ? S + (size_t)nr * k0 : S;
            qt_gemm_set(j->kc, nr, nk, HS, Q, qd, Kt + k0, T, Sb, nk);
            for (int r = 0; r < nr; r++) {
                int n = n_valid(t0 + r, k0, nk);
                if (n == 0) continue;
                float *s = Sb + (size_t)r * nk;
                float mn = QT_MAX(m[r], j->scale * K->max_f32(n, s));   // scale > 0: max commutes
                if (!keep)   // exp(-inf) = 0 on the first block
                    l[r] = l[r] * exp((double)m[r] - mn) + K->exp_sum_f32(n, s, j->scale, mn, NULL);
                m[r] = mn;
            }
        }
        // pass 2 (kept): E = exp(S * scale - m), l = rowsum(E)
        for (int k0 = 0; keep && k0 < t1; k0 += FA_TK) {
            int nk = QT_MIN(t1, k0 + FA_TK) - k0;
            for (int r = 0; r < nr; r++) {
                float *s = S + (size_t)nr * k0 + (size_t)r * nk;
                int n = n_valid(t0 + r, k0, nk);
                if (n > 0) l[r] += K->exp_sum_f32(n, s, j->scale, m[r], s);
            }
        }
        for (int r = 0; r < nr; r++) L[r] = m[r] + (float)log(l[r]);   // every row sees its own key: l >= 1
        // pass 3: P, O += P V
        for (int k0 = 0; k0 < t1; k0 += FA_TK) {
            int nk = QT_MIN(t1, k0 + FA_TK) - k0;
            float *Sb = keep ? S + (size_t)nr * k0 : S;
            if (!keep) {
                qt_gemm_set(j->kc, nr, nk, HS, Q, qd, Kt + k0, T, Sb, nk);
            }
            for (int r = 0; r < nr; r++) {
                float *s = Sb + (size_t)r * nk;
                int n = n_valid(t0 + r, k0, nk);
                if (n > 0 && keep) K->scale_f32(n, (float)(1.0 / l[r]), s);
                else if (n > 0) K->exp_sum_f32(n, s, j->scale, L[r], s);
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
    // Kt, Vt (NKV, HS, T); dKp, dVp (NH, HS, T); LT (NH, T)
    return 2 * (size_t)NKV * hs * t + 2 * (size_t)NH * hs * t + (size_t)NH * t;
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

// Task (query head hg), query blocks in order. Per block two passes over the
// causal key blocks:
//   pass 0: S = Q Kt, dP = dO Vt, P = exp(S * scale - lse), D = rowsum(P * dP)
//   pass 1: dS = P * (dP - D) * scale, dQ += dS K, dV^T += dO^T P, dK^T += Q^T dS
//           (the last two with their A given transposed: dO and Q as they are)
// P and dP are kept from pass 0 for pass 1 up to FA_KEEP_T (computed again
// beyond), so each block costs five products and one exp. D is the
// materialised softmax backward's sum, not FlashAttention's dO . O (equal in
// exact arithmetic): dP - D cancels, and with bf16 products the two differ by
// a rounding that the cancellation amplifies. dK and dV of head hg are summed
// into its own transposed partials dKp, dVp (HS, T), which the reduce below
// adds over the group's query heads in order: no two threads add into the same
// memory and no sum depends on the thread count. (The earlier split, dQ by
// query blocks and then dK, dV by key blocks with the scores computed again
// transposed, took seven products and two exps a block: 12.5 ms for a
// TinyLlama layer at T = 512 in bf16 on Zen 5, 2 threads.)
static void fa_backward_worker(void *ctx, int ith, int nth) {
    const fa_job *j = ctx;
    const qt_kernel_table *K = j->kc->kt;
    const int T = j->T, HS = j->HS, G = j->NH / j->NKV, qd = j->NH * HS, kvd = j->NKV * HS;
    const bool kv = j->dk || j->dv;
    const bool keep = T <= FA_KEEP_T;
    const size_t blk = keep ? (size_t)FA_TQ * T : (size_t)FA_TQ * FA_TK;
    float *S = NULL, *dP = NULL, *acc = NULL, *D = NULL;
    double *Dacc = NULL;
    for (int hg = 0; hg < j->NH; hg++) {
        if (!my_task(hg, ith, nth)) continue;
        if (!S) {
            S = qt_malloc(sizeof(float) * blk);
            dP = qt_malloc(sizeof(float) * blk);
            acc = qt_malloc(sizeof(float) * FA_TQ * (size_t)HS);
            D = qt_malloc(sizeof(float) * FA_TQ);
            Dacc = qt_malloc(sizeof(double) * FA_TQ);
        }
        const int h = hg / G;
        const float *Kt = j->Kt + (size_t)h * HS * T, *Vt = j->Vt + (size_t)h * HS * T;
        float *dKp = j->dKp + (size_t)hg * HS * T, *dVp = j->dVp + (size_t)hg * HS * T;
        if (kv) {
            memset(dKp, 0, sizeof(float) * (size_t)HS * T);
            memset(dVp, 0, sizeof(float) * (size_t)HS * T);
        }
        for (int t0 = 0; t0 < T; t0 += FA_TQ) {
            const int t1 = QT_MIN(T, t0 + FA_TQ), nr = t1 - t0;
            const float *Q = j->q + (size_t)t0 * qd + (size_t)hg * HS;
            const float *dO = j->dout + (size_t)t0 * qd + (size_t)hg * HS;
            const float *lse = j->LT + (size_t)hg * T + t0;
            memset(Dacc, 0, sizeof(double) * (size_t)nr);
            if (j->dq) memset(acc, 0, sizeof(float) * (size_t)nr * HS);
            for (int pass = 0; pass < 2; pass++) {
                for (int k0 = 0; k0 < t1; k0 += FA_TK) {
                    int nk = QT_MIN(t1, k0 + FA_TK) - k0;
                    float *Sb = keep ? S + (size_t)nr * k0 : S, *dPb = keep ? dP + (size_t)nr * k0 : dP;
                    if (pass == 0 || !keep) {   // (kept: pass 0 left P and dP of this block)
                        qt_gemm_set(j->kc, nr, nk, HS, Q, qd, Kt + k0, T, Sb, nk);
                        qt_gemm_set(j->kc, nr, nk, HS, dO, qd, Vt + k0, T, dPb, nk);
                        for (int r = 0; r < nr; r++) {   // P, zero on the masked keys
                            float *s = Sb + (size_t)r * nk;
                            int n = n_valid(t0 + r, k0, nk);
                            if (n > 0) K->exp_sum_f32(n, s, j->scale, lse[r], s);
                            for (int c = n; c < nk; c++) s[c] = 0;
                            if (pass == 0) Dacc[r] += K->dot_f32_f64(n, s, dPb + (size_t)r * nk);
                        }
                    }
                    if (pass == 0) continue;
                    for (int r = 0; r < nr; r++) {   // dS into dP's place
                        float *dp = dPb + (size_t)r * nk;
                        int n = n_valid(t0 + r, k0, nk);
                        K->softmax_grad_f32(n, Sb + (size_t)r * nk, dp, NULL, D[r], j->scale, dp);
                        for (int c = n; c < nk; c++) dp[c] = 0;
                    }
                    if (j->dq)
                        qt_gemm_acc(j->kc, nr, HS, nk, dPb, nk, j->k + (size_t)k0 * kvd + (size_t)h * HS, kvd, acc, HS);
                    if (kv) {
                        qt_gemm_acc_at(j->kc, HS, nk, nr, dO, qd, Sb, nk, dVp + k0, T);
                        qt_gemm_acc_at(j->kc, HS, nk, nr, Q, qd, dPb, nk, dKp + k0, T);
                    }
                }
                if (pass == 0)
                    for (int r = 0; r < nr; r++) D[r] = (float)Dacc[r];
            }
            if (!j->dq) continue;
            // summed apart and then added: independent of dq's old value
            for (int r = 0; r < nr; r++)
                K->axpy_f32(HS, 1.0f, acc + (size_t)r * HS, j->dq + (size_t)(t0 + r) * qd + (size_t)hg * HS);
        }
    }
    qt_free(S);
    qt_free(dP);
    qt_free(acc);
    qt_free(D);
    qt_free(Dacc);
}

// dk, dv (T, NKV*HS) += the sums over each group's query heads, in order, of
// the partials dKp, dVp (NH, HS, T) transposed; tasks: (kv head, FA_RED_T
// tokens), summed in a (HS, FA_RED_T) tile from 0, then added.
#define FA_RED_T 64
static void fa_reduce_worker(void *ctx, int ith, int nth) {
    const fa_job *j = ctx;
    const qt_kernel_table *K = j->kc->kt;
    const int T = j->T, HS = j->HS, G = j->NH / j->NKV, kvd = j->NKV * HS;
    const int n_tt = (T + FA_RED_T - 1) / FA_RED_T;
    float *tile = NULL;
    for (int i = ith; i < j->NKV * n_tt; i += nth) {
        if (!tile) tile = qt_malloc(sizeof(float) * (size_t)HS * FA_RED_T);
        int h = i / n_tt, ta = (i % n_tt) * FA_RED_T, nt = QT_MIN(T, ta + FA_RED_T) - ta;
        for (int w = 0; w < 2; w++) {
            float *dst = w ? j->dv : j->dk;
            const float *part = w ? j->dVp : j->dKp;
            if (!dst) continue;
            memset(tile, 0, sizeof(float) * (size_t)HS * FA_RED_T);
            for (int d = 0; d < HS; d++)
                for (int g = 0; g < G; g++)
                    K->axpy_f32(nt, 1.0f, part + ((size_t)(h * G + g) * HS + d) * T + ta, tile + (size_t)d * FA_RED_T);
            for (int t = 0; t < nt; t++) {
                float *y = dst + (size_t)(ta + t) * kvd + (size_t)h * HS;
                for (int d = 0; d < HS; d++) y[d] += tile[(size_t)d * FA_RED_T + t];
            }
        }
    }
    qt_free(tile);
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
    float *dKp = Vt + (size_t)NKV * hs * t, *dVp = dKp + (size_t)NH * hs * t;
    float *LT = dVp + (size_t)NH * hs * t;
    transpose_heads(kc, Kt, k, T, NKV, HS);
    transpose_heads(kc, Vt, v, T, NKV, HS);
    ld_job lj = { LT, lse, T, NH };
    qt_pool_run(kc->pool, ld_worker, &lj);
    fa_job j = { .kc = kc, .dq = dq, .dk = dk, .dv = dv, .q = q, .k = k, .v = v, .dout = dout, .Kt = Kt, .Vt = Vt,
                 .dKp = dKp, .dVp = dVp, .LT = LT, .T = T, .NH = NH, .NKV = NKV, .HS = HS,
                 .scale = 1.0f / sqrtf((float)HS) };
    qt_pool_run(kc->pool, fa_backward_worker, &j);
    if (dk || dv) qt_pool_run(kc->pool, fa_reduce_worker, &j);
}
