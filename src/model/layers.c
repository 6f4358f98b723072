// layers.c: forward passes of the Llama block's layers (see layers.h).
// References: PyTorch / transformers LlamaRMSNorm, LlamaRotaryEmbedding +
// apply_rotary_pos_emb (NEOX), llama.cpp ggml_rope (NORM), F.scaled_dot_product_attention
// with a causal mask, F.silu. Accumulations that set the numerics (norm sums,
// softmax) are in double or in a max-subtracted float form as noted.
#include "model/layers.h"

#include <math.h>
#include <string.h>

#include "base/base.h"
#include "kernels/kernels.h"

void qt_rmsnorm_forward(float *out, float *rstd, const float *x, const float *w, int T, int C, float eps) {
    for (int t = 0; t < T; t++) {
        const float *xt = x + (size_t)t * C;
        float *ot = out + (size_t)t * C;
        double ss = 0;
        for (int i = 0; i < C; i++) ss += (double)xt[i] * xt[i];
        float r = (float)(1.0 / sqrt(ss / C + eps));
        if (rstd) rstd[t] = r;
        for (int i = 0; i < C; i++) ot[i] = xt[i] * r * w[i];
    }
}

void qt_rope_cache(float *cs, const int *pos, int T, int HS, float theta, const float *freq_factors) {
    int half = HS / 2;
    for (int t = 0; t < T; t++) {
        for (int i = 0; i < half; i++) {
            double freq = pow((double)theta, -2.0 * i / HS);
            if (freq_factors) freq /= freq_factors[i];
            double a = pos[t] * freq;
            cs[((size_t)t * half + i) * 2 + 0] = (float)cos(a);
            cs[((size_t)t * half + i) * 2 + 1] = (float)sin(a);
        }
    }
}

void qt_rope_forward(float *x, const float *cs, int T, int NHX, int HS, qt_rope_type type) {
    int half = HS / 2;
    for (int t = 0; t < T; t++) {
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

typedef struct {
    float *out;
    const float *q, *kc, *vc;
    int T, pos0, NH, NKV, HS, n_pos;
    float *scratch;
} attn_job;

// One task per (token, head) pair, spread over the threads round-robin so
// that later tokens (longer causal windows) do not all land on one thread.
static void attn_worker(void *ctx, int ith, int nth) {
    const attn_job *j = ctx;
    const qt_kernel_table *K = qt_kernels();
    const int kvdim = j->NKV * j->HS, group = j->NH / j->NKV;
    const float scale = 1.0f / sqrtf((float)j->HS);
    float *s = j->scratch + (size_t)ith * j->n_pos;
    for (int task = ith; task < j->T * j->NH; task += nth) {
        int t = task / j->NH, h = task % j->NH, kvh = h / group;
        int n = j->pos0 + t + 1;   // causal window
        const float *qh = j->q + ((size_t)t * j->NH + h) * j->HS;
        float mx = -INFINITY;
        for (int p = 0; p < n; p++) {
            s[p] = K->dot_f32(j->HS, qh, j->kc + (size_t)p * kvdim + (size_t)kvh * j->HS) * scale;
            if (s[p] > mx) mx = s[p];
        }
        double sum = 0;
        for (int p = 0; p < n; p++) { s[p] = expf(s[p] - mx); sum += s[p]; }
        float inv = (float)(1.0 / sum);
        float *oh = j->out + ((size_t)t * j->NH + h) * j->HS;
        memset(oh, 0, sizeof(float) * (size_t)j->HS);
        for (int p = 0; p < n; p++) K->axpy_f32(j->HS, s[p] * inv, j->vc + (size_t)p * kvdim + (size_t)kvh * j->HS, oh);
    }
}

void qt_attention_forward(qt_pool *pool, float *out, const float *q, const float *kc, const float *vc,
                          int T, int pos0, int NH, int NKV, int HS, float *scratch, int n_pos) {
    QT_ASSERT(NH % NKV == 0 && pos0 + T <= n_pos);
    attn_job j = { out, q, kc, vc, T, pos0, NH, NKV, HS, n_pos, scratch };
    qt_pool_run(pool, attn_worker, &j);
}

void qt_swiglu_forward(float *out, const float *gate, const float *up, int64_t N) {
    for (int64_t i = 0; i < N; i++) {
        float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

void qt_embedding_forward(float *out, const int32_t *tokens, int T, const qt_tensor *embd) {
    for (int t = 0; t < T; t++) {
        QT_ASSERT(tokens[t] >= 0 && tokens[t] < embd->ne1);
        qt_get_row(out + (size_t)t * embd->ne0, embd->data, embd->type, (int)embd->ne0, tokens[t]);
    }
}

void qt_residual_forward(float *y, const float *x, int64_t N) {
    for (int64_t i = 0; i < N; i++) y[i] += x[i];
}
