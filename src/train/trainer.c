// trainer.c: the training loop (see trainer.h).
// Checkpoint = the adapter in PEFT form (adapter_model.safetensors +
// adapter_config.json) plus optimizer.safetensors (AdamW m, v) and
// training_state.json (step, seed, settings), each written to a temporary
// file and renamed. Resume restores all of it and seeks the batcher, and the
// dropout masks are a function of (seed, step), so a resumed run continues
// exactly the loss curve of an uninterrupted one.
#include "train/trainer.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/base.h"
#include "base/pool.h"
#include "io/safetensors.h"
#include "model/lora-io.h"
#include "model/model.h"
#include "train/model-train.h"
#include "train/report.h"

qt_train_opts qt_train_defaults(void) {
    qt_train_opts o;
    memset(&o, 0, sizeof(o));
    o.adapter_path = "adapters";
    o.iters = 1000;
    o.batch_size = 4;
    o.grad_accum = 1;
    o.steps_per_report = 10;
    o.steps_per_eval = 200;
    o.val_batches = 25;
    o.save_every = 100;
    o.adam = qt_adamw_defaults();
    o.adam.weight_decay = 0.0f;   // PEFT/TRL and mlx-lm default
    o.sched.kind = QT_SCHED_CONSTANT;
    o.lora = qt_lora_defaults();
    o.data_opts = qt_data_defaults();
    return o;
}

static volatile sig_atomic_t g_interrupted;
static void on_sigint(int sig) { (void)sig; g_interrupted = 1; }

// ---- logging to the terminal and DIR/train.log ----

typedef struct {
    FILE *log;       // human-readable
    FILE *metrics;   // JSONL
} run_logs;

static void say(run_logs *L, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(run_logs *L, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stdout, fmt, ap);
    va_end(ap);
    fflush(stdout);
    if (L->log) {
        va_start(ap, fmt);
        vfprintf(L->log, fmt, ap);
        va_end(ap);
        fflush(L->log);
    }
}

static void format_duration(char *buf, size_t n, double s) {
    if (!(s >= 0) || s > 1e8) { snprintf(buf, n, "?"); return; }
    int h = (int)(s / 3600), m = (int)(s / 60) % 60, sec = (int)s % 60;
    if (h) snprintf(buf, n, "%dh%02dm", h, m);
    else if (m) snprintf(buf, n, "%dm%02ds", m, sec);
    else snprintf(buf, n, "%.1fs", s);
}

// ---- batches ----

typedef struct {
    int32_t *tokens, *targets;
    int *seq_start;
    int cap_tokens, cap_seq;
    int64_t n_targets;
    qt_batch b;
} batch_buf;

// Packs examples idx[0..n) into b: inputs tokens[0..len-2], targets the next
// token where it is trained, else -1.
static void pack(batch_buf *bb, const qt_dataset *d, const int *idx, int n) {
    int N = 0;
    bb->n_targets = 0;
    bb->seq_start[0] = 0;
    int k = 0;
    for (int i = 0; i < n; i++) {
        const qt_example *e = qt_dataset_get(d, idx[i]);
        if (e->len < 2) continue;
        for (int t = 0; t + 1 < e->len; t++) {
            QT_ASSERT(N < bb->cap_tokens);
            bb->tokens[N] = e->tokens[t];
            bb->targets[N] = e->train[t + 1] ? e->tokens[t + 1] : -1;
            bb->n_targets += e->train[t + 1] != 0;
            N++;
        }
        bb->seq_start[++k] = N;
    }
    bb->b = (qt_batch){ bb->tokens, bb->targets, bb->seq_start, k };
}

static int64_t batch_targets(const qt_dataset *d, const int *idx, int n) {
    int64_t c = 0;
    for (int i = 0; i < n; i++) {
        const qt_example *e = qt_dataset_get(d, idx[i]);
        for (int t = 1; t < e->len; t++) c += e->train[t] != 0;
    }
    return c;
}

// Mean loss over up to max_batches batches (-1: all) of d, in file order.
static double evaluate(qt_tmodel *tm, batch_buf *bb, const qt_dataset *d, int batch_size, int max_batches,
                       int64_t *n_tokens) {
    qt_batcher *bt = qt_batcher_init(d, batch_size, 0, false);
    int per_epoch = qt_batcher_n_per_epoch(bt);
    int nb = max_batches < 0 ? per_epoch : QT_MIN(max_batches, per_epoch);
    int *idx = qt_malloc(sizeof(int) * (size_t)batch_size);
    double sum = 0;
    int64_t cnt = 0;
    for (int i = 0; i < nb; i++) {
        int n = qt_batcher_next(bt, idx);
        pack(bb, d, idx, n);
        if (bb->b.n_seq == 0) continue;
        double ls;
        int64_t c;
        if (qt_tmodel_step(tm, &bb->b, false, false, 0, 0, &ls, &c) != QT_OK) { sum = NAN; break; }
        sum += ls;
        cnt += c;
    }
    qt_free(idx);
    qt_batcher_free(bt);
    if (n_tokens) *n_tokens = cnt;
    return cnt ? sum / (double)cnt : NAN;
}

// ---- checkpoints ----

static int save_state(const qt_train_opts *o, const qt_lora *l, const qt_model *m, int64_t step) {
    if (qt_lora_save_peft(l, m, o->adapter_path) != QT_OK) return QT_ERR;
    size_t n = strlen(o->adapter_path) + 40;
    char *path = qt_malloc(n);
    snprintf(path, n, "%s/optimizer.safetensors", o->adapter_path);
    qt_st_writer *w = qt_st_writer_init();
    int64_t shape[1] = { (int64_t)l->n_params };
    qt_st_writer_add(w, "adamw.m", QT_TYPE_F32, 1, shape, l->m);
    qt_st_writer_add(w, "adamw.v", QT_TYPE_F32, 1, shape, l->v);
    int rc = qt_st_write(w, path);
    qt_st_writer_free(w);
    if (rc == QT_OK) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddNumberToObject(j, "step", (double)step);
        cJSON_AddNumberToObject(j, "iters", o->iters);
        cJSON_AddNumberToObject(j, "seed", (double)o->seed);
        cJSON_AddNumberToObject(j, "batch_size", o->batch_size);
        cJSON_AddNumberToObject(j, "grad_accum", o->grad_accum);
        cJSON_AddNumberToObject(j, "learning_rate", o->adam.lr);
        cJSON_AddStringToObject(j, "model", o->model);
        char *text = cJSON_Print(j);
        cJSON_Delete(j);
        snprintf(path, n, "%s/training_state.json", o->adapter_path);
        rc = qt_write_file_atomic(path, text, strlen(text));
        cJSON_free(text);
    }
    qt_free(path);
    return rc;
}

// Restores adapter, moments and step from adapter_path. *l replaced.
static int load_state(const qt_train_opts *o, const qt_model *m, qt_lora **l, int64_t *step) {
    qt_lora *loaded = qt_lora_load_peft(m, o->adapter_path);
    if (!loaded) return QT_ERR;
    if (loaded->n_params != (*l)->n_params || loaded->cfg.rank != (*l)->cfg.rank ||
        loaded->cfg.targets != (*l)->cfg.targets || loaded->first_layer != (*l)->first_layer) {
        qt_log_error("%s: the checkpoint's adapter (rank %d) does not match the requested settings (rank %d, targets, "
                     "layers): resume with the same --lora-* options", o->adapter_path, loaded->cfg.rank, (*l)->cfg.rank);
        qt_lora_free(loaded);
        return QT_ERR;
    }
    memcpy((*l)->params, loaded->params, sizeof(float) * loaded->n_params);
    qt_lora_free(loaded);
    size_t n = strlen(o->adapter_path) + 40;
    char *path = qt_malloc(n);
    int rc = QT_ERR;
    snprintf(path, n, "%s/optimizer.safetensors", o->adapter_path);
    qt_st_set *s = qt_st_open(path);
    cJSON *j = NULL;
    if (!s) goto done;
    const qt_st_tensor *tm = qt_st_find(s, "adamw.m"), *tv = qt_st_find(s, "adamw.v");
    if (!tm || !tv || tm->type != QT_TYPE_F32 || tv->type != QT_TYPE_F32 || tm->nbytes != sizeof(float) * (*l)->n_params ||
        tv->nbytes != tm->nbytes) {
        qt_log_error("%s: optimizer state does not match the adapter (%zu parameters)", path, (*l)->n_params);
        goto done;
    }
    memcpy((*l)->m, tm->data, tm->nbytes);
    memcpy((*l)->v, tv->data, tv->nbytes);
    snprintf(path, n, "%s/training_state.json", o->adapter_path);
    char *text = qt_read_file(path, NULL);
    if (!text) goto done;
    j = cJSON_Parse(text);
    qt_free(text);
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(j, "step");
    if (!cJSON_IsNumber(st) || st->valuedouble < 0) {
        qt_log_error("%s: missing or invalid \"step\"", path);
        goto done;
    }
    *step = (int64_t)st->valuedouble;
    rc = QT_OK;
done:
    cJSON_Delete(j);
    qt_st_close(s);
    qt_free(path);
    return rc;
}

// ---- the run ----

int qt_train_run(const qt_train_opts *o) {
    int rc = QT_ERR;
    qt_model *m = NULL;
    qt_dataset *dtrain = NULL, *dvalid = NULL, *dtest = NULL;
    char *ptrain = NULL, *pvalid = NULL, *ptest = NULL;
    qt_lora *l = NULL;
    qt_pool *pool = NULL;
    qt_tmodel *tm = NULL;
    qt_batcher *bt = NULL;
    batch_buf bb = { 0 };
    int *idx = NULL;
    run_logs L = { 0 };

    if (o->iters <= 0 || o->batch_size <= 0 || o->grad_accum <= 0 || o->steps_per_report <= 0 || o->save_every < 0 ||
        o->steps_per_eval < 0 || !(o->adam.lr > 0)) {
        qt_log_error("invalid training settings: --iters, --batch-size, --grad-accum, --steps-per-report and "
                     "--learning-rate must be positive");
        return QT_ERR;
    }
    m = qt_model_load(o->model);
    if (!m) goto done;
    if (o->tokenizer) {
        qt_gguf *g = qt_gguf_open(o->tokenizer);
        qt_tokenizer *t = g ? qt_tokenizer_from_gguf(g) : NULL;
        qt_gguf_close(g);
        if (!t) goto done;
        qt_tokenizer_free(m->tok);
        m->tok = t;
    }
    if (!m->tok) {
        qt_log_error("%s: no tokenizer (hint: --tokenizer FILE.gguf)", o->model);
        goto done;
    }
    if (o->quantize) {
        int qt = qt_type_from_name(o->quantize);
        if (qt < 0 || qt_model_quantize(m, (qt_type)qt) != QT_OK) {
            if (qt < 0) qt_log_error("--quantize: unknown type '%s' (q4_0, q4_k, q8_0, iq4_nl, ...)", o->quantize);
            goto done;
        }
    }
    if (qt_data_find_splits(o->data, &ptrain, &pvalid, &ptest) != QT_OK) goto done;
    dtrain = qt_dataset_load(ptrain, m->tok, &o->data_opts);
    if (!dtrain) goto done;
    if (pvalid && !(dvalid = qt_dataset_load(pvalid, m->tok, &o->data_opts))) goto done;
    if (o->test && !ptest) {
        qt_log_error("%s: --test needs a test.jsonl", o->data);
        goto done;
    }
    if (o->test && !(dtest = qt_dataset_load(ptest, m->tok, &o->data_opts))) goto done;

    l = qt_lora_init(m, &o->lora, o->seed);
    if (!l || qt_lora_enable_training(l) != QT_OK) goto done;

    int max_seq = qt_dataset_max_len(dtrain);
    if (dvalid) max_seq = QT_MAX(max_seq, qt_dataset_max_len(dvalid));
    if (dtest) max_seq = QT_MAX(max_seq, qt_dataset_max_len(dtest));
    int max_tokens = max_seq * o->batch_size;
    int nth = o->threads > 0 ? o->threads : qt_n_cpus();

    // memory plan: refuse what cannot fit
    size_t w_bytes = qt_model_weight_bytes(m), a_bytes = 4 * sizeof(float) * l->n_params;
    size_t act = qt_tmodel_bytes(m, l, max_tokens, max_seq, o->grad_checkpoint, nth);
    size_t total = w_bytes + a_bytes + act, avail = qt_total_memory();
    printf("model %s: %s, %d layers, %.1f M parameters\n", m->name, m->arch_name, m->cfg.n_layer,
           qt_model_n_params(m) / 1e6);
    printf("data: train %d records (%lld tokens, %lld trained), valid %d, test %d; longest %d tokens%s\n",
           qt_dataset_n(dtrain), (long long)qt_dataset_n_tokens(dtrain), (long long)qt_dataset_n_train_tokens(dtrain),
           dvalid ? qt_dataset_n(dvalid) : 0, dtest ? qt_dataset_n(dtest) : 0, max_seq,
           qt_dataset_n_truncated(dtrain) ? " (some truncated by --max-seq-len)" : "");
    if (qt_dataset_n_truncated(dtrain)) printf("  %d training records truncated to %d tokens\n", qt_dataset_n_truncated(dtrain), o->data_opts.max_seq_len);
    if (qt_dataset_n_skipped(dtrain)) printf("  %d bad lines skipped\n", qt_dataset_n_skipped(dtrain));
    printf("lora: rank %d, alpha %g, scale %g, dropout %g, %zu trainable parameters (%.3f%% of the model)\n",
           l->cfg.rank, l->cfg.alpha, l->scale, l->cfg.dropout, l->n_params, 100.0 * l->n_params / qt_model_n_params(m));
    printf("memory: %.1f MiB = weights %.1f + adapters and optimizer %.1f + activations %.1f%s (machine: %.1f GiB)\n",
           total / 1048576.0, w_bytes / 1048576.0, a_bytes / 1048576.0, act / 1048576.0,
           o->grad_checkpoint ? " (gradient checkpointing)" : "", avail / 1073741824.0);
    if (avail && total > avail / 10 * 9) {
        qt_log_error("this run needs %.1f GiB but the machine has %.1f GiB: try a smaller --batch-size, "
                     "--grad-checkpoint, a shorter --max-seq-len, or --quantize q4_0",
                     total / 1073741824.0, avail / 1073741824.0);
        goto done;
    }

    pool = qt_pool_init(nth);
    tm = qt_tmodel_init(m, l, pool, max_tokens, max_seq, o->grad_checkpoint);
    if (!tm) goto done;
    bb.cap_tokens = max_tokens;
    bb.tokens = qt_malloc(sizeof(int32_t) * (size_t)max_tokens);
    bb.targets = qt_malloc(sizeof(int32_t) * (size_t)max_tokens);
    bb.seq_start = qt_malloc(sizeof(int) * (size_t)(o->batch_size + 1));
    idx = qt_malloc(sizeof(int) * (size_t)o->batch_size * (size_t)o->grad_accum);
    bt = qt_batcher_init(dtrain, o->batch_size, o->seed, true);

    int64_t step = 0;
    if (o->resume) {
        if (load_state(o, m, &l, &step) != QT_OK) goto done;
        qt_batcher_seek(bt, step * o->grad_accum);
        printf("resumed from %s at step %lld\n", o->adapter_path, (long long)step);
    }
    char logpath[1024];
    snprintf(logpath, sizeof(logpath), "%s/train.log", o->adapter_path);
    if (qt_lora_save_peft(l, m, o->adapter_path) != QT_OK) goto done;   // creates the folder early
    L.log = fopen(logpath, step ? "a" : "w");
    snprintf(logpath, sizeof(logpath), "%s/metrics.jsonl", o->adapter_path);
    L.metrics = fopen(logpath, step ? "a" : "w");

    qt_sched sched = o->sched;
    sched.total = o->iters;
    g_interrupted = 0;
    struct sigaction sa, old_sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, &old_sa);

    double t_start = qt_time_s(), t_report = t_start, loss_acc = 0;
    int64_t tgt_acc = 0, tok_acc = 0, tok_total = 0, steps_done = 0;
    if (dvalid && o->steps_per_eval > 0 && step == 0) {
        double vl = evaluate(tm, &bb, dvalid, o->batch_size, o->val_batches, NULL);
        say(&L, "iter %5d: val loss %.4f, val ppl %.2f\n", 0, vl, exp(vl));
        if (L.metrics) fprintf(L.metrics, "{\"step\": 0, \"val_loss\": %.6f}\n", vl);
    }
    while (step < o->iters && !g_interrupted) {
        // one optimizer step over grad_accum micro-batches
        int counts[256];
        QT_ASSERT(o->grad_accum <= 256);
        int64_t n_tgt = 0;
        for (int a = 0; a < o->grad_accum; a++) {
            counts[a] = qt_batcher_next(bt, idx + a * o->batch_size);
            n_tgt += batch_targets(dtrain, idx + a * o->batch_size, counts[a]);
        }
        memset(l->grads, 0, sizeof(float) * l->n_params);
        double loss_sum = 0;
        for (int a = 0; a < o->grad_accum && n_tgt > 0; a++) {
            pack(&bb, dtrain, idx + a * o->batch_size, counts[a]);
            if (bb.b.n_seq == 0) continue;
            double ls;
            int64_t c;
            uint64_t dseed = o->seed * 0x9e3779b97f4a7c15ull + (uint64_t)(step * o->grad_accum + a);
            if (qt_tmodel_step(tm, &bb.b, true, true, 1.0f / (float)n_tgt, dseed, &ls, &c) != QT_OK) goto done;
            loss_sum += ls;
            tok_acc += bb.b.seq_start[bb.b.n_seq];
        }
        double gnorm = qt_clip_grad_norm(l->grads, l->n_params, o->grad_clip);
        float lr = qt_sched_lr(&sched, o->adam.lr, step);
        qt_adamw_step(l->params, l->grads, l->m, l->v, l->n_params, &o->adam, lr, step + 1);
        step++;
        steps_done++;
        loss_acc += loss_sum;
        tgt_acc += n_tgt;
        if (L.metrics)
            fprintf(L.metrics, "{\"step\": %lld, \"loss\": %.6f, \"lr\": %.4g, \"grad_norm\": %.4g}\n", (long long)step,
                    n_tgt ? loss_sum / n_tgt : NAN, lr, gnorm);
        if (step % o->steps_per_report == 0 || step == o->iters) {
            double now = qt_time_s(), dt = now - t_report;
            tok_total += tok_acc;
            char eta[32];
            format_duration(eta, sizeof(eta), (now - t_start) / (double)steps_done * (double)(o->iters - step));
            say(&L, "iter %5lld/%d: loss %.4f | lr %.3g | %.1f tokens/s | %.2f s/iter | ETA %s | peak mem %.2f GiB\n",
                (long long)step, o->iters, tgt_acc ? loss_acc / tgt_acc : NAN, lr, tok_acc / dt,
                dt / o->steps_per_report, eta, qt_peak_rss() / 1073741824.0);
            if (L.metrics)
                fprintf(L.metrics, "{\"step\": %lld, \"train_loss\": %.6f, \"tokens_per_s\": %.2f, \"peak_rss\": %zu}\n",
                        (long long)step, tgt_acc ? loss_acc / tgt_acc : NAN, tok_acc / dt, qt_peak_rss());
            loss_acc = 0;
            tgt_acc = tok_acc = 0;
            t_report = now;
        }
        if (dvalid && o->steps_per_eval > 0 && (step % o->steps_per_eval == 0 || step == o->iters)) {
            double t0 = qt_time_s();
            double vl = evaluate(tm, &bb, dvalid, o->batch_size, o->val_batches, NULL);
            say(&L, "iter %5lld: val loss %.4f, val ppl %.2f (%.1f s)\n", (long long)step, vl, exp(vl), qt_time_s() - t0);
            if (L.metrics) fprintf(L.metrics, "{\"step\": %lld, \"val_loss\": %.6f}\n", (long long)step, vl);
            t_report += qt_time_s() - t0;   // keep evaluation out of the training speed
        }
        if (o->save_every > 0 && step % o->save_every == 0 && step < o->iters) {
            if (save_state(o, l, m, step) != QT_OK) goto done;
            say(&L, "iter %5lld: saved checkpoint to %s\n", (long long)step, o->adapter_path);
        }
        if (L.metrics) fflush(L.metrics);
    }
    sigaction(SIGINT, &old_sa, NULL);
    if (save_state(o, l, m, step) != QT_OK) goto done;
    if (g_interrupted) {
        say(&L, "interrupted at step %lld: checkpoint saved to %s (continue with --resume)\n", (long long)step,
            o->adapter_path);
        rc = QT_OK;
        goto done;
    }
    say(&L, "saved adapter to %s (adapter_model.safetensors, adapter_config.json)\n", o->adapter_path);
    if (dtest) {
        int64_t n;
        double tl = evaluate(tm, &bb, dtest, o->batch_size, -1, &n);
        say(&L, "test loss %.4f, test ppl %.2f (%lld tokens)\n", tl, exp(tl), (long long)n);
        if (L.metrics) fprintf(L.metrics, "{\"step\": %lld, \"test_loss\": %.6f}\n", (long long)step, tl);
    }
    rc = QT_OK;
done:
    if (L.log) fclose(L.log);
    if (L.metrics) fclose(L.metrics);
    if (rc == QT_OK && qt_report_write(o->adapter_path) == QT_OK) printf("report: %s/report.html\n", o->adapter_path);
    qt_free(idx);
    qt_free(bb.tokens);
    qt_free(bb.targets);
    qt_free(bb.seq_start);
    qt_batcher_free(bt);
    qt_tmodel_free(tm);
    qt_pool_free(pool);
    qt_lora_free(l);
    qt_dataset_free(dtrain);
    qt_dataset_free(dvalid);
    qt_dataset_free(dtest);
    qt_free(ptrain);
    qt_free(pvalid);
    qt_free(ptest);
    qt_model_free(m);
    return rc;
}
