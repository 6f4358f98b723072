// layers.c: forward passes of the Llama block's layers (see layers.h).
// References: PyTorch / transformers LlamaRMSNorm, LlamaRotaryEmbedding +
// apply_rotary_pos_emb (NEOX), llama.cpp ggml_rope (NORM), F.scaled_dot_product_attention
// with a causal mask, F.silu. Accumulations that set the numerics (norm sums,
// softmax) are in double or in a max-subtracted float form as noted. exp,
// the softmax's max/exp/sum and SwiGLU run on the kernel table's element-wise
// helpers (kernels.h: SIMD exp within QT_EXP_MAX_REL_ERR, libm's on ref).
#include "backend/layers.h"

#include <math.h>
#include <string.h>

#include "base/base.h"
#include "kernels/kernels.h"

void qt_rmsnorm_forward(const qt_kernel_table *K, float *out, float *rstd, const float *x, const float *w, int64_t T,
                        int64_t C, float eps) {
    QT_ASSERT(C > 0 && C <= INT32_MAX);
    for (int64_t t = 0; t < T; t++) {
        float r = K->rmsnorm_f32((int)C, x + (size_t)t * C, w, eps, out + (size_t)t * C);
        if (rstd) rstd[t] = r;
    }
}

void qt_rope_cache(float *cs, const int *pos, int64_t T, int HS, float theta, const float *freq_factors) {
    int half = HS / 2;
    for (int64_t t = 0; t < T; t++) {
        for (int i = 0; i < half; i++) {
            double freq = pow((double)theta, -2.0 * i / HS);
            if (freq_factors) freq /= freq_factors[i];
            double a = pos[t] * freq;
            cs[((size_t)t * half + i) * 2 + 0] = (float)cos(a);
            cs[((size_t)t * half + i) * 2 + 1] = (float)sin(a);
        }
    }
}

void qt_rope_forward(float *x, const float *cs, int64_t T, int NHX, int HS, qt_rope_type type) {
    int half = HS / 2;
    for (int64_t t = 0; t < T; t++) {
        const float *c = cs + (size_t)t * HS;
        for (int h = 0; h < NHX; h++) {
            float *v = x + ((size_t)t * NHX + h) * HS;
            for (int i = 0; i < half; i++) {
                float co = c[2 * i], si = c[2 * i + 1];
                int i0 = type == QT_ROPE_NEOX ? i : 2 * i;
                int i1 = type == QT_ROPE_NEOX ? i + half : 2 * i + 1;
                float a = v[i0], b = v[i1];
                v[i0] = a * co - b * si;
                v[i1] = a * si + b * co;
            }
        }
    }
}

// Below this many (token, head) pairs a batch takes the per-task path.
#define ATTN_MATMUL_MIN_ROWS 32
// Tokens per attention chunk in the batched path (each chunk's scores span
// only the keys its tokens can see).
#define ATTN_T_CHUNK 64

size_t qt_attention_scratch(int n_batch, int NH, int NKV, int HS, int n_ctx, int n_threads) {
    size_t G = (size_t)(NH / NKV), rows = G * (size_t)n_batch;
    size_t per_task = (size_t)n_threads * (size_t)n_ctx;
    size_t per_head = rows * (2 * (size_t)HS + (size_t)n_ctx);   // Qg, Og, S
    return QT_MAX(per_task, per_head);
}

typedef struct {
    const qt_kernel_table *kt;
    const qt_attn_seq *seqs;
    const int *task0;    // (n_seq + 1) first task of each sequence
    int n_seq, NH, NKV, HS, n_ctx;
    bool f16;            // the cache is fp16
    float *scratch;
} attn_job;

// s (n) = softmax(s * scale), scale > 0: max-subtracted (scale * max(s) is
// the max of the scaled row, rounding being monotonic), sum in double.
static void softmax_row(const qt_kernel_table *K, float *s, int n, float scale) {
    float mx = K->max_f32(n, s);
    double sum = K->exp_sum_f32(n, s, scale, scale * mx, s);
    K->scale_f32(n, (float)(1.0 / sum), s);
}

// One task per (sequence, token, head), spread over the threads round-robin
// so that later tokens (longer causal windows) do not all land on one thread.
static void attn_task_worker(void *ctx, int ith, int nth) {
    const attn_job *j = ctx;
    const qt_kernel_table *K = j->kt;
    const int group = j->NH / j->NKV;
    const float scale = 1.0f / sqrtf((float)j->HS);
    float *s = j->scratch + (size_t)ith * j->n_ctx;
    int si = 0;
    for (int task = ith; task < j->task0[j->n_seq]; task += nth) {
        while (task >= j->task0[si + 1]) si++;
        const qt_attn_seq *sq = &j->seqs[si];
        int local = task - j->task0[si], t = local / j->NH, h = local % j->NH, kvh = h / group;
        int n = sq->pos0 + t + 1;   // causal window
        const float *qh = sq->q + ((size_t)t * j->NH + h) * j->HS;
        const size_t k0 = (size_t)kvh * j->n_ctx * j->HS, v0 = (size_t)kvh * j->HS * j->n_ctx;
        float *oh = sq->out + ((size_t)t * j->NH + h) * j->HS;
        if (j->f16) {
            const uint16_t *kh = (const uint16_t *)sq->kc + k0, *vh = (const uint16_t *)sq->vt + v0;
            for (int p = 0; p < n; p++) s[p] = K->dot_f32_f16(j->HS, qh, kh + (size_t)p * j->HS) * scale;
            softmax_row(K, s, n, 1.0f);
            for (int d = 0; d < j->HS; d++) oh[d] = K->dot_f32_f16(n, s, vh + (size_t)d * j->n_ctx);
        } else {
            const float *kh = (const float *)sq->kc + k0, *vh = (const float *)sq->vt + v0;
            for (int p = 0; p < n; p++) s[p] = K->dot_f32(j->HS, qh, kh + (size_t)p * j->HS) * scale;
            softmax_row(K, s, n, 1.0f);
            for (int d = 0; d < j->HS; d++) oh[d] = K->dot_f32(n, s, vh + (size_t)d * j->n_ctx);
        }
    }
}

typedef struct {
    const qt_kernel_table *kt;
    float *S;
    int rows, G, t0, pos0, n;
    float scale;
} mask_job;

// Row r of S (rows of n) is head r % G of token t = t0 + r / G: scale, mask
// positions > pos0 + t, softmax.
static void mask_softmax_worker(void *ctx, int ith, int nth) {
    const mask_job *j = ctx;
    const qt_kernel_table *K = j->kt;
    for (int r = ith; r < j->rows; r += nth) {
        float *s = j->S + (size_t)r * j->n;
        int valid = j->pos0 + j->t0 + r / j->G + 1;
        softmax_row(K, s, valid, j->scale);
        for (int p = valid; p < j->n; p++) s[p] = 0;
    }
}

// One long sequence: per kv head, the G query heads token-major (row
// t*G + g), tokens in chunks of ATTN_T_CHUNK, each against only the keys its
// last token sees, so the masked upper triangle is (mostly) never computed.
static void attention_long(const qt_kctx *kc, const qt_attn_seq *sq, int NH, int NKV, int HS, int n_ctx,
                           qt_type kv_type, float *scratch) {
    const size_t es = qt_row_size(kv_type, 1);
    const int G = NH / NKV, T = sq->T, pos0 = sq->pos0, rows = G * T;
    float *Qg = scratch;                        // (T*G, HS)
    float *Og = Qg + (size_t)rows * HS;         // (T*G, HS)
    float *S = Og + (size_t)rows * HS;          // (chunk rows, nv)
    for (int kvh = 0; kvh < NKV; kvh++) {
        for (int t = 0; t < T; t++)
            memcpy(Qg + (size_t)t * G * HS, sq->q + ((size_t)t * NH + kvh * G) * HS, sizeof(float) * G * HS);
        for (int t0 = 0; t0 < T; t0 += ATTN_T_CHUNK) {
            int t1 = QT_MIN(T, t0 + ATTN_T_CHUNK), nv = pos0 + t1, cr = (t1 - t0) * G;
            // S (cr, nv) = Qg[t0*G:] @ K_h[:nv]^T, K_h (n_ctx, HS) dense
            qt_matmul(kc, S, Qg + (size_t)t0 * G * HS, (const char *)sq->kc + (size_t)kvh * n_ctx * HS * es, kv_type,
                      HS, nv, cr);
            mask_job mj = { kc->kt, S, cr, G, t0, pos0, nv, 1.0f / sqrtf((float)HS) };
            qt_pool_run(kc->pool, mask_softmax_worker, &mj);
            // Og[t0*G:] (cr, HS) = P @ V_h[:nv], with V_h^T (HS, n_ctx) rows n_ctx apart
            qt_matmul_strided(kc, Og + (size_t)t0 * G * HS, S, (const char *)sq->vt + (size_t)kvh * HS * n_ctx * es,
                              kv_type, nv, HS, cr, es * (size_t)n_ctx);
        }
        for (int t = 0; t < T; t++)
            memcpy(sq->out + ((size_t)t * NH + kvh * G) * HS, Og + (size_t)t * G * HS, sizeof(float) * G * HS);
    }
}

void qt_attention_forward(const qt_kctx *kc, const qt_attn_seq *seqs, int n_seq, int NH, int NKV, int HS, int n_ctx,
                          qt_type kv_type, float *scratch) {
    QT_ASSERT(NKV > 0 && NH % NKV == 0 && n_seq >= 0 && (kv_type == QT_TYPE_F32 || kv_type == QT_TYPE_F16));
    const int G = NH / NKV;
    int stack_t0[17];
    int *task0 = n_seq < 17 ? stack_t0 : qt_malloc(sizeof(int) * (size_t)(n_seq + 1));
    // short sequences: gathered into one task run; long ones: one at a time
    qt_attn_seq stack_short[16];
    qt_attn_seq *shorts = n_seq <= 16 ? stack_short : qt_malloc(sizeof(qt_attn_seq) * (size_t)n_seq);
    int n_short = 0;
    task0[0] = 0;
    for (int i = 0; i < n_seq; i++) {
        const qt_attn_seq *sq = &seqs[i];
        QT_ASSERT(sq->T >= 0 && sq->pos0 >= 0 && sq->pos0 + sq->T <= n_ctx);
        if (sq->T == 0) continue;
        if (G * sq->T < ATTN_MATMUL_MIN_ROWS) {
            shorts[n_short] = *sq;
            task0[n_short + 1] = task0[n_short] + sq->T * NH;
            n_short++;
        } else {
            attention_long(kc, sq, NH, NKV, HS, n_ctx, kv_type, scratch);
        }
    }
    if (n_short > 0) {
        attn_job j = { kc->kt, shorts, task0, n_short, NH, NKV, HS, n_ctx, kv_type == QT_TYPE_F16, scratch };
        qt_pool_run(kc->pool, attn_task_worker, &j);
    }
    if (task0 != stack_t0) qt_free(task0);
    if (shorts != stack_short) qt_free(shorts);
}

void qt_swiglu_forward(const qt_kernel_table *K, float *out, const float *gate, const float *up, int64_t N) {
    for (int64_t i = 0; i < N; i += QT_SWIGLU_CHUNK) K->swiglu_f32((int)QT_MIN(QT_SWIGLU_CHUNK, N - i), gate + i, up + i, out + i);
}

typedef struct {
    const qt_kernel_table *kt;
    float *out;
    const float *gate, *up;
} swiglu_job;

static void swiglu_range(void *ctx, int64_t i0, int64_t i1) {
    const swiglu_job *j = ctx;
    qt_swiglu_forward(j->kt, j->out + i0, j->gate + i0, j->up + i0, i1 - i0);
}

// element-wise: the split (64-byte multiples) does not change any result
void qt_swiglu_forward_pool(const qt_kctx *kc, float *out, const float *gate, const float *up, int64_t N) {
    swiglu_job j = { kc->kt, out, gate, up };
    qt_pool_for(kc->pool, N, 16, QT_SWIGLU_POOL_MIN, swiglu_range, &j);
}

void qt_embedding_forward(const qt_kernel_table *kt, float *out, const int32_t *tokens, int64_t T, const qt_tensor *embd) {
    for (int64_t t = 0; t < T; t++) {
        QT_ASSERT(tokens[t] >= 0 && tokens[t] < embd->ne1);
        qt_get_row(kt, out + (size_t)t * embd->ne0, embd->dev, embd->type, embd->ne0, tokens[t]);
    }
}

void qt_residual_forward(float *y, const float *x, int64_t N) {
    for (int64_t i = 0; i < N; i++) y[i] += x[i];
}
