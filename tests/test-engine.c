// test-engine.c: the engine at realistic width. A random-weight Llama with
// TinyLlama-1.1B's layer shapes (hidden 2048, intermediate 5632, 32 heads / 4
// KV heads of 64, 2 layers; vocabulary 512) is built from the counter hash
// that tests/ref/make_ref_wide.py uses (so no weights are stored), written as
// a Hugging Face folder (BF16 safetensors) and converted to GGUF; both forms
// are checked against the independent PyTorch reference tests/data/wide-ref.bin:
// logits, the LoRA loss and every adapter gradient; then batched inference of
// 4 sequences against 4 single runs, and the training step's stop flag.
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend/backend-cpu.h"
#include "backend/backend.h"
#include "base/base.h"
#include "base/pool.h"
#include "io/safetensors.h"
#include "model/context.h"
#include "model/export.h"
#include "model/lora.h"
#include "model/model.h"
#include "train/model-train.h"
#include "test.h"

// Logits against PyTorch, relative to the largest |logit| (the issue's
// "1e-4 relative to the logit scale"): fp32 sums over 2048..5632 terms.
#define LOGIT_RTOL 1e-4
// Adapter gradients, max |diff| over max |grad| per tensor.
#define GRAD_RTOL 1e-3
#define LOSS_RTOL 1e-5
// Batched vs single runs (different kernels, same math), relative to the logit scale.
#define BATCH_RTOL 1e-5
// The same with bf16 operands (2^-8 relative each) on one path and not the other.
#define BF16_RTOL 1e-2

enum { C = 2048, F = 5632, NH = 32, NKV = 4, HS = 64, NL = 2, V = 512, RANK = 4 };
#define SEED 0x5EEDull

static const char *const PROJ[7] = { "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                                     "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj" };
static const int PROJ_SHAPE[7][2] = { { NH * HS, C }, { NKV * HS, C }, { NKV * HS, C }, { C, NH * HS },
                                      { F, C }, { F, C }, { C, F } };   // (out, in)

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

// make_ref_wide.py's uniform(): u in [0, 1) of element i of tensor id
static double uniform(uint64_t id, uint64_t i) {
    uint64_t z = mix64(SEED + (id << 32) + i * 0x9e3779b97f4a7c15ull);
    return (double)(z >> 40) / 16777216.0;
}

// Tensor id's n values as bf16; kind 0 projection (1/sqrt(in)), 1 embedding, 2 norm.
static uint16_t *gen_bf16(uint64_t id, size_t n, int in, int kind) {
    uint16_t *w = qt_malloc(n * sizeof(uint16_t));
    for (size_t i = 0; i < n; i++) {
        double u = uniform(id, i), v;
        if (kind == 2) v = 1.0 + (2.0 * u - 1.0) / 10.0;
        else v = (2.0 * u - 1.0) * (kind == 1 ? 1.0 : 1.0 / sqrt((double)in));
        w[i] = qt_fp32_to_bf16((float)v);
    }
    return w;
}

typedef struct {
    int n_seq, N, n_vocab, n_params;
    int *seq_start, *tokens, *targets;
    float *logits, loss, *grads;
} wide_ref;

static int load_ref(wide_ref *r, const char *path) {
    size_t n;
    char *d = qt_read_file(path, &n);
    if (!d || n < 24 || memcmp(d, "QTWR", 4)) { qt_free(d); return -1; }
    uint32_t h[5];
    memcpy(h, d + 4, sizeof(h));
    if (h[0] != 1) { qt_free(d); return -1; }
    r->n_seq = (int)h[1]; r->N = (int)h[2]; r->n_vocab = (int)h[3]; r->n_params = (int)h[4];
    size_t need = 24 + 4 * ((size_t)r->n_seq + 1 + 2 * (size_t)r->N + (size_t)r->N * r->n_vocab + 1 + r->n_params);
    if (n != need || r->n_vocab != V) { qt_free(d); return -1; }
    const char *p = d + 24;
#define TAKE(dst, cnt) do { dst = malloc(4 * (size_t)(cnt)); memcpy(dst, p, 4 * (size_t)(cnt)); p += 4 * (size_t)(cnt); } while (0)
    TAKE(r->seq_start, r->n_seq + 1);
    TAKE(r->tokens, r->N);
    TAKE(r->targets, r->N);
    TAKE(r->logits, (size_t)r->N * r->n_vocab);
    memcpy(&r->loss, p, 4); p += 4;
    TAKE(r->grads, r->n_params);
#undef TAKE
    qt_free(d);
    return 0;
}

static char g_dir[] = "/tmp/qt-engine-XXXXXX";

// The HF folder: config.json + model.safetensors (BF16), as transformers writes them.
static void write_hf(const char *dir) {
    char path[600];
    snprintf(path, sizeof(path), "%s/config.json", dir);
    const char *cfg = "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"hidden_size\": 2048, "
                      "\"intermediate_size\": 5632, \"num_hidden_layers\": 2, \"num_attention_heads\": 32, "
                      "\"num_key_value_heads\": 4, \"vocab_size\": 512, \"max_position_embeddings\": 2048, "
                      "\"rms_norm_eps\": 1e-05, \"rope_theta\": 10000.0, \"hidden_act\": \"silu\", "
                      "\"tie_word_embeddings\": false, \"torch_dtype\": \"bfloat16\"}";
    QT_ASSERT(qt_write_file_atomic(path, cfg, strlen(cfg)) == QT_OK);
    qt_st_writer *w = qt_st_writer_init();
    qt_st_writer_meta(w, "format", "pt");
    uint16_t *bufs[32];
    char names[32][96];
    int nb = 0;
    uint64_t id = 0;
#define ADD(name_fmt, il, rows, cols, kind)                                                                   \
    do {                                                                                                  \
        snprintf(names[nb], 96, name_fmt, il);                                                            \
        bufs[nb] = gen_bf16(id++, (size_t)(rows) * (cols), cols, kind);                                   \
        int64_t sh[2] = { rows, cols };                                                                   \
        if ((rows) == 1) qt_st_writer_add(w, names[nb], QT_TYPE_BF16, 1, sh + 1, bufs[nb]);               \
        else qt_st_writer_add(w, names[nb], QT_TYPE_BF16, 2, sh, bufs[nb]);                               \
        nb++;                                                                                             \
    } while (0)
    ADD("model.embed_tokens.weight%.0d", 0, V, C, 1);
    for (int il = 0; il < NL; il++) {
        ADD("model.layers.%d.input_layernorm.weight", il, 1, C, 2);
        for (int t = 0; t < 4; t++) {
            char f[96];
            snprintf(f, sizeof(f), "model.layers.%%d.%s.weight", PROJ[t]);
            ADD(f, il, PROJ_SHAPE[t][0], PROJ_SHAPE[t][1], 0);
        }
        ADD("model.layers.%d.post_attention_layernorm.weight", il, 1, C, 2);
        for (int t = 4; t < 7; t++) {
            char f[96];
            snprintf(f, sizeof(f), "model.layers.%%d.%s.weight", PROJ[t]);
            ADD(f, il, PROJ_SHAPE[t][0], PROJ_SHAPE[t][1], 0);
        }
    }
    ADD("model.norm.weight%.0d", 0, 1, C, 2);
    ADD("lm_head.weight%.0d", 0, V, C, 0);
#undef ADD
    snprintf(path, sizeof(path), "%s/model.safetensors", dir);
    QT_ASSERT(qt_st_write(w, path) == QT_OK);
    qt_st_writer_free(w);
    for (int i = 0; i < nb; i++) qt_free(bufs[i]);
}

// max |a - b| over max |b|
static double rel_err(const float *a, const float *b, size_t n) {
    double md = 0, mx = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        md = d > md || d != d ? d : md;
        mx = fmax(mx, fabs((double)b[i]));
    }
    return md / (mx > 0 ? mx : 1);
}

static void check_logits(const char *what, const qt_model *m, qt_backend *be, const wide_ref *r) {
    qt_ctx *c = qt_ctx_init(m, be, 64, 64, true);
    double worst = 0;
    for (int s = 0; s < r->n_seq; s++) {
        int o = r->seq_start[s], T = r->seq_start[s + 1] - o;
        qt_ctx_truncate(c, 0);
        const float *lg = qt_ctx_eval(c, r->tokens + o, T);
        CHECK(lg != NULL, "%s: eval", what);
        if (lg) worst = fmax(worst, rel_err(lg, r->logits + (size_t)o * V, (size_t)T * V));
    }
    CHECK(worst <= LOGIT_RTOL, "%s: logits vs PyTorch: max |diff| / max |logit| = %.3g > %g", what, worst, LOGIT_RTOL);
    printf("%-5s logits vs PyTorch: max |diff| / max |logit| = %.3g\n", what, worst);
    qt_ctx_free(c);
}

static void check_lora(const qt_model *m, qt_backend *be, const wide_ref *r) {
    qt_lora_config cfg = qt_lora_defaults();
    cfg.rank = RANK;
    cfg.alpha = 8;
    cfg.targets = 0x7F;
    qt_lora *l = qt_lora_init(m, &cfg, 1);
    CHECK(l && (int)l->n_params == r->n_params, "adapter size %zu vs %d", l ? l->n_params : 0, r->n_params);
    if (!l || (int)l->n_params != r->n_params) { qt_lora_free(l); return; }
    for (int il = 0; il < NL; il++)
        for (int t = 0; t < 7; t++) {
            const qt_lora_pair *p = qt_lora_get(l, il, t);
            uint64_t id = 1000 + 2 * (uint64_t)(il * 7 + t);
            for (size_t i = 0; i < (size_t)RANK * p->n_in; i++)
                p->a[i] = (float)((2 * uniform(id, i) - 1) / sqrt((double)p->n_in));
            for (size_t i = 0; i < (size_t)RANK * p->n_out; i++) p->b[i] = (float)((2 * uniform(id + 1, i) - 1) * 0.05);
        }
    QT_ASSERT(qt_lora_enable_training(l) == QT_OK);
    qt_tmodel *tm = qt_tmodel_init(m, l, be, r->N, r->N, false);
    qt_batch b = { r->tokens, r->targets, r->seq_start, r->n_seq };
    int64_t n_tgt = 0;
    for (int i = 0; i < r->N; i++) n_tgt += r->targets[i] >= 0;
    double ls;
    int64_t cnt;
    CHECK(qt_tmodel_step(tm, &b, true, true, 1.0f / (float)n_tgt, 0, &ls, &cnt) == QT_OK, "training step");
    double loss = ls / (double)cnt;
    CHECK(fabs(loss - r->loss) <= LOSS_RTOL * fabs(r->loss), "loss %.7f vs PyTorch %.7f", loss, r->loss);
    double worst = 0;
    for (int il = 0; il < NL; il++)
        for (int t = 0; t < 7; t++) {
            const qt_lora_pair *p = qt_lora_get(l, il, t);
            size_t na = (size_t)RANK * p->n_in, nb = (size_t)RANK * p->n_out;
            double ea = rel_err(l->grads + p->off, r->grads + p->off, na);
            double eb = rel_err(l->grads + p->off + na, r->grads + p->off + na, nb);
            CHECK(ea <= GRAD_RTOL && eb <= GRAD_RTOL, "layer %d %s: grad rel err A %.3g B %.3g", il,
                  m->arch->linears[t].name, ea, eb);
            worst = fmax(worst, fmax(ea, eb));
        }
    printf("lora  loss %.7f (PyTorch %.7f), worst adapter gradient rel err %.3g\n", loss, r->loss, worst);

    // the stop flag: a step that sees it set ends with QT_STOPPED, and the next one runs normally
    atomic_int stop = 1;
    qt_tmodel_set_stop(tm, &stop);
    CHECK(qt_tmodel_step(tm, &b, true, true, 1.0f, 0, &ls, &cnt) == QT_STOPPED, "stop flag ends the step");
    atomic_store(&stop, 0);
    memset(l->grads, 0, sizeof(float) * l->n_params);
    CHECK(qt_tmodel_step(tm, &b, true, true, 1.0f / (float)n_tgt, 0, &ls, &cnt) == QT_OK &&
              fabs(ls / (double)cnt - loss) <= 1e-6 * fabs(loss),
          "after a stop, the next step runs normally");
    qt_tmodel_set_stop(tm, NULL);
    qt_tmodel_free(tm);
    qt_lora_free(l);
}

// 4 sequences of the reference's tokens in one batch (then 3 decode steps)
// against 4 single-sequence contexts.
static void check_batched(const qt_model *m, qt_backend *be, const wide_ref *r) {
    enum { NS = 4, STEPS = 3 };
    static const int offs[NS] = { 0, 5, 23, 7 }, lens[NS] = { 20, 16, 16, 18 };
    float *want = malloc(sizeof(float) * V * NS * (STEPS + 1));
    int32_t next[NS][STEPS];
    for (int s = 0; s < NS; s++) {
        qt_ctx *c = qt_ctx_init(m, be, 32, 32, false);
        const float *lg = qt_ctx_eval(c, r->tokens + offs[s], lens[s]);
        memcpy(want + (size_t)s * V, lg, sizeof(float) * V);
        for (int k = 0; k < STEPS; k++) {
            next[s][k] = r->tokens[(offs[s] + 3 * k + 1) % r->N];
            lg = qt_ctx_eval(c, &next[s][k], 1);
            memcpy(want + ((size_t)(k + 1) * NS + s) * V, lg, sizeof(float) * V);
        }
        qt_ctx_free(c);
    }
    qt_ctx *cb = qt_ctx_init_slots(m, be, 32, 96, NS, false);
    qt_ctx_seq seqs[NS];
    for (int s = 0; s < NS; s++) seqs[s] = (qt_ctx_seq){ r->tokens + offs[s], lens[s], s };
    double worst = 0;
    const float *lg = qt_ctx_eval_batch(cb, seqs, NS);
    for (int k = 0; lg && k <= STEPS; k++) {
        worst = fmax(worst, rel_err(lg, want + (size_t)k * NS * V, (size_t)NS * V));
        if (k == STEPS) break;
        for (int s = 0; s < NS; s++) seqs[s] = (qt_ctx_seq){ &next[s][k], 1, s };
        lg = qt_ctx_eval_batch(cb, seqs, NS);
    }
    CHECK(lg != NULL && worst <= BATCH_RTOL, "batched inference vs single runs: rel err %.3g", worst);
    printf("batched %d sequences x %d passes vs single runs: rel err %.3g\n", NS, STEPS + 1, worst);
    qt_ctx_free(cb);
    free(want);
}

// A prompt from an empty cache (T >= 64: the streaming attention) against
// the same prompt in two chunks (the second attending over the cache the
// first wrote) and one token at a time (the decode path): the last
// position's logits, within tol of the logit scale.
static void check_prompt_paths(const char *what, const qt_model *m, qt_backend *be, const wide_ref *r, double tol) {
    enum { T = 80, T1 = 7 };
    int32_t tok[T];
    for (int t = 0; t < T; t++) tok[t] = r->tokens[t % r->N];
    float want[V];
    qt_ctx *c = qt_ctx_init(m, be, 96, 96, false);
    const float *lg = qt_ctx_eval(c, tok, T);
    CHECK(lg != NULL, "%s: a %d-token prompt", what, T);
    if (lg) memcpy(want, lg, sizeof(want));
    double w2 = 1, w1 = 1;
    qt_ctx_truncate(c, 0);
    if (lg && qt_ctx_eval(c, tok, T1) && (lg = qt_ctx_eval(c, tok + T1, T - T1))) w2 = rel_err(lg, want, V);
    qt_ctx_truncate(c, 0);
    for (int t = 0; lg && t < T; t++) lg = qt_ctx_eval(c, tok + t, 1);
    if (lg) w1 = rel_err(lg, want, V);
    CHECK(w2 <= tol && w1 <= tol, "%s: a prompt whole vs in two chunks (rel err %.3g) and token by token (%.3g), "
          "tolerance %g", what, w2, w1, tol);
    printf("%s: prompt of %d whole vs %d + %d: rel err %.3g, vs token by token: %.3g\n", what, T, T1, T - T1, w2, w1);
    qt_ctx_free(c);
}

int main(void) {
    wide_ref r;
    CHECK(load_ref(&r, "tests/data/wide-ref.bin") == 0, "cannot read tests/data/wide-ref.bin");
    if (test_n_fail) TEST_END();
    QT_ASSERT(mkdtemp(g_dir));
    write_hf(g_dir);
    qt_pool *pool = qt_pool_init(2);
    qt_backend *be = qt_backend_init("cpu", pool);
    // float32 products: the parity checks hold the model's math against
    // PyTorch fp32; inference's default (FAST) rounds activations to bf16
    // against BF16 weights, as llama.cpp does (~2e-3 of the logit scale here)
    qt_backend_cpu_kctx(be)->prec = QT_PREC_F32;
    qt_model *hf = qt_model_load(g_dir);
    CHECK(hf != NULL, "the HF folder loads");
    if (hf) {
        CHECK(hf->cfg.n_embd == C && hf->cfg.n_ff == F && hf->cfg.n_head_kv == NKV && !hf->cfg.tied_output,
              "hyper-parameters");
        check_logits("hf", hf, be, &r);
        check_lora(hf, be, &r);
        // inference's own precision on BF16 weights: activations, and the
        // attention's operands, rounded to bf16 (fp32 sums); the decode path's
        // attention stays fp32
        qt_backend_cpu_kctx(be)->prec = QT_PREC_FAST;
        check_prompt_paths("bf16 weights, FAST", hf, be, &r, BF16_RTOL);
        qt_backend_cpu_kctx(be)->prec = QT_PREC_F32;
        // GGUF form: llama.cpp's names, q/k rows permuted to interleaved RoPE order
        char gpath[600], vocab[512];
        snprintf(gpath, sizeof(gpath), "%s/wide.gguf", g_dir);
        snprintf(vocab, sizeof(vocab), "%s/tinystories-260K/stories260K.gguf", test_models_dir());
        qt_export_params p = qt_export_defaults();
        p.tokenizer_gguf = vocab;
        CHECK(qt_export_gguf(hf, &p, gpath) == QT_OK, "convert to GGUF");
        qt_model *g = qt_model_load(gpath);
        CHECK(g != NULL && g->cfg.rope_type == QT_ROPE_NORM, "the GGUF form loads (interleaved RoPE)");
        if (g) check_logits("gguf", g, be, &r);
        qt_model_free(g);
        // Batched vs single runs on float32 weights: with BF16 weights the
        // inference kernels round activations to bf16 (llama.cpp's numerics),
        // and a 1e-7 difference in summation order between the T = 1 and the
        // T = 4 kernels can flip such a rounding (2^-8 relative): the two
        // would agree only to ~1e-3, which would hide a wrong slot or position.
        // F16 weights: prompts on the bf16 products too where the CPU has them
        CHECK(qt_model_quantize(hf, QT_TYPE_F16) == QT_OK, "projections to F16");
        qt_backend_cpu_kctx(be)->prec = QT_PREC_FAST;
        check_prompt_paths("f16 weights, FAST", hf, be, &r, BF16_RTOL);
        // Q8_0 weights: the cache in fp16 (the products round activations to
        // Q8 already), which token by token reads and the whole prompt's
        // streaming attention does not (it takes k, v in fp32)
        CHECK(qt_model_quantize(hf, QT_TYPE_Q8_0) == QT_OK, "projections to Q8_0");
        const qt_kctx *kx = qt_backend_cpu_kctx(be);
        CHECK(qt_backend_cpu_kv_type(kx, QT_TYPE_Q8_0) == QT_TYPE_F16 &&
                  qt_backend_cpu_kv_type(kx, QT_TYPE_BF16) == QT_TYPE_F16 &&
                  qt_backend_cpu_kv_type(kx, QT_TYPE_NF4) == QT_TYPE_F32 &&
                  qt_backend_cpu_kv_type(kx, QT_TYPE_F32) == QT_TYPE_F32,
              "KV cache types at FAST: fp16 for Q8_0 and BF16, fp32 for NF4 and F32");
        check_prompt_paths("q8_0 weights, FAST (fp16 cache)", hf, be, &r, BF16_RTOL);
        qt_backend_cpu_kctx(be)->prec = QT_PREC_F32;
        CHECK(qt_backend_cpu_kv_type(qt_backend_cpu_kctx(be), QT_TYPE_Q8_0) == QT_TYPE_F32,
              "KV cache type at F32: fp32");
        CHECK(qt_model_quantize(hf, QT_TYPE_F32) == QT_OK, "projections to F32");
        check_batched(hf, be, &r);
        check_prompt_paths("f32 weights", hf, be, &r, BATCH_RTOL);
    }
    qt_model_free(hf);
    qt_backend_free(be);
    qt_pool_free(pool);
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
    free(r.seq_start); free(r.tokens); free(r.targets); free(r.logits); free(r.grads);
    TEST_END();
}
