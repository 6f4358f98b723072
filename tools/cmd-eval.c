// cmd-eval.c: `qtune eval`: mean loss and perplexity of a model (optionally
// with a LoRA adapter) over a JSONL file, computed exactly as `qtune train`
// computes its validation and test loss (same dataset rules, same batches, the
// same forward pass); with --generate also generates an answer for each
// prompt/completion or chat record and scores it against the reference (exact
// match, BLEU, ROUGE-L: src/train/metrics.h), writing one JSONL line per record.
// Not here: multiple references per prompt, batched generation.
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "base/base.h"
#include "base/pool.h"
#include "cli.h"
#include "common.h"
#include "model/context.h"
#include "model/lora-io.h"
#include "sample/sampler.h"
#include "train/dataset.h"
#include "train/metrics.h"
#include "train/model-train.h"

static bool is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

// --data DIR: DIR/<split>.jsonl; a file is used as it is. malloc'd.
static char *resolve_data(const char *data, const char *split) {
    if (!is_dir(data)) return qt_strdup(data);
    size_t n = strlen(data) + strlen(split) + 16;
    char *p = qt_malloc(n);
    snprintf(p, n, "%s/%s.jsonl", data, split);
    return p;
}

// ---- loss: the trainer's evaluate() over every batch ----

typedef struct {
    int32_t *tokens, *targets;
    int *seq_start;
    qt_batch b;
} batch_buf;

static void pack(batch_buf *bb, const qt_dataset *d, const int *idx, int n) {
    int N = 0, k = 0;
    bb->seq_start[0] = 0;
    for (int i = 0; i < n; i++) {
        const qt_example *e = qt_dataset_get(d, idx[i]);
        if (e->len < 2) continue;
        for (int t = 0; t + 1 < e->len; t++) {
            bb->tokens[N] = e->tokens[t];
            bb->targets[N] = e->train[t + 1] ? e->tokens[t + 1] : -1;
            N++;
        }
        bb->seq_start[++k] = N;
    }
    bb->b = (qt_batch){ bb->tokens, bb->targets, bb->seq_start, k };
}

static int eval_loss(const qt_model *m, qt_lora *l, qt_backend *be, const char *compute, const qt_dataset *d, int batch_size,
                     int max_batches, double *loss, int64_t *n_tokens) {
    int max_seq = qt_dataset_max_len(d), max_tokens = max_seq * batch_size;
    qt_tmodel *tm = qt_tmodel_init(m, l, be, max_tokens, max_seq, QT_ACT_KEEP);
    if (!tm) return QT_ERR;
    if (compute) qt_tmodel_set_prec(tm, !strcmp(compute, "bf16") ? QT_PREC_BF16 : QT_PREC_F32);
    batch_buf bb;
    bb.tokens = qt_malloc(sizeof(int32_t) * (size_t)max_tokens);
    bb.targets = qt_malloc(sizeof(int32_t) * (size_t)max_tokens);
    bb.seq_start = qt_malloc(sizeof(int) * (size_t)(batch_size + 1));
    int *idx = qt_malloc(sizeof(int) * (size_t)batch_size);
    qt_batcher *bt = qt_batcher_init(d, batch_size, 0, false);   // the trainer's evaluation order
    int nb = qt_batcher_n_per_epoch(bt), rc = QT_OK;
    if (max_batches >= 0) nb = QT_MIN(nb, max_batches);
    double sum = 0;
    int64_t cnt = 0;
    for (int i = 0; i < nb; i++) {
        int n = qt_batcher_next(bt, idx);
        pack(&bb, d, idx, n);
        if (bb.b.n_seq == 0) continue;
        double ls;
        int64_t c;
        if (qt_tmodel_step(tm, &bb.b, false, false, 0, 0, &ls, &c) != QT_OK) { rc = QT_ERR; break; }
        sum += ls;
        cnt += c;
    }
    *loss = cnt ? sum / (double)cnt : NAN;
    *n_tokens = cnt;
    qt_batcher_free(bt);
    qt_free(idx);
    qt_free(bb.tokens);
    qt_free(bb.targets);
    qt_free(bb.seq_start);
    qt_tmodel_free(tm);
    return rc;
}

// ---- generation ----

typedef struct {
    int max_tokens;
    qt_sampler_params sp;
    bool parse_special;
    const char *response_template;   // "text" records: where the answer starts
    const char *chat_template;   // NULL: llama2
    int limit;
    const char *out_path;
} gen_opts;

typedef struct {
    int line;
    char *prompt_text;   // for the output file
    char *reference;
    int32_t *prompt;     // tokens
    int n_prompt;
} gen_case;

static void case_free(gen_case *c) {
    qt_free(c->prompt_text);
    qt_free(c->reference);
    qt_free(c->prompt);
}

static char *strip_dup(const char *s) {
    while (*s && strchr(" \t\n\r", *s)) s++;
    size_t n = strlen(s);
    while (n && strchr(" \t\n\r", s[n - 1])) n--;
    char *r = qt_malloc(n + 1);
    memcpy(r, s, n);
    r[n] = 0;
    return r;
}

// One record -> prompt tokens and reference text. QT_ERR (logged) if the
// record has no prompt/answer split ("text" records) or is malformed.
static int make_case(const qt_tokenizer *tok, const char *path, int line, const char *json, bool parse_special,
                     const char *tmpl, const char *response_template, gen_case *gc) {
    memset(gc, 0, sizeof(*gc));
    gc->line = line;
    cJSON *j = cJSON_Parse(json);
    int rc = QT_ERR;
    if (!j || !cJSON_IsObject(j)) {
        qt_log_error("%s:%d: not a JSON object", path, line);
        goto done;
    }
    const cJSON *jp = cJSON_GetObjectItemCaseSensitive(j, "prompt"), *jc = cJSON_GetObjectItemCaseSensitive(j, "completion");
    const cJSON *jm = cJSON_GetObjectItemCaseSensitive(j, "messages"), *jt = cJSON_GetObjectItemCaseSensitive(j, "text");
    if (cJSON_IsString(jp) && cJSON_IsString(jc)) {
        gc->prompt_text = qt_strdup(jp->valuestring);
        gc->reference = strip_dup(jc->valuestring);
        size_t n = strlen(jp->valuestring);
        bool bos = qt_tokenizer_add_bos(tok);
        int nt = qt_tokenize(tok, jp->valuestring, n, bos, parse_special, NULL, 0);
        if (nt < 0) goto done;
        gc->prompt = qt_malloc(sizeof(int32_t) * (size_t)(nt + 1));
        qt_tokenize(tok, jp->valuestring, n, bos, parse_special, gc->prompt, nt + 1);
        gc->n_prompt = nt;
    } else if (cJSON_IsArray(jm)) {
        int n = cJSON_GetArraySize(jm), last_asst = -1;
        qt_chat_msg *msgs = qt_calloc((size_t)n + 1, sizeof(qt_chat_msg));
        for (int i = 0; i < n; i++) {
            const cJSON *e = cJSON_GetArrayItem(jm, i);
            const cJSON *r = cJSON_GetObjectItemCaseSensitive(e, "role"), *c = cJSON_GetObjectItemCaseSensitive(e, "content");
            if (!cJSON_IsString(r) || !cJSON_IsString(c)) {
                qt_log_error("%s:%d: message %d needs string \"role\" and \"content\"", path, line, i + 1);
                qt_free(msgs);
                goto done;
            }
            msgs[i] = (qt_chat_msg){ r->valuestring, c->valuestring };
            if (!strcmp(r->valuestring, "assistant")) last_asst = i;
        }
        if (last_asst < 0) {
            qt_log_error("%s:%d: no assistant message to score against", path, line);
            qt_free(msgs);
            goto done;
        }
        // prompt = the conversation's tokens up to where the last assistant
        // turn's trained tokens start (exactly what training conditions on)
        int32_t *t = NULL;
        uint8_t *tr = NULL;
        int nt = qt_chat_encode(tok, tmpl, msgs, last_asst + 1, true, &t, &tr);
        if (nt < 0) { qt_free(msgs); goto done; }
        int start = nt;
        while (start > 0 && tr[start - 1]) start--;
        gc->prompt = t;
        gc->n_prompt = start;
        qt_free(tr);
        gc->reference = strip_dup(msgs[last_asst].content);
        gc->prompt_text = qt_chat_render(tmpl, msgs, last_asst);
        if (!gc->prompt_text) gc->prompt_text = qt_strdup(last_asst > 0 ? msgs[last_asst - 1].content : "");
        qt_free(msgs);
    } else if (cJSON_IsString(jt)) {
        // a "text" record: the prompt is everything up to the response
        // template, the reference what follows (without a written end token)
        if (!response_template) {
            qt_log_error("%s:%d: --generate on \"text\" records needs --response-template TEXT (where the answer "
                         "starts, e.g. \"[/INST]\")", path, line);
            goto done;
        }
        long at = qt_data_answer_start(jt->valuestring, response_template);
        if (at < 0) {
            qt_log_error("%s:%d: the response template \"%s\" does not occur in the text", path, line, response_template);
            goto done;
        }
        gc->prompt_text = qt_malloc((size_t)at + 1);
        memcpy(gc->prompt_text, jt->valuestring, (size_t)at);
        gc->prompt_text[at] = 0;
        gc->reference = strip_dup(jt->valuestring + at);
        int eos = qt_tokenizer_eos(tok);
        const char *et = eos >= 0 ? qt_token_text(tok, eos) : NULL;
        size_t rl = strlen(gc->reference), el = et ? strlen(et) : 0;
        if (el && rl >= el && !strcmp(gc->reference + rl - el, et)) {
            gc->reference[rl - el] = 0;
            char *r2 = strip_dup(gc->reference);
            qt_free(gc->reference);
            gc->reference = r2;
        }
        bool bos = qt_tokenizer_add_bos(tok);
        int nt = qt_tokenize(tok, gc->prompt_text, (size_t)at, bos, parse_special, NULL, 0);
        if (nt < 0) goto done;
        gc->prompt = qt_malloc(sizeof(int32_t) * (size_t)(nt + 1));
        qt_tokenize(tok, gc->prompt_text, (size_t)at, bos, parse_special, gc->prompt, nt + 1);
        // a written BOS (parse_special) and the added one: keep one
        if (nt >= 2 && bos && gc->prompt[0] == gc->prompt[1] && gc->prompt[0] == qt_tokenizer_bos(tok)) {
            memmove(gc->prompt, gc->prompt + 1, sizeof(int32_t) * (size_t)(nt - 1));
            nt--;
        }
        gc->n_prompt = nt;
    } else {
        qt_log_error("%s:%d: --generate needs {\"prompt\", \"completion\"}, {\"messages\"} or {\"text\"} records",
                     path, line);
        goto done;
    }
    if (gc->n_prompt == 0) {
        qt_log_error("%s:%d: empty prompt", path, line);
        goto done;
    }
    rc = QT_OK;
done:
    cJSON_Delete(j);
    if (rc != QT_OK) case_free(gc);
    return rc;
}

// Generates from c->prompt into a malloc'd string.
static char *generate(qt_ctx *ctx, const qt_tokenizer *tok, const gen_case *c, const gen_opts *g, int n_vocab) {
    qt_ctx_truncate(ctx, 0);
    qt_sampler *smp = qt_sampler_init(&g->sp, n_vocab);
    for (int i = 0; i < c->n_prompt; i++) qt_sampler_accept(smp, c->prompt[i]);
    const float *logits = qt_ctx_eval(ctx, c->prompt, c->n_prompt);
    float *lg = qt_malloc(sizeof(float) * (size_t)n_vocab);
    size_t cap = 256, n = 0;
    char *out = qt_malloc(cap), buf[256];
    qt_detok dt;
    qt_detok_init(&dt);
    for (int i = 0; i < c->n_prompt; i++) qt_detok_push(&dt, tok, c->prompt[i], buf, sizeof(buf));
    for (int k = 0; logits && k < g->max_tokens; k++) {
        memcpy(lg, logits, sizeof(float) * (size_t)n_vocab);
        int32_t next = qt_sampler_sample(smp, lg);
        qt_sampler_accept(smp, next);
        if (qt_tokenizer_is_eog(tok, next)) break;
        size_t b = qt_detok_push(&dt, tok, next, buf, sizeof(buf));
        if (n + b + 64 > cap) out = qt_realloc(out, cap = 2 * (n + b + 64));
        memcpy(out + n, buf, b);
        n += b;
        if (k + 1 < g->max_tokens) logits = qt_ctx_eval(ctx, &next, 1);
    }
    n += qt_detok_flush(&dt, out + n, cap - n);
    out[n] = 0;
    qt_free(lg);
    qt_sampler_free(smp);
    return out;
}

static int run_generate(const qt_model *m, const qt_lora *l, float scale, qt_backend *be, const char *path,
                        const gen_opts *g) {
    char *text = qt_read_file(path, NULL);
    if (!text) return QT_ERR;
    int rc = QT_ERR, n_cases = 0, cap = 16;
    gen_case *cases = qt_malloc(sizeof(gen_case) * (size_t)cap);
    int max_prompt = 0, line = 0;
    for (char *s = text, *next; s && *s; s = next) {
        next = strchr(s, '\n');
        if (next) *next++ = 0;
        line++;
        const char *p = s;
        while (*p == ' ' || *p == '\t' || *p == '\r') p++;
        if (!*p) continue;
        if (g->limit > 0 && n_cases >= g->limit) break;
        if (n_cases == cap) cases = qt_realloc(cases, sizeof(gen_case) * (size_t)(cap *= 2));
        if (make_case(m->tok, path, line, s, g->parse_special, g->chat_template ? g->chat_template : "llama2",
                      g->response_template, &cases[n_cases]) != QT_OK) goto done;
        max_prompt = QT_MAX(max_prompt, cases[n_cases].n_prompt);
        n_cases++;
    }
    if (n_cases == 0) {
        qt_log_error("%s: no records", path);
        goto done;
    }
    qt_ctx *ctx = qt_ctx_init(m, be, max_prompt + g->max_tokens, 256, false);
    if (!ctx) goto done;
    if (l) qt_ctx_set_adapter(ctx, l, scale);
    FILE *f = fopen(g->out_path, "w");
    if (!f) {
        qt_log_error("%s: cannot write", g->out_path);
        qt_ctx_free(ctx);
        goto done;
    }
    qt_bleu_stats corpus;
    memset(&corpus, 0, sizeof(corpus));
    double sum_bleu = 0, sum_rouge = 0, t0 = qt_time_s();
    int n_exact = 0;
    for (int i = 0; i < n_cases; i++) {
        const gen_case *c = &cases[i];
        char *out = generate(ctx, m->tok, c, g, m->cfg.n_vocab);
        char *hyp = strip_dup(out);
        bool em = qt_exact_match(hyp, c->reference);
        double bleu = qt_bleu_sentence(hyp, c->reference), rl = qt_rouge_l(hyp, c->reference, NULL, NULL);
        qt_bleu_add(&corpus, hyp, c->reference);
        n_exact += em;
        sum_bleu += bleu;
        sum_rouge += rl;
        cJSON *j = cJSON_CreateObject();
        cJSON_AddNumberToObject(j, "line", c->line);
        cJSON_AddStringToObject(j, "prompt", c->prompt_text);
        cJSON_AddStringToObject(j, "reference", c->reference);
        cJSON_AddStringToObject(j, "output", hyp);
        cJSON_AddBoolToObject(j, "exact_match", em);
        cJSON_AddNumberToObject(j, "bleu", round(bleu * 1e4) / 1e4);
        cJSON_AddNumberToObject(j, "rouge_l", round(rl * 1e6) / 1e6);
        char *js = cJSON_PrintUnformatted(j);
        fprintf(f, "%s\n", js);
        cJSON_free(js);
        cJSON_Delete(j);
        qt_log_info("%d/%d  line %d: bleu %.1f rouge-l %.3f%s", i + 1, n_cases, c->line, bleu, rl, em ? " exact" : "");
        qt_free(out);
        qt_free(hyp);
    }
    fclose(f);
    qt_ctx_free(ctx);
    printf("generate: %d records in %.1f s -> %s\n", n_cases, qt_time_s() - t0, g->out_path);
    printf("exact match %.4f (%d/%d)\n", (double)n_exact / n_cases, n_exact, n_cases);
    printf("corpus BLEU %.4f (sacrebleu 13a, exp smoothing; mean sentence BLEU %.4f)\n", qt_bleu_score(&corpus, false),
           sum_bleu / n_cases);
    printf("ROUGE-L F %.4f (mean over records)\n", sum_rouge / n_cases);
    rc = QT_OK;
done:
    for (int i = 0; i < n_cases; i++) case_free(&cases[i]);
    qt_free(cases);
    qt_free(text);
    return rc;
}

int qt_cmd_eval(int argc, char **argv) {
    const char *model = NULL, *adapter = NULL, *data = NULL, *tok_path = NULL, *split = "test", *out_path = NULL;
    int batch_size = 4, threads = 0, verbose = 1, max_batches = -1;
    bool no_mmap = false;
    const char *device = NULL, *compute = NULL;
    bool do_generate = false, no_loss = false;
    qt_data_opts dopts = qt_data_defaults();
    gen_opts g = { .max_tokens = 256, .sp = qt_sampler_defaults() };
    g.sp.temp = 0;
    g.sp.seed = 0;
    qt_opt_strs adapter_specs = { { 0 }, 0 };
    const qt_opt opts[] = {
        { "model", 'm', QT_OPT_STR, &model, "PATH", "base model: .gguf or Hugging Face folder" },
        QT_CLI_ADAPTER_OPTS(adapter_specs),
        { "data", 'd', QT_OPT_STR, &data, "PATH", "a .jsonl file, or a folder (its test.jsonl, see --split)" },
        { "split", 0, QT_OPT_STR, &split, "NAME", "file of a --data folder: test | valid | train (default test)" },
        { "batch-size", 'b', QT_OPT_INT, &batch_size, "N", "sequences per batch; as in train for the same numbers (default 4)", NULL, "[1,65536]" },
        { "max-batches", 0, QT_OPT_INT, &max_batches, "N", "only the first N batches; -1 = all (default)", "--test-batches", "[-1,1000000000]" },
        { "max-seq-len", 0, QT_OPT_INT, &dopts.max_seq_len, "N", "truncate records to N tokens (default 2048)", "--max-seq-length", "[2,10000000]" },
        { "mask-prompt", 0, QT_OPT_FLAG, &dopts.mask_prompt, NULL, "loss over completions / assistant turns only" },
        { "response-template", 0, QT_OPT_STR, &dopts.response_template, "TEXT",
          "\"text\" records: the answer starts after the last TEXT (loss over it; --generate's prompt / reference)", "--response-marker" },
        { "parse-special", 0, QT_OPT_FLAG, &dopts.parse_special, NULL, "read <s>, </s>, ... in text records as special tokens", "--special" },
        { "chat-template", 0, QT_OPT_STR, &dopts.chat_template, "NAME", "template of \"messages\" records, as in train (default llama2)" },
        { "no-loss", 0, QT_OPT_FLAG, &no_loss, NULL, "skip the loss (with --generate)" },
        { "generate", 0, QT_OPT_FLAG, &do_generate, NULL, "generate an answer per record and score it (BLEU, ROUGE-L, exact)" },
        { "max-tokens", 'n', QT_OPT_INT, &g.max_tokens, "N", "with --generate: tokens per answer (default 256)", "--n-predict", "[1,100000000]" },
        { "temp", 0, QT_OPT_FLOAT, &g.sp.temp, "T", "with --generate: temperature; 0 = greedy (default 0)", "--temperature", "[0,100]" },
        { "top-k", 0, QT_OPT_INT, &g.sp.top_k, "K", "with --generate: top-k (default 40)", NULL, "[0,inf)" },
        { "top-p", 0, QT_OPT_FLOAT, &g.sp.top_p, "P", "with --generate: top-p (default 0.95)", NULL, "(0,1]" },
        { "seed", 's', QT_OPT_U64, &g.sp.seed, "S", "with --generate: sampling seed (default 0)" },
        { "limit", 0, QT_OPT_INT, &g.limit, "N", "with --generate: only the first N records", NULL, "[0,1000000000]" },
        { "output", 'o', QT_OPT_STR, &out_path, "FILE", "with --generate: JSONL of prompt, reference, output, scores "
                                                         "(default ADAPTER/eval.jsonl, or eval.jsonl)" },
        QT_CLI_THREADS_OPT(threads),
        QT_CLI_NO_MMAP_OPT(no_mmap),
        QT_CLI_DEVICE_OPT(device),
        { "compute", 0, QT_OPT_STR, &compute, "bf16|fp32", "precision of the loss's products, as qtune train (default bf16 where the CPU has AVX512_BF16)" },
        { "tokenizer", 0, QT_OPT_STR, &tok_path, "PATH", "take the vocabulary from this .gguf" },
        QT_CLI_VERBOSE_OPT(verbose),
        { 0 },
    };
    const qt_cmd_spec spec = { "eval", "-m MODEL [--adapter A] --data FILE|DIR [options]",
                               "Loss and perplexity over a JSONL file (as qtune train computes them); with --generate, "
                               "generated answers scored by exact match, BLEU and ROUGE-L.", opts, 0, 0 };
    char *pos[1];
    int n_pos;
    int r = qt_opts_parse(&spec, argc, argv, pos, &n_pos);
    if (r) return r > 0 ? 0 : 2;
    qt_log_set_level(verbose);
    if (!model || !data) {
        qt_log_error("qtune eval: give a model (-m) and data (--data)");
        return 2;
    }
    if (compute && strcmp(compute, "bf16") && strcmp(compute, "fp32")) {
        qt_log_error("qtune eval: --compute must be bf16 or fp32, not '%s'", compute);
        return 2;
    }

    int rc = 1;
    char *path = resolve_data(data, split), *def_out = NULL;
    qt_model *m = NULL;
    qt_lora *l = NULL;
    qt_cli_backend cb = { 0 };
    qt_dataset *d = NULL;
    float scale = 1.0f;
    m = qt_cli_load_model(model, tok_path, true);
    if (!m) goto done;
    if (no_mmap && qt_model_copy_weights(m) != QT_OK) goto done;
    adapter = adapter_specs.n ? adapter_specs.v[0] : NULL;
    if (adapter_specs.n == 1 && !(l = qt_cli_load_adapter_at(m, &adapter_specs, 0, &scale))) goto done;
    if (adapter_specs.n > 1) {
        // several adapters: one stacked adapter equal to their scaled sum
        qt_lora *ls[QT_OPT_MAX_REPEAT] = { 0 };
        float sc[QT_OPT_MAX_REPEAT];
        bool ok = true;
        for (int i = 0; i < adapter_specs.n && ok; i++) ok = (ls[i] = qt_cli_load_adapter_at(m, &adapter_specs, i, &sc[i])) != NULL;
        if (ok) l = qt_lora_stack(m, (const qt_lora *const *)ls, sc, adapter_specs.n);
        for (int i = 0; i < adapter_specs.n; i++) qt_lora_free(ls[i]);
        if (!l) goto done;
    }
    if (qt_cli_backend_init(&cb, m, device, threads) != QT_OK) goto done;
    if (!no_loss) {
        d = qt_dataset_load(path, m->tok, &dopts);
        if (!d) goto done;
        qt_lora *use = l;
        qt_lora *none = NULL;
        float saved = 0;
        if (use) {
            saved = use->scale;
            use->scale *= scale;   // PATH:SCALE
        } else {
            // no adapter: a rank-1 adapter on one projection with B = 0 (PEFT
            // init) adds exactly 0, so this is the base model's loss
            qt_lora_config c = qt_lora_defaults();
            c.rank = 1;
            c.targets = 1;   // the architecture's first linear
            c.n_layers = 1;
            use = none = qt_lora_init(m, &c, 0);
            if (!none) goto done;
        }
        double loss;
        int64_t n_tok;
        int e = eval_loss(m, use, cb.be, compute, d, batch_size, max_batches, &loss, &n_tok);
        if (l) l->scale = saved;
        qt_lora_free(none);
        if (e != QT_OK) goto done;
        printf("%s: %d records, %lld tokens scored%s\n", path, qt_dataset_n(d), (long long)n_tok,
               qt_dataset_n_truncated(d) ? " (some records truncated by --max-seq-len)" : "");
        printf("loss %.6f, perplexity %.4f\n", loss, exp(loss));
    }
    if (do_generate) {
        if (!out_path) {
            if (adapter && is_dir(adapter)) {
                size_t n = strlen(adapter) + 16;
                def_out = qt_malloc(n);
                snprintf(def_out, n, "%s/eval.jsonl", adapter);
                out_path = def_out;
            } else {
                out_path = "eval.jsonl";
            }
        }
        g.out_path = out_path;
        g.parse_special = dopts.parse_special;
        g.response_template = dopts.response_template;
        g.chat_template = dopts.chat_template;
        if (run_generate(m, l, scale, cb.be, path, &g) != QT_OK) goto done;
    }
    rc = 0;
done:
    qt_dataset_free(d);
    qt_cli_backend_free(&cb);
    qt_lora_free(l);
    qt_model_free(m);
    qt_free(path);
    qt_free(def_out);
    return rc;
}
