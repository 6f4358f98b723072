// make-model: writes a random-weight Llama GGUF with the exact tensor shapes,
// names and metadata of a named preset (tinyllama-1.1b, llama2-7b, mistral-7b,
// mixtral-8x7b, or small smoke-test models), so qtune and llama.cpp can be
// benchmarked on identical files without downloading real weights. Mixtral is
// written as llama.cpp writes it: architecture "llama" with expert_count, the
// router ffn_gate_inp in F32 and the experts merged into 3-D ffn_*_exps.
//
// Weights are N(0, 0.02) (norm weights 1.0), drawn per row from qt_rng seeded by
// (seed, tensor, row), so the floats do not depend on the thread count or on
// the output type. They are rounded to fp16 before being stored/quantized: an
// F16 file and a Q4_0 file of the same seed hold the same weights, so
// `llama-quantize --pure x-f16.gguf Q4_0` must reproduce our q4_0 file exactly
// if both quantizers agree. Tensors are produced lazily, row by row, as the
// GGUF writer streams them out, so a 13 GB 7B F16 file never sits in memory.
//
// Deliberately not: a real tokenizer (32000 dummy pieces with <unk>, <s>, </s>
// and the 256 byte tokens so llama.cpp's SPM vocab loads), mixed quant
// recipes (every 2-D tensor, token_embd and output included, gets --type; 1-D
// norm weights are F32), or meaningful outputs.
//
// Reference: tensor names and metadata keys as llama.cpp's LLM_ARCH_LLAMA
// loader expects them (src/llama-arch.cpp, src/llama-model.cpp), GGUF v3 as in
// ggml/docs/gguf.md, ftype numbering from include/llama.h.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/base.h"
#include "base/pool.h"
#include "io/gguf.h"
#include "model/export.h"
#include "quant/types.h"

#define WEIGHT_STD 0.02f

typedef struct {
    const char *name;
    const char *gen_name;   // general.name
    int n_embd, n_ff, n_layer, n_head, n_head_kv, n_vocab, n_ctx;
    float rope_theta, norm_eps;
    int n_expert, n_expert_used;   // 0: dense
} preset;

static const preset presets[] = {
    { "tinyllama-1.1b", "TinyLlama-1.1B (random weights)", 2048, 5632, 22, 32, 4, 32000, 2048, 10000.0f, 1e-5f, 0, 0 },
    { "llama2-7b", "Llama-2-7B (random weights)", 4096, 11008, 32, 32, 32, 32000, 4096, 10000.0f, 1e-5f, 0, 0 },
    { "mistral-7b", "Mistral-7B (random weights)", 4096, 14336, 32, 32, 8, 32000, 32768, 1000000.0f, 1e-5f, 0, 0 },
    { "mixtral-8x7b", "Mixtral-8x7B (random weights)", 4096, 14336, 32, 32, 8, 32000, 32768, 1000000.0f, 1e-5f, 8, 2 },
    // stories260k-like: tiny, but every row a multiple of 256 so k-quants work.
    { "smoke", "smoke (random weights)", 256, 768, 4, 8, 4, 512, 512, 10000.0f, 1e-5f, 0, 0 },
    { "smoke-moe", "smoke MoE (random weights)", 256, 512, 4, 8, 4, 512, 512, 10000.0f, 1e-5f, 4, 2 },
};

// One tensor to produce: rows of ne0 floats, N(0, std) or constant 1; ne1 x
// ne2 rows (ne2: the experts of a merged 3-D tensor, else 1).
typedef struct {
    char name[64];
    qt_type type;
    int64_t ne0, ne1, ne2;
    bool ones;       // norm weight
} tensor_spec;

typedef struct {
    tensor_spec *specs;
    int64_t n_specs;
    uint64_t seed;
    qt_pool *pool;
    double t_start;
    bool progress;   // stderr is a terminal
    size_t bytes_done, bytes_total;
} maker;

typedef struct {
    const maker *mk;
    const tensor_spec *ts;
    int64_t tensor_index;
    uint8_t *dst;
} fill_job;

static uint64_t row_seed(uint64_t seed, int64_t tensor, int64_t row) {
    // qt_rng_seed runs splitmix64 over this, so a simple injective mix suffices.
    return seed * 0x9E3779B97F4A7C15ull ^ ((uint64_t)tensor << 40) ^ (uint64_t)row;
}

static void fill_rows(void *ctx, int ith, int nth) {
    const fill_job *job = ctx;
    const tensor_spec *ts = job->ts;
    const qt_type_traits *tt = qt_type_traits_get(ts->type);
    size_t row_bytes = qt_row_size(ts->type, ts->ne0);
    const int64_t rows = ts->ne1 * ts->ne2;
    int64_t r0 = rows * ith / nth, r1 = rows * (ith + 1) / nth;
    float *row = qt_malloc((size_t)ts->ne0 * sizeof(float));
    for (int64_t ir = r0; ir < r1; ir++) {
        if (ts->ones) {
            for (int64_t i = 0; i < ts->ne0; i++) row[i] = 1.0f;
        } else {
            qt_rng r;
            qt_rng_seed(&r, row_seed(job->mk->seed, job->tensor_index, ir));
            for (int64_t i = 0; i < ts->ne0; i++)
                row[i] = qt_fp16_to_fp32(qt_fp32_to_fp16(WEIGHT_STD * qt_rng_normal(&r)));
        }
        tt->from_float_ref(row, job->dst + (size_t)ir * row_bytes, ts->ne0);
    }
    qt_free(row);
}

static int fill_tensor(void *ctx, int64_t tensor_index, void *dst, size_t nbytes) {
    maker *mk = ctx;
    QT_ASSERT(tensor_index >= 0 && tensor_index < mk->n_specs);
    const tensor_spec *ts = &mk->specs[tensor_index];
    QT_ASSERT(nbytes == qt_row_size(ts->type, ts->ne0) * (size_t)(ts->ne1 * ts->ne2));
    fill_job job = { .mk = mk, .ts = ts, .tensor_index = tensor_index, .dst = dst };
    qt_pool_run(mk->pool, fill_rows, &job);
    mk->bytes_done += nbytes;
    if (mk->progress && (mk->bytes_done * 50 / mk->bytes_total != (mk->bytes_done - nbytes) * 50 / mk->bytes_total))
        fprintf(stderr, "\r  %7.1f / %.1f MB  %6.1f s  ", mk->bytes_done / 1e6,
                mk->bytes_total / 1e6, qt_time_s() - mk->t_start);
    return QT_OK;
}

static void add_spec3(maker *mk, qt_gguf_writer *w, const char *name, qt_type type, int64_t ne0, int64_t ne1,
                      int64_t ne2, bool ones) {
    tensor_spec *ts = &mk->specs[mk->n_specs];
    snprintf(ts->name, sizeof(ts->name), "%s", name);
    ts->type = type;
    ts->ne0 = ne0;
    ts->ne1 = ne1;
    ts->ne2 = ne2;
    ts->ones = ones;
    int64_t ne[3] = { ne0, ne1, ne2 };
    qt_gguf_add_tensor_lazy(w, ts->name, type, ne2 > 1 ? 3 : ne1 == 1 ? 1 : 2, ne, fill_tensor, mk);
    mk->bytes_total += qt_row_size(type, ne0) * (size_t)(ne1 * ne2);
    mk->n_specs++;
}

static void add_spec(maker *mk, qt_gguf_writer *w, const char *name, qt_type type,
                     int64_t ne0, int64_t ne1, bool ones) {
    add_spec3(mk, w, name, type, ne0, ne1, 1, ones);
}

// Dummy SPM vocabulary: <unk> <s> </s>, <0x00>..<0xFF> at ids 3..258, then
// "▁" followed by a base-26 word (▁a, ▁b, .., ▁aa, ..) so every piece is unique.
static char **make_vocab(int n_vocab, float *scores, int32_t *types) {
    char **toks = qt_calloc((size_t)n_vocab, sizeof(char *));
    for (int id = 0; id < n_vocab; id++) {
        char buf[32];
        if (id == 0) { snprintf(buf, sizeof(buf), "<unk>"); types[id] = 2; }
        else if (id == 1) { snprintf(buf, sizeof(buf), "<s>"); types[id] = 3; }
        else if (id == 2) { snprintf(buf, sizeof(buf), "</s>"); types[id] = 3; }
        else if (id < 259) { snprintf(buf, sizeof(buf), "<0x%02X>", id - 3); types[id] = 6; }
        else {
            char word[16];
            int n = 0;
            for (int v = id - 259;; v = v / 26 - 1) {
                word[n++] = (char)('a' + v % 26);
                if (v < 26) break;
            }
            int k = snprintf(buf, sizeof(buf), "\xe2\x96\x81");
            while (n > 0) buf[k++] = word[--n];
            buf[k] = 0;
            types[id] = 1;
        }
        scores[id] = id < 259 ? 0.0f : -(float)(id - 259);
        toks[id] = qt_strdup(buf);
    }
    return toks;
}

static void usage(void) {
    fprintf(stderr,
        "usage: make-model --preset NAME --type TYPE [-o OUT.gguf] [--seed N] [-t THREADS] [--n-layer N]\n"
        "  writes a random-weight Llama GGUF (llama.cpp-loadable) with the shapes of a preset\n"
        "  presets: ");
    for (size_t i = 0; i < QT_ARRAY_LEN(presets); i++)
        fprintf(stderr, "%s%s", i ? ", " : "", presets[i].name);
    fprintf(stderr,
        "\n  types:   f32 f16 bf16 q4_0 q4_1 q5_0 q5_1 q8_0 q2_k q3_k q4_k q5_k q6_k iq4_nl\n"
        "  default OUT: <preset>-<type>.gguf; default seed 1234; default threads: all CPUs\n"
        "  --n-layer N overrides the preset's layer count (quick tests of big shapes)\n");
}

int main(int argc, char **argv) {
    const char *preset_name = NULL, *type_name = NULL, *out = NULL;
    uint64_t seed = 1234;
    int n_threads = 0, n_layer_override = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_val = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(); return 0; }
        else if (!strcmp(a, "--preset") && has_val) preset_name = argv[++i];
        else if (!strcmp(a, "--type") && has_val) type_name = argv[++i];
        else if (!strcmp(a, "-o") && has_val) out = argv[++i];
        else if (!strcmp(a, "--seed") && has_val) seed = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(a, "-t") && has_val) n_threads = atoi(argv[++i]);
        else if (!strcmp(a, "--n-layer") && has_val) n_layer_override = atoi(argv[++i]);
        else { fprintf(stderr, "error: unknown or incomplete argument '%s'\n", a); usage(); return 1; }
    }
    if (!preset_name || !type_name) { usage(); return 1; }
    const preset *p = NULL;
    for (size_t i = 0; i < QT_ARRAY_LEN(presets); i++)
        if (!strcmp(presets[i].name, preset_name)) p = &presets[i];
    if (!p) { fprintf(stderr, "error: unknown preset '%s'\n", preset_name); usage(); return 1; }
    int t = qt_type_from_name(type_name);
    const qt_type_traits *tt = t < 0 ? NULL : qt_type_traits_get(t);
    if (!tt || !tt->from_float_ref || qt_export_file_type((qt_type)t) < 0) {
        fprintf(stderr, "error: unsupported type '%s'\n", type_name);
        usage();
        return 1;
    }
    qt_type type = (qt_type)t;
    if (p->n_embd % tt->blck_size || p->n_ff % tt->blck_size) {
        fprintf(stderr, "error: %s rows (%d, %d) are not a multiple of %s's block size %d\n",
                p->name, p->n_embd, p->n_ff, tt->name, tt->blck_size);
        return 1;
    }
    int n_layer = n_layer_override > 0 ? n_layer_override : p->n_layer;
    int head_dim = p->n_embd / p->n_head;
    int n_embd_kv = head_dim * p->n_head_kv;
    char default_out[128];
    if (!out) {
        snprintf(default_out, sizeof(default_out), "%s-%s.gguf", p->name, type_name);
        out = default_out;
    }

    qt_gguf_writer *w = qt_gguf_writer_init();
    qt_gguf_set_str(w, "general.architecture", "llama");
    qt_gguf_set_str(w, "general.name", p->gen_name);
    qt_gguf_set_u32(w, "general.file_type", (uint32_t)qt_export_file_type(type));
    if (tt->is_quantized) qt_gguf_set_u32(w, "general.quantization_version", 2);
    qt_gguf_set_u32(w, "llama.context_length", (uint32_t)p->n_ctx);
    qt_gguf_set_u32(w, "llama.embedding_length", (uint32_t)p->n_embd);
    qt_gguf_set_u32(w, "llama.feed_forward_length", (uint32_t)p->n_ff);
    qt_gguf_set_u32(w, "llama.block_count", (uint32_t)n_layer);
    qt_gguf_set_u32(w, "llama.attention.head_count", (uint32_t)p->n_head);
    qt_gguf_set_u32(w, "llama.attention.head_count_kv", (uint32_t)p->n_head_kv);
    qt_gguf_set_u32(w, "llama.rope.dimension_count", (uint32_t)head_dim);
    qt_gguf_set_f32(w, "llama.attention.layer_norm_rms_epsilon", p->norm_eps);
    qt_gguf_set_f32(w, "llama.rope.freq_base", p->rope_theta);
    qt_gguf_set_u32(w, "llama.vocab_size", (uint32_t)p->n_vocab);
    if (p->n_expert) {
        qt_gguf_set_u32(w, "llama.expert_count", (uint32_t)p->n_expert);
        qt_gguf_set_u32(w, "llama.expert_used_count", (uint32_t)p->n_expert_used);
    }

    float *scores = qt_malloc((size_t)p->n_vocab * sizeof(float));
    int32_t *ttypes = qt_malloc((size_t)p->n_vocab * sizeof(int32_t));
    char **toks = make_vocab(p->n_vocab, scores, ttypes);
    qt_gguf_set_str(w, "tokenizer.ggml.model", "llama");
    qt_gguf_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)toks, (uint64_t)p->n_vocab);
    qt_gguf_set_arr(w, "tokenizer.ggml.scores", QT_GGUF_FLOAT32, scores, (uint64_t)p->n_vocab);
    qt_gguf_set_arr(w, "tokenizer.ggml.token_type", QT_GGUF_INT32, ttypes, (uint64_t)p->n_vocab);
    qt_gguf_set_u32(w, "tokenizer.ggml.unknown_token_id", 0);
    qt_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", 1);
    qt_gguf_set_u32(w, "tokenizer.ggml.eos_token_id", 2);
    qt_gguf_set_bool(w, "tokenizer.ggml.add_bos_token", true);
    qt_gguf_set_bool(w, "tokenizer.ggml.add_eos_token", false);

    maker mk = { .seed = seed };
    mk.specs = qt_calloc((size_t)(3 + 10 * n_layer), sizeof(tensor_spec));
    // ne0 is the row (input) length; shapes as llama.cpp stores them.
    add_spec(&mk, w, "token_embd.weight", type, p->n_embd, p->n_vocab, false);
    for (int il = 0; il < n_layer; il++) {
        char name[64];
#define LAYER(suffix, ty, ne0, ne1, ones) \
        snprintf(name, sizeof(name), "blk.%d." suffix, il); add_spec(&mk, w, name, ty, ne0, ne1, ones)
        LAYER("attn_norm.weight", QT_TYPE_F32, p->n_embd, 1, true);
        LAYER("attn_q.weight", type, p->n_embd, p->n_embd, false);
        LAYER("attn_k.weight", type, p->n_embd, n_embd_kv, false);
        LAYER("attn_v.weight", type, p->n_embd, n_embd_kv, false);
        LAYER("attn_output.weight", type, p->n_embd, p->n_embd, false);
        LAYER("ffn_norm.weight", QT_TYPE_F32, p->n_embd, 1, true);
        if (p->n_expert) {   // router F32 (convert_hf_to_gguf.py), experts merged 3-D
            LAYER("ffn_gate_inp.weight", QT_TYPE_F32, p->n_embd, p->n_expert, false);
#define EXPS(suffix, ne0, ne1) \
            snprintf(name, sizeof(name), "blk.%d." suffix, il); add_spec3(&mk, w, name, type, ne0, ne1, p->n_expert, false)
            EXPS("ffn_gate_exps.weight", p->n_embd, p->n_ff);
            EXPS("ffn_down_exps.weight", p->n_ff, p->n_embd);
            EXPS("ffn_up_exps.weight", p->n_embd, p->n_ff);
#undef EXPS
        } else {
            LAYER("ffn_gate.weight", type, p->n_embd, p->n_ff, false);
            LAYER("ffn_down.weight", type, p->n_ff, p->n_embd, false);
            LAYER("ffn_up.weight", type, p->n_embd, p->n_ff, false);
        }
#undef LAYER
    }
    add_spec(&mk, w, "output_norm.weight", QT_TYPE_F32, p->n_embd, 1, true);
    add_spec(&mk, w, "output.weight", type, p->n_embd, p->n_vocab, false);

    mk.pool = qt_pool_init(n_threads);
    mk.t_start = qt_time_s();
    mk.progress = isatty(2);
    fprintf(stderr, "make-model: %s %s (%d layers), seed %llu, %d threads -> %s\n", p->name,
            tt->name, n_layer, (unsigned long long)seed, qt_pool_n_threads(mk.pool), out);
    int rc = qt_gguf_write(w, out);
    if (mk.progress) fprintf(stderr, "\n");
    if (rc == QT_OK)
        fprintf(stderr, "make-model: wrote %s: %.1f MB of tensors in %.1f s\n", out,
                mk.bytes_total / 1e6, qt_time_s() - mk.t_start);

    qt_pool_free(mk.pool);
    qt_gguf_writer_free(w);
    for (int i = 0; i < p->n_vocab; i++) qt_free(toks[i]);
    qt_free(toks);
    qt_free(scores);
    qt_free(ttypes);
    qt_free(mk.specs);
    return rc == QT_OK ? 0 : 1;
}
