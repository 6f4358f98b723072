// backend-cuda.c: the CUDA backend (backend.h), built with `make CUDA=1`:
// the qt_backend_ops table over the kernels and launchers of cuda-ops.h. The
// contract of every op is the CPU backend's (backend-cpu.c is the
// reference: what is written, what is "+=", which arrays are host memory);
// this file translates the engine's structs (qt_tensor, qt_seqs, the KV
// cache) into plain device pointers and sizes, polls the stop flag between
// ops, and turns failures into messages.
// Memory is device memory: tensors are uploaded once in their stored type
// (tensor_bind), activations, adapter copies and the KV cache are
// allocated here, the host sees data only through download.
// Errors: allocation and upload failures (out of device memory, an
// unsupported tensor type) are logged and returned, like the CPU backend's.
// A failure inside an op (a CUDA error: the device is in an unknown state)
// is logged with what failed and ends the process, as an assertion would:
// the engine's ops return nothing, and going on would compute garbage.
// KV cache: per layer, slot and kv head, keys (n_ctx, HS) and values (n_ctx,
// HS), both row-major (the attention kernel reads both by position).
#include "backend/backend-cuda.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda-ops.h"
#include "base/base.h"

typedef struct {
    qt_cuda *c;
    const atomic_int *stop;
} cuda_impl;

struct qt_kv {
    int n_layer, n_slots, n_ctx, NKV, HS;
    float *k, *v;          // (n_layer, n_slots, NKV, n_ctx, HS) each
    size_t bytes;          // of each
};

static cuda_impl *impl(qt_backend *be) { return be->impl; }
static qt_cuda *cu(qt_backend *be) { return impl(be)->c; }

static _Noreturn void die(qt_backend *be, const char *op) {
    qt_log_error("CUDA backend: %s failed on %s: %s", op, qt_cuda_device_name(cu(be)), qt_cuda_error(cu(be)));
    qt_log_error("the GPU cannot go on (out of memory: try a smaller --batch-size, --grad-checkpoint or a shorter "
                 "--max-seq-len; otherwise rerun with --device cpu)");
    fflush(stderr);
    abort();
}
#define RUN(be, call, op) do { if ((call) != 0) die((be), (op)); } while (0)

static bool stopped(qt_backend *be) {
    const atomic_int *s = impl(be)->stop;
    return s && atomic_load_explicit(s, memory_order_relaxed);
}

// ---- memory ----

static void *cuda_alloc(qt_backend *be, size_t n, const char *what) {
    void *p = qt_cuda_alloc(cu(be), n);
    if (!p)
        qt_log_error("%s: %s (hint: a smaller --batch-size, --grad-checkpoint, --ctx-size, or --device cpu)", what,
                     qt_cuda_error(cu(be)));
    return p;
}

static void cuda_free(qt_backend *be, void *p, size_t n) { qt_cuda_free(cu(be), p, n); }

static void cuda_upload(qt_backend *be, void *dst, const void *src, size_t n) {
    RUN(be, qt_cuda_upload(cu(be), dst, src, n), "upload");
}

static void cuda_download(qt_backend *be, void *dst, const void *src, size_t n) {
    RUN(be, qt_cuda_download(cu(be), dst, src, n), "download");
}

static void cuda_copy(qt_backend *be, void *dst, const void *src, size_t n) {
    RUN(be, qt_cuda_copy(cu(be), dst, src, n), "copy");
}

static void cuda_zero(qt_backend *be, void *p, size_t n) { RUN(be, qt_cuda_zero(cu(be), p, n), "zero"); }

static size_t tensor_bytes(const qt_tensor *t) { return qt_row_size(t->type, t->ne0) * (size_t)t->ne1; }

static int cuda_tensor_bind(qt_backend *be, qt_tensor *t) {
    if (!qt_cuda_type_supported(t->type)) {
        qt_log_error("tensor type %s is not supported on the GPU (f32, f16, bf16, q8_0, q4_0, q4_k, q6_k are): "
                     "convert the model to one of those, or use --device cpu",
                     qt_type_name(t->type));
        return QT_ERR;
    }
    size_t n = tensor_bytes(t);
    void *p = qt_cuda_alloc(cu(be), n);
    if (!p) {
        qt_log_error("the model's weights do not fit on the GPU: %s (hint: a smaller quantization such as q4_0, or "
                     "--device cpu)", qt_cuda_error(cu(be)));
        return QT_ERR;
    }
    if (qt_cuda_weight_upload(cu(be), p, t->data, t->type, t->ne0, t->ne1) != 0) {
        qt_log_error("uploading the weights to the GPU: %s", qt_cuda_error(cu(be)));
        qt_cuda_free(cu(be), p, n);
        return QT_ERR;
    }
    t->dev = p;
    return QT_OK;
}

static void cuda_tensor_unbind(qt_backend *be, qt_tensor *t) {
    if (t->dev && t->dev != t->data) qt_cuda_free(cu(be), (void *)t->dev, tensor_bytes(t));
    t->dev = NULL;
}

static void cuda_set_stop(qt_backend *be, const atomic_int *stop) { impl(be)->stop = stop; }

// ---- forward ----

static void cuda_embed(qt_backend *be, float *out, const int32_t *tokens, int64_t N, const qt_tensor *w) {
    if (stopped(be)) return;
    for (int64_t t = 0; t < N; t++) QT_ASSERT(tokens[t] >= 0 && tokens[t] < w->ne1);
    RUN(be, qt_cuda_embed(cu(be), out, tokens, N, w->dev, w->type, w->ne0, w->ne1), "embedding");
}

static void cuda_rmsnorm(qt_backend *be, float *out, float *rstd, const float *x, const qt_tensor *w, int64_t N,
                         int64_t C, float eps) {
    QT_ASSERT(w->type == QT_TYPE_F32 && w->ne0 == C);
    if (stopped(be)) return;
    RUN(be, qt_cuda_rmsnorm(cu(be), out, rstd, x, w->dev, N, C, eps), "rmsnorm");
}

static void cuda_matmul(qt_backend *be, const float *x, int64_t n_in, int64_t N, const qt_mm_out *outs, int n) {
    QT_ASSERT(n >= 1 && n <= QT_MM_MAX_OUTS && n <= QT_CUDA_MM_MAX);
    if (stopped(be)) return;
    qt_cuda_mm mo[QT_CUDA_MM_MAX];
    for (int i = 0; i < n; i++) {
        QT_ASSERT(outs[i].w->ne0 == n_in && outs[i].w->dev);
        mo[i] = (qt_cuda_mm){ outs[i].y, outs[i].w->dev, (int)outs[i].w->type, outs[i].w->ne1 };
    }
    RUN(be, qt_cuda_matmul(cu(be), x, n_in, N, mo, n), "matmul");
}

static void cuda_add_bias(qt_backend *be, float *y, const qt_tensor *b, int64_t N, int64_t n) {
    QT_ASSERT(b->type == QT_TYPE_F32 && b->ne0 == n);
    if (stopped(be)) return;
    RUN(be, qt_cuda_add_bias(cu(be), y, b->dev, N, n), "add_bias");
}

static void cuda_axpy(qt_backend *be, int64_t n, float a, const float *x, float *y) {
    if (stopped(be)) return;
    RUN(be, qt_cuda_axpy(cu(be), n, a, x, y), "axpy");
}

static void cuda_scale(qt_backend *be, int64_t n, float a, float *y) {
    if (stopped(be)) return;
    RUN(be, qt_cuda_scale(cu(be), n, a, y), "scale");
}

static void cuda_rope_table(qt_backend *be, float *cs, const int *pos, int64_t N, int HS, float theta,
                            const qt_tensor *freqs) {
    if (stopped(be)) return;
    RUN(be, qt_cuda_rope_table(cu(be), cs, pos, N, HS, theta, freqs && freqs->dev ? freqs->dev : NULL), "rope_table");
}

static void cuda_rope(qt_backend *be, float *x, const float *cs, int64_t N, int nh, int HS, qt_rope_type type,
                      bool inverse) {
    if (stopped(be)) return;
    RUN(be, qt_cuda_rope(cu(be), x, cs, N, nh, HS, type == QT_ROPE_NEOX, inverse), "rope");
}

// The batch's sequences as the kernels take them (checked as the CPU does).
static qt_cuda_seq *seq_table(const qt_seqs *s, const qt_kv *kv, qt_cuda_seq *stack, int n_stack) {
    qt_cuda_seq *t = s->n_seq <= n_stack ? stack : qt_malloc(sizeof(qt_cuda_seq) * (size_t)s->n_seq);
    for (int i = 0; i < s->n_seq; i++) {
        t[i] = (qt_cuda_seq){ s->start[i], s->start[i + 1] - s->start[i], s->pos0 ? s->pos0[i] : 0,
                              s->slot ? s->slot[i] : i };
        QT_ASSERT(t[i].T >= 0 && t[i].pos0 >= 0);
        if (kv) QT_ASSERT(t[i].slot >= 0 && t[i].slot < kv->n_slots && t[i].pos0 + t[i].T <= kv->n_ctx);
        else QT_ASSERT(t[i].pos0 == 0);
    }
    return t;
}

static void cuda_attention(qt_backend *be, float *out, float *lse, const float *q, const float *k, const float *v,
                           const qt_seqs *s, qt_kv *kv, int il, int NH, int NKV, int HS) {
    if (stopped(be)) return;
    qt_cuda_seq stack[64];
    qt_cuda_seq *t = seq_table(s, kv, stack, 64);
    float *kc = NULL, *vc = NULL;
    int n_ctx = 0;
    if (kv) {
        QT_ASSERT(kv->NKV == NKV && kv->HS == HS && il >= 0 && il < kv->n_layer);
        size_t layer = (size_t)il * kv->n_slots * (size_t)kv->NKV * kv->n_ctx * kv->HS;
        kc = kv->k + layer;
        vc = kv->v + layer;
        n_ctx = kv->n_ctx;
    }
    int rc = qt_cuda_attention(cu(be), out, kv ? NULL : lse, q, k, v, t, s->n_seq, kc, vc, n_ctx, NH, NKV, HS);
    if (t != stack) qt_free(t);
    RUN(be, rc, "attention");
}

static void cuda_swiglu(qt_backend *be, float *out, const float *gate, const float *up, int64_t n) {
    if (stopped(be)) return;
    RUN(be, qt_cuda_swiglu(cu(be), out, gate, up, n), "swiglu");
}

static void cuda_get_rows(qt_backend *be, float *dst, const float *src, const int *rows, int n_rows, int64_t C) {
    if (stopped(be)) return;
    RUN(be, qt_cuda_get_rows(cu(be), dst, src, rows, n_rows, C), "get_rows");
}

// ---- backward ----

static void cuda_matmul_t(qt_backend *be, float *dx, const float *dy, const qt_tensor *w, int64_t N) {
    if (stopped(be)) return;
    RUN(be, qt_cuda_matmul_t(cu(be), dx, dy, w->dev, w->type, w->ne0, w->ne1, N), "matmul_t");
}

static void cuda_matmul_dw(qt_backend *be, float *dw, const float *dy, const float *x, int64_t n_in, int64_t n_out,
                           int64_t N) {
    if (stopped(be)) return;
    RUN(be, qt_cuda_matmul_dw(cu(be), dw, dy, x, n_in, n_out, N), "matmul_dw");
}

static void cuda_rmsnorm_backward(qt_backend *be, float *dx, const float *dout, const float *x, const qt_tensor *w,
                                  const float *rstd, int64_t N, int64_t C) {
    QT_ASSERT(w->type == QT_TYPE_F32 && w->ne0 == C);
    if (stopped(be)) return;
    RUN(be, qt_cuda_rmsnorm_backward(cu(be), dx, dout, x, w->dev, rstd, N, C), "rmsnorm_backward");
}

static void cuda_attention_backward(qt_backend *be, float *dq, float *dk, float *dv, const float *dout,
                                    const float *out, const float *lse, const float *q, const float *k, const float *v,
                                    const qt_seqs *s, int NH, int NKV, int HS) {
    if (stopped(be)) return;
    qt_cuda_seq stack[64];
    qt_cuda_seq *t = seq_table(s, NULL, stack, 64);
    int rc = qt_cuda_attention_backward(cu(be), dq, dk, dv, dout, out, lse, q, k, v, t, s->n_seq, NH, NKV, HS);
    if (t != stack) qt_free(t);
    RUN(be, rc, "attention_backward");
}

static void cuda_swiglu_backward(qt_backend *be, float *dgate, float *dup, const float *dout, const float *gate,
                                 const float *up, int64_t n) {
    if (stopped(be)) return;
    RUN(be, qt_cuda_swiglu_backward(cu(be), dgate, dup, dout, gate, up, n), "swiglu_backward");
}

static void cuda_cross_entropy(qt_backend *be, float *losses, float *dlogits, const float *logits,
                               const int32_t *targets, float dscale, int64_t N, int64_t V) {
    if (stopped(be)) return;
    for (int64_t i = 0; i < N; i++) QT_ASSERT(targets[i] < V);
    RUN(be, qt_cuda_cross_entropy(cu(be), losses, dlogits, logits, targets, dscale, N, V), "cross_entropy");
}

static void cuda_dropout(qt_backend *be, float *dst, const float *src, int64_t n, float p, uint64_t key) {
    if (stopped(be)) return;
    // threshold and scale exactly as qt_dropout_forward computes them
    const float inv = 1.0f / (1.0f - p);
    const uint64_t thresh = (uint64_t)((double)p * 18446744073709551615.0);
    RUN(be, qt_cuda_dropout(cu(be), dst, src, n, thresh, inv, key), "dropout");
}

// ---- KV cache ----

static size_t kv_one(int n_layer, int n_slots, int n_ctx, int NKV, int HS) {
    return (size_t)n_layer * n_slots * (size_t)n_ctx * NKV * HS * sizeof(float);
}

static qt_kv *cuda_kv_init(qt_backend *be, int n_layer, int n_slots, int n_ctx, int NKV, int HS, qt_type wtype) {
    (void)wtype;   // the GPU's attention keeps its own precision
    QT_ASSERT(n_layer > 0 && n_slots > 0 && n_ctx > 0 && NKV > 0 && HS > 0);
    qt_kv *kv = qt_calloc(1, sizeof(qt_kv));
    *kv = (qt_kv){ n_layer, n_slots, n_ctx, NKV, HS, NULL, NULL, kv_one(n_layer, n_slots, n_ctx, NKV, HS) };
    kv->k = cuda_alloc(be, kv->bytes, "the KV cache (keys) on the GPU");
    kv->v = kv->k ? cuda_alloc(be, kv->bytes, "the KV cache (values) on the GPU") : NULL;
    if (!kv->v) {
        qt_cuda_free(cu(be), kv->k, kv->bytes);
        qt_free(kv);
        return NULL;
    }
    return kv;
}

static void cuda_kv_free(qt_backend *be, qt_kv *kv) {
    if (!kv) return;
    qt_cuda_free(cu(be), kv->k, kv->bytes);
    qt_cuda_free(cu(be), kv->v, kv->bytes);
    qt_free(kv);
}

// ---- the rest ----

static void cuda_mem_info(qt_backend *be, size_t *free_b, size_t *total_b, size_t *peak_b) {
    qt_cuda_mem(cu(be), free_b, total_b, NULL, peak_b);
}

static size_t cuda_scratch_bytes(qt_backend *be, int64_t n_tokens, int64_t max_in, int64_t max_out, int n_head) {
    return qt_cuda_scratch_plan(cu(be), n_tokens, max_in, max_out, n_head);
}

static void cuda_sync(qt_backend *be) { RUN(be, qt_cuda_sync(cu(be)), "sync"); }

static void cuda_destroy(qt_backend *be) {
    qt_cuda_destroy(cu(be));
    qt_free(be->impl);
    qt_free(be);
}

static const qt_backend_ops cuda_ops = {
    .alloc = cuda_alloc, .free = cuda_free, .upload = cuda_upload, .download = cuda_download, .copy = cuda_copy,
    .zero = cuda_zero, .tensor_bind = cuda_tensor_bind, .tensor_unbind = cuda_tensor_unbind,
    .set_stop = cuda_set_stop,
    .embed = cuda_embed, .rmsnorm = cuda_rmsnorm, .matmul = cuda_matmul, .add_bias = cuda_add_bias,
    .axpy = cuda_axpy, .scale = cuda_scale, .rope_table = cuda_rope_table, .rope = cuda_rope,
    .attention = cuda_attention, .swiglu = cuda_swiglu, .get_rows = cuda_get_rows,
    .matmul_t = cuda_matmul_t, .matmul_dw = cuda_matmul_dw, .rmsnorm_backward = cuda_rmsnorm_backward,
    .attention_backward = cuda_attention_backward, .swiglu_backward = cuda_swiglu_backward,
    .cross_entropy = cuda_cross_entropy, .dropout = cuda_dropout,
    .kv_init = cuda_kv_init, .kv_free = cuda_kv_free,
    .mem_info = cuda_mem_info, .scratch_bytes = cuda_scratch_bytes,
    .sync = cuda_sync, .destroy = cuda_destroy,
};

qt_backend *qt_backend_cuda_init_prec(int device, bool fp32) {
    char why[512] = "";
    qt_cuda *c = qt_cuda_create(device, fp32, why, sizeof(why));
    if (!c) {
        qt_log_error("--device cuda: %s", why);
        return NULL;
    }
    cuda_impl *ci = qt_calloc(1, sizeof(cuda_impl));
    ci->c = c;
    qt_backend *be = qt_calloc(1, sizeof(qt_backend));
    *be = (qt_backend){ .ops = &cuda_ops, .name = "cuda", .host_memory = false, .n_threads = 1, .impl = ci };
    qt_log_debug("cuda:%d: %s, %s products", device, qt_cuda_device_name(c), fp32 ? "float32" : "bf16");
    return be;
}

qt_backend *qt_backend_cuda_init(int device) {
    const char *e = getenv("QT_CUDA_FP32");
    return qt_backend_cuda_init_prec(device, e && *e && strcmp(e, "0") != 0);
}

int qt_cuda_device_count(void) {
    char why[512];
    return qt_cuda_probe(why, sizeof(why));
}

int qt_cuda_list_devices(void) {
    char why[512] = "";
    int rt, drv;
    qt_cuda_versions(&rt, &drv);
    int n = qt_cuda_probe(why, sizeof(why));
    if (n == 0) {
        qt_log_error("%s", why);
        return QT_ERR;
    }
    printf("CUDA runtime %d.%d, driver supports CUDA %d.%d\n", rt / 1000, rt % 1000 / 10, drv / 1000, drv % 1000 / 10);
    for (int i = 0; i < n; i++) {
        qt_cuda_dev_info d;
        if (qt_cuda_dev_info_get(i, &d) != 0) {
            printf("cuda:%d  (cannot read its properties)\n", i);
            continue;
        }
        printf("cuda:%d  %s  compute %d.%d  %d SMs  %.1f GiB memory, %.1f GiB free\n", i, d.name, d.cc_major,
               d.cc_minor, d.n_sm, d.total / 1073741824.0, d.free / 1073741824.0);
    }
    return QT_OK;
}
