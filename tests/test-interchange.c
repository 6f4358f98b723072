// test-interchange.c: adapters and models in other tools' formats, on
// stories260K (GGUF form: interleaved q/k rows; HF form: rotate_half rows).
//   - llama.cpp GGUF LoRA: write -> read gives identical tensors and scale,
//     from both forms; the same adapter through PEFT and GGUF LoRA gives
//     identical logits; written from the HF form and read onto the GGUF form
//     it gives the HF form's logits (q/k permutation, LOGIT_ATOL).
//   - mlx-lm adapters (transposed a/b, `scale`): same tensors as PEFT.
//   - fuse: the merged F32 model's logits equal the adapter-applied logits
//     within LOGIT_ATOL and its greedy text is the same; likewise from the HF
//     form through the GGUF writer (metadata, q/k permute, vocabulary).
//   - quantize: every type loads, keeps llama-quantize's high-precision and
//     fallback rules, and its matrices' RMSE against F32 is below the type's
//     bound; RMSE per type is printed (for BENCHMARKS.md).
//   - convert: HF stories260K -> GGUF F32 gives the GGUF original's logits.
//   - corrupt / mismatched adapters: NULL and one error naming the file.
#include <limits.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/base.h"
#include "io/gguf.h"
#include "io/safetensors.h"
#include "model/arch-llama.h"
#include "model/context.h"
#include "model/export.h"
#include "model/lora-io.h"
#include "model/model.h"
#include "quant/quant.h"
#include "test.h"

#define LOGIT_ATOL 1e-4
#define N_GREEDY 40

static char tmpdir[] = "/tmp/qt-interchange-XXXXXX";

static char *tpath(const char *name) {
    static char buf[8][512];
    static int k;
    char *p = buf[k++ % 8];
    snprintf(p, 512, "%s/%s", tmpdir, name);
    return p;
}

// ---- captured log ----
static char last_err[1024];
static int n_err;
static void sink(const char *line, void *ud) {
    (void)ud;
    if (strstr(line, "error")) {
        snprintf(last_err, sizeof(last_err), "%s", line);
        n_err++;
    }
}

static const int32_t prompt[] = { 1, 403, 407, 261, 378, 66, 385, 261, 301, 286, 453, 412 };
#define N_PROMPT ((int)(sizeof(prompt) / sizeof(prompt[0])))

static float *logits(const qt_model *m, const qt_lora *l, float scale) {
    qt_ctx *c = qt_ctx_init(m, NULL, 64, 64, true);
    QT_ASSERT(c);
    if (l) qt_ctx_set_adapter(c, l, scale);
    const float *lg = qt_ctx_eval(c, prompt, N_PROMPT);
    QT_ASSERT(lg);
    size_t n = (size_t)N_PROMPT * m->cfg.n_vocab;
    float *out = qt_malloc(sizeof(float) * n);
    memcpy(out, lg, sizeof(float) * n);
    qt_ctx_free(c);
    return out;
}

static void greedy(const qt_model *m, const qt_lora *l, int32_t *out) {
    qt_ctx *c = qt_ctx_init(m, NULL, N_PROMPT + N_GREEDY + 1, 64, false);
    QT_ASSERT(c);
    if (l) qt_ctx_set_adapter(c, l, 1.0f);
    const float *lg = qt_ctx_eval(c, prompt, N_PROMPT);
    for (int i = 0; i < N_GREEDY; i++) {
        int best = 0;
        for (int v = 1; v < m->cfg.n_vocab; v++)
            if (lg[v] > lg[best]) best = v;
        out[i] = best;
        lg = qt_ctx_eval(c, &out[i], 1);
    }
    qt_ctx_free(c);
}

static double max_diff(const float *a, const float *b, size_t n) {
    double d = 0;
    for (size_t i = 0; i < n; i++) d = fmax(d, fabs((double)a[i] - b[i]));
    return d;
}

// An adapter with non-zero A and B on every projection of the last 4 layers.
static qt_lora *make_lora(const qt_model *m, bool rslora) {
    qt_lora_config cfg = qt_lora_defaults();
    cfg.rank = 4;
    cfg.alpha = 8;
    cfg.rslora = rslora;
    cfg.targets = (1u << m->arch->n_linears) - 1;
    cfg.n_layers = 4;
    qt_lora *l = qt_lora_init(m, &cfg, 7);
    QT_ASSERT(l);
    qt_rng rng;
    qt_rng_seed(&rng, 11);
    for (int il = l->first_layer; il < l->n_layer; il++)
        for (int t = 0; t < l->n_linears; t++) {
            const qt_lora_pair *p = qt_lora_get(l, il, t);
            for (int i = 0; i < p->n_out * cfg.rank; i++) p->b[i] = 0.2f * (qt_rng_f32(&rng) - 0.5f);
        }
    return l;
}

static bool same_lora(const qt_lora *a, const qt_lora *b) {
    return a && b && a->n_params == b->n_params && a->first_layer == b->first_layer &&
           a->cfg.targets == b->cfg.targets && a->cfg.rank == b->cfg.rank && fabsf(a->scale - b->scale) <= 1e-6f * a->scale &&
           !memcmp(a->params, b->params, sizeof(float) * a->n_params);
}

// mlx-lm layout of adapter l (from a model in HF row order): lora_a = A^T, lora_b = B^T.
static void write_mlx(const qt_lora *l, const char *dir) {
    mkdir(dir, 0755);
    qt_st_writer *w = qt_st_writer_init();
    const int r = l->cfg.rank;
    float *bufs[2 * 5 * QT_MAX_LINEARS];
    int nb = 0;
    char names[2 * 5 * QT_MAX_LINEARS][96];
    for (int il = l->first_layer; il < l->n_layer; il++)
        for (int t = 0; t < l->n_linears; t++) {
            const qt_lora_pair *p = qt_lora_get(l, il, t);
            float *at = qt_malloc(sizeof(float) * (size_t)r * p->n_in), *bt = qt_malloc(sizeof(float) * (size_t)r * p->n_out);
            for (int k = 0; k < r; k++)
                for (int c = 0; c < p->n_in; c++) at[(size_t)c * r + k] = p->a[(size_t)k * p->n_in + c];
            for (int o = 0; o < p->n_out; o++)
                for (int k = 0; k < r; k++) bt[(size_t)k * p->n_out + o] = p->b[(size_t)o * r + k];
            int64_t sa[2] = { p->n_in, r }, sb[2] = { r, p->n_out };
            char mod[80];
            snprintf(mod, sizeof(mod), l->arch->linears[t].hf, il);
            snprintf(names[nb], 96, "%s.lora_a", mod);
            qt_st_writer_add(w, names[nb], QT_TYPE_F32, 2, sa, at);
            bufs[nb++] = at;
            snprintf(names[nb], 96, "%s.lora_b", mod);
            qt_st_writer_add(w, names[nb], QT_TYPE_F32, 2, sb, bt);
            bufs[nb++] = bt;
        }
    char path[600];
    snprintf(path, sizeof(path), "%s/adapters.safetensors", dir);
    QT_ASSERT(qt_st_write(w, path) == QT_OK);
    qt_st_writer_free(w);
    for (int i = 0; i < nb; i++) qt_free(bufs[i]);
    snprintf(path, sizeof(path), "%s/adapter_config.json", dir);
    char cfg[256];
    snprintf(cfg, sizeof(cfg),
             "{\"fine_tune_type\": \"lora\", \"num_layers\": %d, \"lora_parameters\": {\"rank\": %d, \"scale\": %.9g, "
             "\"dropout\": 0.0}}",
             l->n_layer - l->first_layer, r, l->scale);
    QT_ASSERT(qt_write_file_atomic(path, cfg, strlen(cfg)) == QT_OK);
}

static void test_adapters(const qt_model *g, const qt_model *hf) {
    const size_t NL = (size_t)N_PROMPT * g->cfg.n_vocab;
    for (int rs = 0; rs < 2; rs++) {
        // GGUF LoRA round trips, from both forms
        qt_lora *lh = make_lora(hf, rs), *lg = make_lora(g, rs);
        CHECK(qt_lora_save_gguf(lh, hf, tpath("hf.lora.gguf")) == QT_OK, "save GGUF LoRA (HF form)");
        CHECK(qt_lora_save_gguf(lg, g, tpath("g.lora.gguf")) == QT_OK, "save GGUF LoRA (GGUF form)");
        qt_lora *b1 = qt_lora_load_gguf(hf, tpath("hf.lora.gguf")), *b2 = qt_lora_load(g, tpath("g.lora.gguf"));
        CHECK(same_lora(lh, b1), "GGUF LoRA round trip, HF form (rslora %d)", rs);
        CHECK(same_lora(lg, b2), "GGUF LoRA round trip, GGUF form (rslora %d)", rs);
        // HF-form adapter through GGUF LoRA onto the GGUF form == through PEFT onto the GGUF form
        CHECK(qt_lora_save_peft(lh, hf, tpath("peft")) == QT_OK, "save PEFT");
        qt_lora *via_peft = qt_lora_load(g, tpath("peft")), *via_gguf = qt_lora_load(g, tpath("hf.lora.gguf"));
        CHECK(via_peft && via_gguf && !memcmp(via_peft->params, via_gguf->params, sizeof(float) * via_peft->n_params),
              "PEFT and GGUF LoRA give the same tensors on the GGUF form");
        if (via_peft && via_gguf) {
            float *a = logits(g, via_peft, 1), *b = logits(g, via_gguf, 1), *c = logits(hf, lh, 1);
            CHECK(max_diff(a, b, NL) == 0, "PEFT vs GGUF LoRA logits identical");
            double d = max_diff(b, c, NL);
            CHECK(d <= LOGIT_ATOL, "GGUF LoRA on GGUF form vs adapter on HF form: max |dlogit| %.3g", d);
            qt_free(a); qt_free(b); qt_free(c);
        }
        // the file llama.cpp reads: keys and shapes
        qt_gguf *f = qt_gguf_open(tpath("g.lora.gguf"));
        const char *s = NULL;
        float alpha = 0;
        CHECK(f && qt_gguf_get_str(f, "general.type", &s, true) == QT_OK && !strcmp(s, "adapter"), "general.type");
        CHECK(f && qt_gguf_get_str(f, "adapter.type", &s, true) == QT_OK && !strcmp(s, "lora"), "adapter.type");
        CHECK(f && qt_gguf_get_str(f, "general.architecture", &s, true) == QT_OK && !strcmp(s, "llama"), "arch");
        CHECK(f && qt_gguf_get_f32(f, "adapter.lora.alpha", &alpha, true) == QT_OK &&
                  fabsf(alpha / 4 - lg->scale) < 1e-6f,
              "alpha / r == scale");
        const qt_gguf_tensor *ta = f ? qt_gguf_find_tensor(f, "blk.1.attn_q.weight.lora_a") : NULL;
        const qt_gguf_tensor *tb = f ? qt_gguf_find_tensor(f, "blk.4.ffn_down.weight.lora_b") : NULL;
        CHECK(ta && ta->ne[0] == 64 && ta->ne[1] == 4 && ta->type == QT_TYPE_F32, "lora_a ne [in, r]");
        CHECK(tb && tb->ne[0] == 4 && tb->ne[1] == 64, "lora_b ne [r, out]");
        CHECK(f && !qt_gguf_find_tensor(f, "blk.0.attn_q.weight.lora_a"), "layer 0 has no adapter");
        qt_gguf_close(f);
        // mlx-lm
        write_mlx(lh, tpath("mlx"));
        qt_lora *mh = qt_lora_load(hf, tpath("mlx")), *mg = qt_lora_load_mlx(g, tpath("mlx"));
        CHECK(mh && !memcmp(mh->params, lh->params, sizeof(float) * lh->n_params) && fabsf(mh->scale - lh->scale) < 1e-6f,
              "mlx-lm adapter == original (HF form)");
        CHECK(mg && via_peft && !memcmp(mg->params, via_peft->params, sizeof(float) * mg->n_params),
              "mlx-lm adapter == PEFT adapter (GGUF form)");
        qt_lora_free(mh); qt_lora_free(mg);
        qt_lora_free(via_peft); qt_lora_free(via_gguf);
        qt_lora_free(b1); qt_lora_free(b2);
        qt_lora_free(lh); qt_lora_free(lg);
    }
}

static void test_fuse(const qt_model *g, const qt_model *hf, const char *gguf_path) {
    const size_t NL = (size_t)N_PROMPT * g->cfg.n_vocab;
    qt_lora *l = make_lora(g, false);
    qt_export_params p = qt_export_defaults();
    p.lora = l;
    p.lora_scale = 0.75f;
    CHECK(qt_export_gguf(g, &p, tpath("fused.gguf")) == QT_OK, "fuse");
    qt_model *fm = qt_model_load(tpath("fused.gguf"));
    CHECK(fm != NULL, "fused model loads");
    if (fm) {
        float *a = logits(g, l, 0.75f), *b = logits(fm, NULL, 1);
        double d = max_diff(a, b, NL);
        CHECK(d <= LOGIT_ATOL, "fused vs adapter logits: max |d| %.3g", d);
        printf("fuse (F32): max |dlogit| %.3g\n", d);
        qt_free(a); qt_free(b);
        CHECK(fm->tok && qt_tokenizer_n_vocab(fm->tok) == qt_tokenizer_n_vocab(g->tok), "vocabulary copied");
        CHECK(!strcmp(qt_token_text(fm->tok, 300), qt_token_text(g->tok, 300)), "tokens copied");
    }
    // greedy: fused == adapter applied (scale 1)
    p.lora_scale = 1;
    CHECK(qt_export_gguf(g, &p, tpath("fused1.gguf")) == QT_OK, "fuse scale 1");
    qt_model *f1 = qt_model_load(tpath("fused1.gguf"));
    if (f1) {
        int32_t x[N_GREEDY], y[N_GREEDY], z[N_GREEDY];
        greedy(g, l, x);
        greedy(f1, NULL, y);
        greedy(g, NULL, z);
        CHECK(!memcmp(x, y, sizeof(x)), "fused greedy == adapter greedy");
        CHECK(memcmp(x, z, sizeof(x)) != 0, "the adapter changes the greedy text");
    }
    // from the HF form: the adapter saved as PEFT, loaded there, fused through the HF writer path
    CHECK(qt_lora_save_peft(l, g, tpath("fuse-peft")) == QT_OK, "save PEFT");
    qt_lora *lh = qt_lora_load(hf, tpath("fuse-peft"));
    p = qt_export_defaults();
    p.lora = lh;
    p.tokenizer_gguf = gguf_path;
    CHECK(lh && qt_export_gguf(hf, &p, tpath("fused-hf.gguf")) == QT_OK, "fuse from HF form");
    qt_model *fh = qt_model_load(tpath("fused-hf.gguf"));
    CHECK(fh && fh->cfg.rope_type == QT_ROPE_NORM && !strcmp(fh->arch_name, "llama"), "fused HF form is a llama GGUF");
    if (fh && f1) {
        float *a = logits(f1, NULL, 1), *b = logits(fh, NULL, 1);
        double d = max_diff(a, b, NL);
        CHECK(d <= LOGIT_ATOL, "fused from HF vs fused from GGUF: max |d| %.3g", d);
        qt_free(a); qt_free(b);
    }
    // convert: HF -> GGUF F32 equals the GGUF original
    p = qt_export_defaults();
    p.type = QT_TYPE_F32;
    p.tokenizer_gguf = gguf_path;
    CHECK(qt_export_gguf(hf, &p, tpath("conv.gguf")) == QT_OK, "convert");
    qt_model *cm = qt_model_load(tpath("conv.gguf"));
    if (cm) {
        float *a = logits(g, NULL, 1), *b = logits(cm, NULL, 1);
        double d = max_diff(a, b, NL);
        CHECK(d <= LOGIT_ATOL, "converted vs original GGUF: max |d| %.3g", d);
        CHECK(cm->cfg.n_head_kv == 4 && cm->cfg.head_dim == 8 && fabsf(cm->cfg.rms_eps - 1e-5f) < 1e-9f, "hparams");
        qt_free(a); qt_free(b);
    } else {
        CHECK(0, "converted model loads");
    }
    qt_model_free(cm);
    qt_model_free(fh);
    qt_lora_free(lh);
    qt_model_free(f1);
    qt_model_free(fm);
    qt_lora_free(l);
}

// convert tiny HF folders (no tokenizer.json: a 96-token vocabulary written
// here): Qwen2 (biases, no permute) and Llama 3 (rope_freqs, tied output, q/k permute)
static void test_convert_tiny(const char *dir) {
    const char *vocab = tpath("vocab96.gguf");
    qt_gguf_writer *w = qt_gguf_writer_init();
    const char *toks[96];
    char texts[96][8];
    float scores[96];
    int32_t types[96];
    for (int i = 0; i < 96; i++) {
        if (i < 3) snprintf(texts[i], 8, "%s", i == 0 ? "<unk>" : i == 1 ? "<s>" : "</s>");
        else snprintf(texts[i], 8, "%c", 32 + i);
        toks[i] = texts[i];
        scores[i] = -(float)i;
        types[i] = i == 0 ? 2 : i < 3 ? 3 : 1;
    }
    qt_gguf_set_str(w, "general.architecture", "llama");
    qt_gguf_set_str(w, "tokenizer.ggml.model", "llama");
    qt_gguf_set_arr_str(w, "tokenizer.ggml.tokens", toks, 96);
    qt_gguf_set_arr(w, "tokenizer.ggml.scores", QT_GGUF_FLOAT32, scores, 96);
    qt_gguf_set_arr(w, "tokenizer.ggml.token_type", QT_GGUF_INT32, types, 96);
    qt_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", 1);
    qt_gguf_set_u32(w, "tokenizer.ggml.eos_token_id", 2);
    QT_ASSERT(qt_gguf_write(w, vocab) == QT_OK);
    qt_gguf_writer_free(w);
    qt_model *hf = qt_model_load(dir);
    CHECK(hf != NULL, "%s loads", dir);
    if (!hf) return;
    qt_export_params p = qt_export_defaults();
    p.type = QT_TYPE_F32;
    p.tokenizer_gguf = vocab;
    CHECK(qt_export_gguf(hf, &p, tpath("tiny.gguf")) == QT_OK, "convert %s", dir);
    qt_model *g = qt_model_load(tpath("tiny.gguf"));
    CHECK(g && g->arch == hf->arch && !qt_model_tensor(g, 0, QT_LLAMA_BQ)->data == !qt_model_tensor(hf, 0, QT_LLAMA_BQ)->data &&
              g->cfg.tied_output == hf->cfg.tied_output && !g->rope_freqs.data == !hf->rope_freqs.data &&
              g->cfg.rope_type == hf->arch->gguf_rope,
          "converted %s loads with the same structure", dir);
    if (g) {
        static const int32_t t[] = { 1, 5, 17, 33, 60, 95, 2, 44 };
        qt_ctx *a = qt_ctx_init(hf, NULL, 16, 16, true), *b = qt_ctx_init(g, NULL, 16, 16, true);
        const float *la = qt_ctx_eval(a, t, 8), *lb = qt_ctx_eval(b, t, 8);
        double d = max_diff(la, lb, 8 * 96);
        CHECK(d <= LOGIT_ATOL, "%s converted vs HF: max |d| %.3g", dir, d);
        qt_ctx_free(a);
        qt_ctx_free(b);
    }
    qt_model_free(g);
    qt_model_free(hf);
}

// tokenizer.json -> tokenizer.ggml.* -> the same token ids
static void test_tokenizer_kv(const char *src) {
    // the folder with a chat template added to tokenizer_config.json
    const char *dir = tpath("tok-hf");
    mkdir(dir, 0755);
    char sp[600], dp[600];
    snprintf(sp, sizeof(sp), "%s/tokenizer.json", src);
    if (access(sp, R_OK) != 0) {
        printf("skip tokenizer conversion: no %s\n", sp);
        return;
    }
    static const char *files[] = { "tokenizer.json", "tokenizer.model", "special_tokens_map.json", "added_tokens.json" };
    for (int i = 0; i < 4; i++) {
        snprintf(sp, sizeof(sp), "%s/%s", src, files[i]);
        snprintf(dp, sizeof(dp), "%s/%s", dir, files[i]);
        char *rp = realpath(sp, NULL);
        if (rp) QT_ASSERT(symlink(rp, dp) == 0);
        free(rp);
    }
    snprintf(dp, sizeof(dp), "%s/tokenizer_config.json", dir);
    const char *tc = "{\"add_bos_token\": true, \"chat_template\": \"{% for m in messages %}{{ m.content }}{% endfor %}\"}";
    QT_ASSERT(qt_write_file_atomic(dp, tc, strlen(tc)) == QT_OK);
    qt_tokenizer *t = qt_tokenizer_from_hf(dir);
    CHECK(t != NULL, "tokenizer.json loads");
    if (!t) return;
    qt_gguf_writer *w = qt_gguf_writer_init();
    qt_gguf_set_str(w, "general.architecture", "llama");
    CHECK(qt_export_tokenizer_kv(w, t, dir) == QT_OK, "tokenizer kv");
    CHECK(qt_gguf_write(w, tpath("tok.gguf")) == QT_OK, "write tokenizer");
    qt_gguf_writer_free(w);
    qt_gguf *g = qt_gguf_open(tpath("tok.gguf"));
    qt_tokenizer *t2 = g ? qt_tokenizer_from_gguf(g) : NULL;
    CHECK(t2 != NULL, "converted tokenizer loads");
    const char *tmpl = NULL;
    CHECK(g && qt_gguf_get_str(g, "tokenizer.chat_template", &tmpl, true) == QT_OK && strstr(tmpl, "{%"),
          "chat template copied");
    static const char *texts[] = {
        "Hello world", " leading space", "Once upon a time, there was a little robot named Bolt.",
        "unicode: caf\xc3\xa9 \xe4\xbd\xa0\xe5\xa5\xbd \xf0\x9f\x98\x80", "numbers 12345 and\ttabs\nnewlines",
        "<|user|>\nhi</s>",
    };
    for (size_t i = 0; t2 && i < sizeof(texts) / sizeof(texts[0]); i++) {
        int32_t a[256], b[256];
        int na = qt_tokenize(t, texts[i], strlen(texts[i]), true, true, a, 256);
        int nb = qt_tokenize(t2, texts[i], strlen(texts[i]), true, true, b, 256);
        CHECK(na == nb && na > 0 && !memcmp(a, b, sizeof(int32_t) * (size_t)na), "tokens of '%s' (%d vs %d)", texts[i],
              na, nb);
    }
    // llama.cpp's own conversion of the same (Llama 2) SentencePiece vocabulary
    char vp[512];
    snprintf(vp, sizeof(vp), "%s/llama.cpp-vocab/ggml-vocab-llama-spm.gguf", test_models_dir());
    qt_gguf *ref = qt_gguf_open(vp);
    const qt_gguf_kv *rt = NULL, *rs = NULL, *ry = NULL, *ot = NULL, *os = NULL, *oy = NULL;
    if (ref && g && qt_gguf_get_arr(ref, "tokenizer.ggml.tokens", QT_GGUF_STRING, &rt, true) == QT_OK &&
        qt_gguf_get_arr(ref, "tokenizer.ggml.scores", QT_GGUF_FLOAT32, &rs, true) == QT_OK &&
        qt_gguf_get_arr(ref, "tokenizer.ggml.token_type", QT_GGUF_INT32, &ry, true) == QT_OK &&
        qt_gguf_get_arr(g, "tokenizer.ggml.tokens", QT_GGUF_STRING, &ot, true) == QT_OK &&
        qt_gguf_get_arr(g, "tokenizer.ggml.scores", QT_GGUF_FLOAT32, &os, true) == QT_OK &&
        qt_gguf_get_arr(g, "tokenizer.ggml.token_type", QT_GGUF_INT32, &oy, true) == QT_OK) {
        uint64_t n = QT_MIN(rt->v.arr.n, ot->v.arr.n), bad = 0;
        for (uint64_t i = 0; i < n; i++) {
            float s1, s2;
            int32_t y1, y2;
            memcpy(&s1, rs->v.arr.data + 4 * i, 4);
            memcpy(&s2, os->v.arr.data + 4 * i, 4);
            memcpy(&y1, ry->v.arr.data + 4 * i, 4);
            memcpy(&y2, oy->v.arr.data + 4 * i, 4);
            bool same = rt->v.arr.strs[i].len == ot->v.arr.strs[i].len &&
                        !memcmp(rt->v.arr.strs[i].data, ot->v.arr.strs[i].data, rt->v.arr.strs[i].len) && s1 == s2 && y1 == y2;
            if (!same && bad++ < 3)
                fprintf(stderr, "token %llu: '%.*s' %g %d vs llama.cpp '%.*s' %g %d\n", (unsigned long long)i,
                        (int)ot->v.arr.strs[i].len, ot->v.arr.strs[i].data, s2, y2, (int)rt->v.arr.strs[i].len,
                        rt->v.arr.strs[i].data, s1, y1);
        }
        CHECK(n == 32000 && bad == 0, "tokens/scores/types equal llama.cpp's ggml-vocab-llama-spm.gguf (%llu of %llu differ)",
              (unsigned long long)bad, (unsigned long long)n);
    } else {
        printf("skip vocabulary comparison with %s\n", vp);
    }
    qt_gguf_close(ref);
    CHECK(t2 && qt_tokenizer_bos(t2) == qt_tokenizer_bos(t) && qt_tokenizer_eos(t2) == qt_tokenizer_eos(t) &&
              qt_tokenizer_add_bos(t2) == qt_tokenizer_add_bos(t),
          "special tokens");
    qt_tokenizer_free(t2);
    qt_gguf_close(g);
    qt_tokenizer_free(t);
}

// A byte-level BPE tokenizer.json (GPT-2 byte map, a few merges, one special
// token) -> tokenizer.ggml.* with merges -> the same token ids.
static int byte_char(int b, char *out) {   // GPT-2 bytes_to_unicode, UTF-8 encoded
    int cp = b;
    if (!((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255))) {
        int n = 0;
        for (int k = 0; k < b; k++)
            if (!((k >= 33 && k <= 126) || (k >= 161 && k <= 172) || (k >= 174 && k <= 255))) n++;
        cp = 256 + n;
    }
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    out[0] = (char)(0xc0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3f));
    return 2;
}

static void test_tokenizer_bpe(void) {
    const char *dir = tpath("bpe-hf");
    mkdir(dir, 0755);
    size_t cap = 1 << 16, n = 0;
    char *j = qt_malloc(cap);
    n += (size_t)snprintf(j + n, cap - n, "{\"version\": \"1.0\", \"added_tokens\": [{\"id\": 266, \"content\": "
                          "\"<|endoftext|>\", \"special\": true}], \"normalizer\": null, \"pre_tokenizer\": "
                          "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": true}, "
                          "\"model\": {\"type\": \"BPE\", \"vocab\": {");
    for (int b = 0; b < 256; b++) {
        char c[4];
        int l = byte_char(b, c);
        n += (size_t)snprintf(j + n, cap - n, "%s\"", b ? ", " : "");
        if (c[0] == '"' || c[0] == '\\') j[n++] = '\\';
        memcpy(j + n, c, (size_t)l);
        n += (size_t)l;
        n += (size_t)snprintf(j + n, cap - n, "\": %d", b);
    }
    // merges: "Ġ t", "h e", "Ġt he", "i n", "Ġ a", "e r", "Ġa n", "Ġan d", "o n", "Ġ w"
    static const char *merged[] = { "Ġt", "he", "Ġthe", "in", "Ġa", "er", "Ġan", "Ġand", "on", "Ġw" };
    static const char *merges[] = { "Ġ t", "h e", "Ġt he", "i n", "Ġ a", "e r", "Ġa n", "Ġan d", "o n", "Ġ w" };
    for (int i = 0; i < 10; i++) n += (size_t)snprintf(j + n, cap - n, ", \"%s\": %d", merged[i], 256 + i);
    n += (size_t)snprintf(j + n, cap - n, "}, \"merges\": [");
    for (int i = 0; i < 10; i++) n += (size_t)snprintf(j + n, cap - n, "%s\"%s\"", i ? ", " : "", merges[i]);
    n += (size_t)snprintf(j + n, cap - n, "]}}");
    char p[600];
    snprintf(p, sizeof(p), "%s/tokenizer.json", dir);
    QT_ASSERT(qt_write_file_atomic(p, j, n) == QT_OK);
    qt_free(j);
    snprintf(p, sizeof(p), "%s/tokenizer_config.json", dir);
    const char *tc = "{\"add_bos_token\": false, \"eos_token\": \"<|endoftext|>\"}";
    QT_ASSERT(qt_write_file_atomic(p, tc, strlen(tc)) == QT_OK);
    qt_tokenizer *t = qt_tokenizer_from_hf(dir);
    CHECK(t && !strcmp(qt_tokenizer_model_name(t), "bpe"), "byte-level BPE tokenizer.json loads");
    if (!t) return;
    qt_gguf_writer *w = qt_gguf_writer_init();
    qt_gguf_set_str(w, "general.architecture", "qwen2");
    CHECK(qt_export_tokenizer_kv(w, t, dir) == QT_OK, "BPE tokenizer kv");
    CHECK(qt_gguf_write(w, tpath("bpe.gguf")) == QT_OK, "write BPE tokenizer");
    qt_gguf_writer_free(w);
    qt_gguf *g = qt_gguf_open(tpath("bpe.gguf"));
    qt_tokenizer *t2 = g ? qt_tokenizer_from_gguf(g) : NULL;
    const qt_gguf_kv *mk = NULL;
    CHECK(g && qt_gguf_get_arr(g, "tokenizer.ggml.merges", QT_GGUF_STRING, &mk, true) == QT_OK && mk->v.arr.n == 10 &&
              mk->v.arr.strs[2].len == strlen("Ġt he") && !memcmp(mk->v.arr.strs[2].data, "Ġt he", mk->v.arr.strs[2].len),
          "merges written");
    CHECK(t2 != NULL, "converted BPE tokenizer loads");
    static const char *texts[] = { "the cat and the dog went in", "  wander, then\n\tother <|endoftext|> the",
                                   "caf\xc3\xa9 \xe4\xbd\xa0" };
    for (size_t i = 0; t2 && i < 3; i++) {
        int32_t a[256], b[256];
        int na = qt_tokenize(t, texts[i], strlen(texts[i]), false, true, a, 256);
        int nb = qt_tokenize(t2, texts[i], strlen(texts[i]), false, true, b, 256);
        CHECK(na == nb && na > 0 && !memcmp(a, b, sizeof(int32_t) * (size_t)na), "BPE tokens of '%s' (%d vs %d)",
              texts[i], na, nb);
    }
    CHECK(t2 && qt_tokenizer_eos(t2) == 266 && qt_tokenizer_bos(t2) == qt_tokenizer_bos(t), "BPE special tokens");
    qt_tokenizer_free(t2);
    qt_gguf_close(g);
    qt_tokenizer_free(t);
}

static double rmse_type(const float *x, int64_t n, qt_type t) {
    const qt_type_traits *tr = qt_type_traits_get(t);
    void *q = qt_malloc(qt_row_size(t, n));
    float *y = qt_malloc(sizeof(float) * (size_t)n);
    tr->from_float_ref(x, q, n);
    tr->to_float(q, y, n);
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
    qt_free(q);
    qt_free(y);
    return sqrt(s / (double)n);
}

static void test_quantize(const qt_model *g) {
    static const struct { qt_type t; double max_rel_rmse; } types[] = {
        // RMSE over the tensor's RMS, bounds ~2x the measured value
        { QT_TYPE_Q8_0, 0.01 }, { QT_TYPE_Q4_0, 0.2 }, { QT_TYPE_Q4_1, 0.2 }, { QT_TYPE_Q4_K, 0.2 },
        { QT_TYPE_Q5_K, 0.1 }, { QT_TYPE_Q6_K, 0.05 }, { QT_TYPE_IQ4_NL, 0.2 },
    };
    // a real tensor: token_embd (512 x 64) seen as rows of 256 so every block size fits
    const int64_t n = (int64_t)g->cfg.n_vocab * g->cfg.n_embd;
    const qt_tensor *te = qt_model_global(g, QT_G_TOK_EMBD);
    QT_ASSERT(te->type == QT_TYPE_F32 && n % 256 == 0);
    const float *x = te->data;
    double rms = 0;
    for (int64_t i = 0; i < n; i++) rms += (double)x[i] * x[i];
    rms = sqrt(rms / (double)n);
    printf("| type | RMSE (token_embd, %lld values, RMS %.4f) |\n|---|---|\n", (long long)n, rms);
    for (size_t k = 0; k < sizeof(types) / sizeof(types[0]); k++) {
        qt_type t = types[k].t;
        double e = rmse_type(x, n, t);
        printf("| %s | %.6f |\n", qt_type_name(t), e);
        CHECK(e > 0 && e <= types[k].max_rel_rmse * rms, "%s: RMSE %.5f over bound", qt_type_name(t), e);
        qt_export_params p = qt_export_defaults();
        p.type = t;
        char name[64];
        snprintf(name, sizeof(name), "q-%s.gguf", qt_type_name(t));
        CHECK(qt_export_gguf(g, &p, tpath(name)) == QT_OK, "quantize %s", qt_type_name(t));
        qt_model *qm = qt_model_load(tpath(name));
        CHECK(qm != NULL, "%s loads", qt_type_name(t));
        if (!qm) continue;
        const qt_tensor *wq = qt_model_tensor(qm, 1, QT_LLAMA_WQ), *wg = qt_model_tensor(qm, 1, QT_LLAMA_WGATE);
        const qt_tensor *wd = qt_model_tensor(qm, 1, QT_LLAMA_WDOWN), *wo = qt_model_global(qm, QT_G_OUTPUT);
        qt_type want64 = qt_export_tensor_type("blk.1.attn_q.weight", 2, 64, t, false);
        CHECK(wq->type == want64 && wg->type == want64, "%s: 64-wide matrices are %s", qt_type_name(t),
              qt_type_name(wq->type));
        // rows of 172 fit no block: F16 (llama-quantize's last fallback)
        CHECK(wd->type == QT_TYPE_F16, "%s: ffn_down (rows of 172) is %s", qt_type_name(t), qt_type_name(wd->type));
        // output head: Q6_K by llama-quantize's rule, whose 256-blocks do not fit rows of 64: Q8_0
        CHECK(wo->type == QT_TYPE_Q8_0, "%s: output head %s", qt_type_name(t), qt_type_name(wo->type));
        CHECK(qm->tok && qt_tokenizer_n_vocab(qm->tok) == 512, "vocabulary kept");
        int32_t y[N_GREEDY];
        greedy(qm, NULL, y);   // runs
        qt_model_free(qm);
    }
    // the rules themselves (llama-quantize)
    CHECK(qt_export_tensor_type("blk.0.attn_norm.weight", 1, 4096, QT_TYPE_Q4_0, false) == QT_TYPE_F32, "norm F32");
    CHECK(qt_export_tensor_type("output.weight", 2, 4096, QT_TYPE_Q4_0, false) == QT_TYPE_Q6_K, "output Q6_K");
    CHECK(qt_export_tensor_type("output.weight", 2, 4096, QT_TYPE_Q8_0, false) == QT_TYPE_Q8_0, "output Q8_0 stays");
    CHECK(qt_export_tensor_type("token_embd.weight", 2, 4096, QT_TYPE_Q4_0, true) == QT_TYPE_Q6_K, "tied embd Q6_K");
    CHECK(qt_export_tensor_type("token_embd.weight", 2, 4096, QT_TYPE_Q4_0, false) == QT_TYPE_Q4_0, "embd Q4_0");
    CHECK(qt_export_tensor_type("blk.0.ffn_down.weight", 2, 4128, QT_TYPE_Q4_K, false) == QT_TYPE_Q5_0, "Q4_K -> Q5_0");
    CHECK(qt_export_tensor_type("blk.0.ffn_down.weight", 2, 4128, QT_TYPE_Q6_K, false) == QT_TYPE_Q8_0, "Q6_K -> Q8_0");
    CHECK(qt_export_tensor_type("blk.0.ffn_down.weight", 2, 172, QT_TYPE_Q4_0, false) == QT_TYPE_F16, "-> F16");
}

// Writes a GGUF LoRA with the given edits for the error tests.
static void write_bad_gguf(const char *path, const char *arch, const char *type, int layer, int r_a, int r_b, int n_in) {
    qt_gguf_writer *w = qt_gguf_writer_init();
    qt_gguf_set_str(w, "general.type", type);
    qt_gguf_set_str(w, "general.architecture", arch);
    qt_gguf_set_str(w, "adapter.type", "lora");
    qt_gguf_set_f32(w, "adapter.lora.alpha", 8);
    static float zeros[64 * 64];
    int64_t ne_a[2] = { n_in, r_a }, ne_b[2] = { r_b, 64 };
    char n[96];
    snprintf(n, sizeof(n), "blk.%d.attn_q.weight.lora_a", layer);
    qt_gguf_add_tensor(w, n, QT_TYPE_F32, 2, ne_a, zeros);
    snprintf(n, sizeof(n), "blk.%d.attn_q.weight.lora_b", layer);
    qt_gguf_add_tensor(w, n, QT_TYPE_F32, 2, ne_b, zeros);
    QT_ASSERT(qt_gguf_write(w, path) == QT_OK);
    qt_gguf_writer_free(w);
}

static void expect_fail(const qt_model *m, const char *path, const char *what, const char *needle) {
    n_err = 0;
    last_err[0] = 0;
    qt_lora *l = qt_lora_load(m, path);
    CHECK(l == NULL, "%s: must fail", what);
    CHECK(n_err == 1 && strstr(last_err, path) && (!needle || strstr(last_err, needle)),
          "%s: one error naming the file (%d errors, last: %s)", what, n_err, last_err);
    qt_lora_free(l);
}

static void test_errors(const qt_model *g) {
    qt_log_set_sink(sink, NULL);
    const char *p = tpath("bad.gguf");
    write_bad_gguf(p, "qwen2", "adapter", 1, 4, 4, 64);
    expect_fail(g, p, "other architecture", "qwen2");
    write_bad_gguf(p, "llama", "model", 1, 4, 4, 64);
    expect_fail(g, p, "not an adapter", "adapter");
    write_bad_gguf(p, "llama", "adapter", 9, 4, 4, 64);
    expect_fail(g, p, "layer out of range", "layer 9");
    write_bad_gguf(p, "llama", "adapter", 1, 4, 8, 64);
    expect_fail(g, p, "rank mismatch a/b", "rank");
    write_bad_gguf(p, "llama", "adapter", 1, 4, 4, 32);
    expect_fail(g, p, "wrong input size", "expected");
    // truncated: the first 200 bytes of a good adapter
    qt_lora *l = make_lora(g, false);
    QT_ASSERT(qt_lora_save_gguf(l, g, tpath("good.gguf")) == QT_OK);
    size_t n;
    char *bytes = qt_read_file(tpath("good.gguf"), &n);
    const char *tr = tpath("trunc.gguf");
    QT_ASSERT(bytes && qt_write_file_atomic(tr, bytes, n - 100) == QT_OK);
    expect_fail(g, tr, "truncated GGUF LoRA", NULL);
    qt_free(bytes);
    // mlx: wrong rank in the config, bad config
    write_mlx(l, tpath("mlx-bad"));
    char cfg[600];
    snprintf(cfg, sizeof(cfg), "%s/adapter_config.json", tpath("mlx-bad"));
    const char *wrong = "{\"lora_parameters\": {\"rank\": 8, \"scale\": 2.0}}";
    QT_ASSERT(qt_write_file_atomic(cfg, wrong, strlen(wrong)) == QT_OK);
    expect_fail(g, tpath("mlx-bad"), "mlx wrong rank", "expected");
    const char *dora = "{\"fine_tune_type\": \"dora\", \"lora_parameters\": {\"rank\": 4, \"scale\": 2.0}}";
    QT_ASSERT(qt_write_file_atomic(cfg, dora, strlen(dora)) == QT_OK);
    expect_fail(g, tpath("mlx-bad"), "mlx DoRA", "fine_tune_type");
    // an empty folder
    mkdir(tpath("empty"), 0755);
    expect_fail(g, tpath("empty"), "no adapter in folder", "adapter");
    qt_lora_free(l);
    qt_log_set_sink(NULL, NULL);
}

int main(void) {
    QT_ASSERT(mkdtemp(tmpdir));
    char gp[512], hp[512];
    snprintf(gp, sizeof(gp), "%s/tinystories-260K/stories260K.gguf", test_models_dir());
    snprintf(hp, sizeof(hp), "%s/tinystories-260K/hf", test_models_dir());
    qt_model *g = qt_model_load(gp), *hf = qt_model_load(hp);
    CHECK(g && hf, "models load");
    if (g && hf) {
        test_adapters(g, hf);
        test_fuse(g, hf, gp);
        test_quantize(g);
        test_errors(g);
    }
    test_convert_tiny("tests/data/tiny-qwen2");
    test_convert_tiny("tests/data/tiny-llama3");
    test_tokenizer_bpe();
    char tk[512];
    snprintf(tk, sizeof(tk), "%s/hf-tinyllama-1.1b-chat-v0.1", test_models_dir());
    test_tokenizer_kv(tk);
    qt_model_free(g);
    qt_model_free(hf);
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    CHECK(system(cmd) == 0, "cleanup");
    TEST_END();
}
