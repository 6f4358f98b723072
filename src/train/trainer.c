// trainer.c: the training loop (see trainer.h).
// Checkpoint = the adapter in PEFT form (adapter_model.safetensors +
// adapter_config.json, for users), optimizer.safetensors and
// training_state.json (step, seed, settings, for people), each written to a
// temporary file and renamed. optimizer.safetensors alone holds everything a
// resume needs (adapter parameters, AdamW m and v, the step): one rename is
// the commit point, so a run killed between two renames still resumes from a
// consistent state. Resume restores all of it and seeks the batcher, and the
// dropout masks are a function of (seed, step), so a resumed run continues
// exactly the loss curve of an uninterrupted one.
//
// Data parallel (mpirun -np N, src/dist): every rank loads the model and the
// data, draws the same global batches (N x --batch-size records, the batches
// one process with N times the batch would draw) and computes the slice
// [rank*n/N, (rank+1)*n/N) of each; gradients are summed by an all-reduce per
// optimizer step, started layer by layer as the backward pass finishes them,
// so every rank takes the same AdamW step. Validation and test losses are
// computed the same way. Only rank 0 prints, writes logs and checkpoints;
// a resume is read by rank 0 and broadcast.
#include "train/trainer.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/base.h"
#include "backend/backend.h"
#include "base/pool.h"
#include "dist/dist.h"
#include "io/safetensors.h"
#include "model/engine.h"
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
    o.dist_timeout = 600;
    return o;
}

static volatile sig_atomic_t g_interrupted;
static void on_sigint(int sig) { (void)sig; g_interrupted = 1; }

// Only rank 0 talks to the terminal and the log files.
static bool g_quiet;
static void info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void info(const char *fmt, ...) {
    if (g_quiet) return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stdout, fmt, ap);
    va_end(ap);
}

// With several ranks, every log line says which rank wrote it.
static void rank_sink(const char *line, void *ud) {
    (void)ud;
    fprintf(stderr, "[rank %d/%d] %s\n", qt_dist_rank(), qt_dist_size(), line);
}

// This rank's share [*lo, *hi) of a global batch of n records.
static void my_slice(int n, int *lo, int *hi) {
    int r = qt_dist_rank(), size = qt_dist_size();
    *lo = (int)((int64_t)r * n / size);
    *hi = (int)((int64_t)(r + 1) * n / size);
}

// True on every rank when ok is true on every rank (a failed all-reduce
// counts as false).
static bool all_ok(bool ok) {
    double bad = ok ? 0 : 1;
    if (qt_dist_max_f64(&bad, 1) != QT_OK) return false;
    return bad == 0;
}

// ---- logging to the terminal and DIR/train.log ----

typedef struct {
    FILE *log;       // human-readable
    FILE *metrics;   // JSONL
} run_logs;

static void say(run_logs *L, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(run_logs *L, const char *fmt, ...) {
    if (g_quiet) return;
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

// Mean loss over up to max_batches global batches (-1: all) of d, in file
// order; batch_size records per rank, each rank computing its slice.
static double evaluate(qt_tmodel *tm, batch_buf *bb, const qt_dataset *d, int batch_size, int max_batches,
                       int64_t *n_tokens) {
    int global = batch_size * qt_dist_size();
    qt_batcher *bt = qt_batcher_init(d, global, 0, false);
    int per_epoch = qt_batcher_n_per_epoch(bt);
    int nb = max_batches < 0 ? per_epoch : QT_MIN(max_batches, per_epoch);
    int *idx = qt_malloc(sizeof(int) * (size_t)global);
    double acc[2] = { 0, 0 };   // loss sum, targets
    for (int i = 0; i < nb; i++) {
        int n = qt_batcher_next(bt, idx), lo, hi;
        my_slice(n, &lo, &hi);
        pack(bb, d, idx + lo, hi - lo);
        if (bb->b.n_seq == 0) continue;
        double ls;
        int64_t c;
        if (qt_tmodel_step(tm, &bb->b, false, false, 0, 0, &ls, &c) != QT_OK) { acc[0] = NAN; break; }
        acc[0] += ls;
        acc[1] += (double)c;
    }
    qt_free(idx);
    qt_batcher_free(bt);
    if (qt_dist_sum_f64(acc, 2) != QT_OK) acc[0] = NAN;
    if (n_tokens) *n_tokens = (int64_t)acc[1];
    return acc[1] > 0 ? acc[0] / acc[1] : NAN;
}

// ---- gradient all-reduce, one bucket per layer, overlapped with backward ----

typedef struct {
    const qt_lora *l;
    bool armed;        // this micro-batch's backward is the last of the step
    int next;          // layers >= next have their all-reduce started
    int rc;            // first failure to start one
} grad_reducer;

// [off, off + n) of layer il's adapters in the gradient arena (layer-major).
static void layer_range(const qt_lora *l, int il, size_t *off, size_t *n) {
    size_t lo = SIZE_MAX, hi = 0;
    for (int t = 0; t < l->n_linears; t++) {
        const qt_lora_pair *p = qt_lora_get(l, il, t);
        if (!p->a) continue;
        size_t sz = (size_t)l->cfg.rank * (size_t)(p->n_in + p->n_out);
        lo = QT_MIN(lo, p->off);
        hi = QT_MAX(hi, p->off + sz);
    }
    *off = lo == SIZE_MAX ? 0 : lo;
    *n = lo == SIZE_MAX ? 0 : hi - lo;
}

// Starts the all-reduces of layers [il, r->next), highest first: every rank
// issues the same buckets in the same order whichever way they were reached.
static int reduce_from(grad_reducer *r, int il) {
    int rc = QT_OK;
    for (int k = r->next - 1; k >= il && k >= r->l->first_layer; k--) {
        size_t off, n;
        layer_range(r->l, k, &off, &n);
        if (rc == QT_OK) rc = qt_dist_isum_f32(r->l->grads + off, n);
    }
    if (il < r->next) r->next = il;
    if (r->rc == QT_OK) r->rc = rc;
    return r->rc;
}

static void on_layer_done(void *ud, int il) {
    grad_reducer *r = ud;
    if (!r->armed) return;
    reduce_from(r, il);   // a failure is kept in r->rc
    qt_dist_progress();
}

// ---- checkpoints ----

static int save_state(const qt_train_opts *o, const qt_lora *l, const qt_model *m, int64_t step) {
    if (qt_lora_save_peft(l, m, o->adapter_path) != QT_OK) return QT_ERR;
    size_t n = strlen(o->adapter_path) + 40;
    char *path = qt_malloc(n);
    snprintf(path, n, "%s/optimizer.safetensors", o->adapter_path);
    qt_st_writer *w = qt_st_writer_init();
    int64_t shape[1] = { (int64_t)l->n_params }, one[1] = { 1 }, st = step;
    qt_st_writer_add(w, "adamw.m", QT_TYPE_F32, 1, shape, l->m);
    qt_st_writer_add(w, "adamw.v", QT_TYPE_F32, 1, shape, l->v);
    qt_st_writer_add(w, "train.params", QT_TYPE_F32, 1, shape, l->params);
    qt_st_writer_add(w, "train.step", QT_TYPE_I64, 1, one, &st);
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

// Restores adapter, moments and step from adapter_path's optimizer.safetensors
// (the commit point); the PEFT adapter next to it tells whether the requested
// adapter shape matches.
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
    qt_lora_free(loaded);
    size_t n = strlen(o->adapter_path) + 40;
    char *path = qt_malloc(n);
    int rc = QT_ERR;
    snprintf(path, n, "%s/optimizer.safetensors", o->adapter_path);
    qt_st_set *s = qt_st_open(path);
    if (!s) goto done;
    const size_t bytes = sizeof(float) * (*l)->n_params;
    const char *names[3] = { "adamw.m", "adamw.v", "train.params" };
    float *dst[3] = { (*l)->m, (*l)->v, (*l)->params };
    for (int i = 0; i < 3; i++) {
        const qt_st_tensor *t = qt_st_find(s, names[i]);
        if (!t || t->type != QT_TYPE_F32 || t->nbytes != bytes) {
            qt_log_error("%s: tensor '%s' is missing or does not match the adapter (%zu F32 values)", path, names[i],
                         (*l)->n_params);
            goto done;
        }
        memcpy(dst[i], t->data, bytes);
    }
    const qt_st_tensor *ts = qt_st_find(s, "train.step");
    int64_t st = -1;
    if (ts && ts->type == QT_TYPE_I64 && ts->nbytes == sizeof(st)) memcpy(&st, ts->data, sizeof(st));
    if (st < 0) {
        qt_log_error("%s: missing or invalid 'train.step'", path);
        goto done;
    }
    *step = st;
    rc = QT_OK;
done:
    qt_st_close(s);
    qt_free(path);
    return rc;
}

// What a rank stopped by mpirun says about the checkpoint (step 0: none yet).
static void set_stop_note(const qt_train_opts *o, int64_t step) {
    char note[1024];
    if (step) snprintf(note, sizeof(note), "the last checkpoint (step %lld) in %s is intact: continue with --resume",
                       (long long)step, o->adapter_path);
    else snprintf(note, sizeof(note), "no checkpoint had been saved yet");
    qt_dist_set_stop_note(note);
}

// Rank 0 writes the checkpoint; every rank learns whether that worked.
static int save_all(const qt_train_opts *o, const qt_lora *l, const qt_model *m, int64_t step) {
    bool ok = qt_dist_rank() != 0 || save_state(o, l, m, step) == QT_OK;
    return all_ok(ok) ? QT_OK : QT_ERR;
}

// GPU memory plan, once the weights are on the device: what the step still
// needs (activations, the adapter's parameters and gradients, the backend's
// scratch) against the device's free memory. QT_ERR (logged, with what to
// change) when it will not fit.
static int device_plan(qt_backend *be, const qt_model *m, const qt_lora *l, int max_tokens, int max_seq, bool ckpt) {
    size_t free_b = 0, total_b = 0, held = 0;
    be->ops->mem_info(be, &free_b, &total_b, &held);
    int64_t max_in, max_out;
    qt_linear_widths(m, &max_in, &max_out);
    max_out = QT_MAX(max_out, (int64_t)m->cfg.n_vocab);   // the output head
    size_t act = qt_tmodel_bytes(m, l, max_tokens, max_seq, ckpt, 1);
    size_t ad = 2 * sizeof(float) * l->n_params;
    size_t scr = be->ops->scratch_bytes ? be->ops->scratch_bytes(be, max_tokens, max_in, max_out, m->cfg.n_head) : 0;
    size_t need = act + ad + scr;
    info("GPU memory: %.1f MiB = weights %.1f (uploaded) + activations %.1f + adapters %.1f + scratch %.1f "
         "(%.1f GiB free of %.1f)\n",
         (held + need) / 1048576.0, held / 1048576.0, act / 1048576.0, ad / 1048576.0, scr / 1048576.0,
         free_b / 1073741824.0, total_b / 1073741824.0);
    if (need > free_b / 20 * 19) {
        qt_log_error("this run needs %.1f GiB more on the GPU but %.1f GiB are free: try a smaller --batch-size, "
                     "--grad-checkpoint, a shorter --max-seq-len, --quantize q4_0, or --device cpu",
                     need / 1073741824.0, free_b / 1073741824.0);
        return QT_ERR;
    }
    return QT_OK;
}

// ---- the run ----

int qt_train_run(const qt_train_opts *o) {
    int rc = QT_ERR;
    qt_model *m = NULL;
    qt_dataset *dtrain = NULL, *dvalid = NULL, *dtest = NULL;
    char *ptrain = NULL, *pvalid = NULL, *ptest = NULL;
    qt_lora *l = NULL;
    qt_pool *pool = NULL;
    qt_backend *be = NULL;
    qt_tmodel *tm = NULL;
    qt_batcher *bt = NULL;
    batch_buf bb = { 0 };
    int *idx = NULL;
    run_logs L = { 0 };
    grad_reducer red = { 0 };

    if (o->iters <= 0 || o->batch_size <= 0 || o->grad_accum <= 0 || o->steps_per_report <= 0 || o->save_every < 0 ||
        o->steps_per_eval < 0 || !(o->adam.lr > 0)) {
        qt_log_error("invalid training settings: --iters, --batch-size, --grad-accum, --steps-per-report and "
                     "--learning-rate must be positive");
        return QT_ERR;
    }
    if (qt_dist_init() != QT_OK) return QT_ERR;
    qt_dist_set_timeout(o->dist_timeout);
    const int rank = qt_dist_rank(), n_ranks = qt_dist_size();
    g_quiet = rank != 0;
    if (n_ranks > 1) qt_log_set_sink(rank_sink, NULL);
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

    qt_lora_config lcfg = o->lora;
    if (o->targets && qt_lora_parse_targets(m->arch, o->targets, &lcfg.targets) != QT_OK) {
        rc = QT_EINVAL;
        goto done;
    }
    l = qt_lora_init(m, &lcfg, o->seed);
    if (!l || qt_lora_enable_training(l) != QT_OK) goto done;

    int max_seq = qt_dataset_max_len(dtrain);
    if (dvalid) max_seq = QT_MAX(max_seq, qt_dataset_max_len(dvalid));
    if (dtest) max_seq = QT_MAX(max_seq, qt_dataset_max_len(dtest));
    int max_tokens = max_seq * o->batch_size;
    // default threads: this process's cores, shared with the other ranks on this machine
    int nth = o->threads > 0 ? o->threads : QT_MAX(1, qt_n_cpus() / qt_dist_local_size());

    // memory plan: refuse what cannot fit
    size_t w_bytes = qt_model_weight_bytes(m), a_bytes = 4 * sizeof(float) * l->n_params;
    size_t act = qt_tmodel_bytes(m, l, max_tokens, max_seq, o->grad_checkpoint, nth);
    size_t total = w_bytes + a_bytes + act, avail = qt_total_memory();
    info("model %s: %s, %d layers, %.1f M parameters\n", m->name, m->arch_name, m->cfg.n_layer,
           qt_model_n_params(m) / 1e6);
    info("data: train %d records (%lld tokens, %lld trained), valid %d, test %d; longest %d tokens%s\n",
           qt_dataset_n(dtrain), (long long)qt_dataset_n_tokens(dtrain), (long long)qt_dataset_n_train_tokens(dtrain),
           dvalid ? qt_dataset_n(dvalid) : 0, dtest ? qt_dataset_n(dtest) : 0, max_seq,
           qt_dataset_n_truncated(dtrain) ? " (some truncated by --max-seq-len)" : "");
    if (qt_dataset_n_truncated(dtrain)) info("  %d training records truncated to %d tokens\n", qt_dataset_n_truncated(dtrain), o->data_opts.max_seq_len);
    if (qt_dataset_n_skipped(dtrain)) info("  %d bad lines skipped\n", qt_dataset_n_skipped(dtrain));
    info("lora: rank %d, alpha %g, scale %g, dropout %g, %zu trainable parameters (%.3f%% of the model)\n",
           l->cfg.rank, l->cfg.alpha, l->scale, l->cfg.dropout, l->n_params, 100.0 * l->n_params / qt_model_n_params(m));
    info("memory: %.1f MiB = weights %.1f + adapters and optimizer %.1f + activations %.1f%s (machine: %.1f GiB)\n",
           total / 1048576.0, w_bytes / 1048576.0, a_bytes / 1048576.0, act / 1048576.0,
           o->grad_checkpoint ? " (gradient checkpointing)" : "", avail / 1073741824.0);
    if (avail && total > avail / 10 * 9) {
        qt_log_error("this run needs %.1f GiB but the machine has %.1f GiB: try a smaller --batch-size, "
                     "--grad-checkpoint, a shorter --max-seq-len, or --quantize q4_0",
                     total / 1073741824.0, avail / 1073741824.0);
        goto done;
    }

    pool = qt_pool_init(nth);
    be = qt_backend_init(o->device ? o->device : "auto", pool);
    if (!be || qt_model_bind(m, be) != QT_OK) goto done;
    if (!be->host_memory && be->ops->mem_info &&
        device_plan(be, m, l, max_tokens, max_seq, o->grad_checkpoint) != QT_OK)
        goto done;
    tm = qt_tmodel_init(m, l, be, max_tokens, max_seq, o->grad_checkpoint);
    if (!tm) goto done;
    // every rank must see the same data and settings, or the slices and the
    // summed gradients mean nothing
    if (n_ranks > 1) {
        double fp[6] = { (double)l->n_params, qt_dataset_n(dtrain), (double)qt_dataset_n_tokens(dtrain),
                         dvalid ? qt_dataset_n(dvalid) : -1, (double)o->seed, o->batch_size * 1e6 + o->grad_accum };
        double fp0[6];
        memcpy(fp0, fp, sizeof(fp));
        if (qt_dist_bcast(fp0, sizeof(fp0), 0) != QT_OK) goto done;
        bool same = memcmp(fp0, fp, sizeof(fp)) == 0;
        if (!same)
            qt_log_error("%s: this rank's data or settings differ from rank 0's (train records %.0f vs %.0f, tokens "
                         "%.0f vs %.0f, trainable parameters %.0f vs %.0f): give every rank the same files and options",
                         o->data, fp[1], fp0[1], fp[2], fp0[2], fp[0], fp0[0]);
        if (!all_ok(same)) {
            if (same) qt_log_error("another rank's data or settings differ from this rank's (see its message)");
            goto done;
        }
        qt_tmodel_set_layer_hook(tm, on_layer_done, &red);
    }
    red.l = l;
    const int global_batch = o->batch_size * n_ranks;   // records per micro-batch, all ranks together
    bb.cap_tokens = max_tokens;
    bb.tokens = qt_malloc(sizeof(int32_t) * (size_t)max_tokens);
    bb.targets = qt_malloc(sizeof(int32_t) * (size_t)max_tokens);
    bb.seq_start = qt_malloc(sizeof(int) * (size_t)(o->batch_size + 1));
    idx = qt_malloc(sizeof(int) * (size_t)global_batch * (size_t)o->grad_accum);
    bt = qt_batcher_init(dtrain, global_batch, o->seed, true);

    int64_t step = 0;
    if (o->resume) {
        // rank 0 reads the checkpoint, every rank continues from its copy
        bool ok = rank != 0 || load_state(o, m, &l, &step) == QT_OK;
        if (!all_ok(ok)) goto done;
        double st = (double)step;
        size_t bytes = sizeof(float) * l->n_params;
        if (qt_dist_bcast(&st, sizeof(st), 0) != QT_OK || qt_dist_bcast(l->params, bytes, 0) != QT_OK ||
            qt_dist_bcast(l->m, bytes, 0) != QT_OK || qt_dist_bcast(l->v, bytes, 0) != QT_OK)
            goto done;
        step = (int64_t)st;
        qt_batcher_seek(bt, step * o->grad_accum);
        info("resumed from %s at step %lld\n", o->adapter_path, (long long)step);
    }
    if (n_ranks > 1)
        info("data parallel: %d ranks x %d records per batch = %d records per batch\n", n_ranks, o->batch_size,
             global_batch);
    bool folder_ok = rank != 0 || qt_lora_save_peft(l, m, o->adapter_path) == QT_OK;   // creates the folder early
    if (!all_ok(folder_ok)) goto done;
    if (rank == 0) {
        char logpath[1024];
        snprintf(logpath, sizeof(logpath), "%s/train.log", o->adapter_path);
        L.log = fopen(logpath, step ? "a" : "w");
        snprintf(logpath, sizeof(logpath), "%s/metrics.jsonl", o->adapter_path);
        L.metrics = fopen(logpath, step ? "a" : "w");
    }
    set_stop_note(o, step);

    qt_sched sched = o->sched;
    sched.total = o->iters;
    g_interrupted = 0;
    struct sigaction sa, old_sa, old_usr1;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, &old_sa);
    sigaction(SIGUSR1, &sa, &old_usr1);   // mpirun forwards SIGUSR1 to every rank: stop with a checkpoint

    double t_start = qt_time_s(), t_report = t_start, loss_acc = 0, t_comm = 0;
    int64_t tgt_acc = 0, tok_acc = 0, tok_total = 0, steps_done = 0;
    if (dvalid && o->steps_per_eval > 0 && step == 0) {
        double vl = evaluate(tm, &bb, dvalid, o->batch_size, o->val_batches, NULL);
        say(&L, "iter %5d: val loss %.4f, val ppl %.2f\n", 0, vl, exp(vl));
        if (L.metrics) fprintf(L.metrics, "{\"step\": 0, \"val_loss\": %.6f}\n", vl);
    }
    bool stop = false;
    while (step < o->iters && !stop) {
        // one optimizer step over grad_accum micro-batches of global_batch records
        int counts[256];
        QT_ASSERT(o->grad_accum <= 256);
        int64_t n_tgt = 0;
        for (int a = 0; a < o->grad_accum; a++) {
            counts[a] = qt_batcher_next(bt, idx + a * global_batch);
            n_tgt += batch_targets(dtrain, idx + a * global_batch, counts[a]);
        }
        memset(l->grads, 0, sizeof(float) * l->n_params);
        red.next = m->cfg.n_layer;
        red.rc = QT_OK;
        double loss_sum = 0, tok_step = 0;
        for (int a = 0; a < o->grad_accum && n_tgt > 0; a++) {
            int lo, hi;
            my_slice(counts[a], &lo, &hi);
            pack(&bb, dtrain, idx + a * global_batch + lo, hi - lo);
            if (bb.b.n_seq == 0) continue;
            double ls;
            int64_t c;
            uint64_t dseed = o->seed * 0x9e3779b97f4a7c15ull + (uint64_t)(step * o->grad_accum + a) +
                             ((uint64_t)rank << 40);
            red.armed = a == o->grad_accum - 1;   // the last backward of the step starts the all-reduce
            int src = qt_tmodel_step(tm, &bb.b, true, true, 1.0f / (float)n_tgt, dseed, &ls, &c);
            red.armed = false;
            if (src != QT_OK) goto done;
            loss_sum += ls;
            tok_step += bb.b.seq_start[bb.b.n_seq];
        }
        if (n_ranks > 1) {
            double t0 = qt_time_s();
            // buckets not started during backward (this rank's last slice was
            // empty, or accumulation ended early), then the scalars
            double sc[3] = { loss_sum, tok_step, g_interrupted ? 1 : 0 };
            if (reduce_from(&red, 0) != QT_OK || qt_dist_wait() != QT_OK || qt_dist_sum_f64(sc, 3) != QT_OK) {
                qt_dist_abort("the gradient all-reduce failed");
                goto done;
            }
            loss_sum = sc[0];
            tok_step = sc[1];
            if (sc[2] > 0) g_interrupted = 1;
            t_comm += qt_time_s() - t0;
        }
        stop = g_interrupted != 0;
        tok_acc += (int64_t)tok_step;
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
            char eta[32], comm[64] = "", gpu[48] = "";
            format_duration(eta, sizeof(eta), (now - t_start) / (double)steps_done * (double)(o->iters - step));
            if (n_ranks > 1) snprintf(comm, sizeof(comm), " | all-reduce wait %.0f ms/iter", 1e3 * t_comm / o->steps_per_report);
            if (!be->host_memory && be->ops->mem_info) {
                size_t gpeak = 0;
                be->ops->mem_info(be, NULL, NULL, &gpeak);
                snprintf(gpu, sizeof(gpu), " | GPU %.2f GiB", gpeak / 1073741824.0);
            }
            say(&L, "iter %5lld/%d: loss %.4f | lr %.3g | %.1f tokens/s | %.2f s/iter | ETA %s | peak mem %.2f GiB%s%s\n",
                (long long)step, o->iters, tgt_acc ? loss_acc / tgt_acc : NAN, lr, tok_acc / dt,
                dt / o->steps_per_report, eta, qt_peak_rss() / 1073741824.0, gpu, comm);
            if (L.metrics)
                fprintf(L.metrics, "{\"step\": %lld, \"train_loss\": %.6f, \"tokens_per_s\": %.2f, \"peak_rss\": %zu}\n",
                        (long long)step, tgt_acc ? loss_acc / tgt_acc : NAN, tok_acc / dt, qt_peak_rss());
            loss_acc = 0;
            tgt_acc = tok_acc = 0;
            t_comm = 0;
            t_report = now;
        }
        if (dvalid && o->steps_per_eval > 0 && (step % o->steps_per_eval == 0 || step == o->iters)) {
            double t0 = qt_time_s();
            double vl = evaluate(tm, &bb, dvalid, o->batch_size, o->val_batches, NULL);
            say(&L, "iter %5lld: val loss %.4f, val ppl %.2f (%.1f s)\n", (long long)step, vl, exp(vl), qt_time_s() - t0);
            if (L.metrics) fprintf(L.metrics, "{\"step\": %lld, \"val_loss\": %.6f}\n", (long long)step, vl);
            t_report += qt_time_s() - t0;   // keep evaluation out of the training speed
        }
        if (o->save_every > 0 && step % o->save_every == 0 && step < o->iters && !stop) {
            if (save_all(o, l, m, step) != QT_OK) goto done;
            say(&L, "iter %5lld: saved checkpoint to %s\n", (long long)step, o->adapter_path);
            set_stop_note(o, step);
        }
        if (L.metrics) fflush(L.metrics);
    }
    sigaction(SIGINT, &old_sa, NULL);
    sigaction(SIGUSR1, &old_usr1, NULL);
    if (save_all(o, l, m, step) != QT_OK) goto done;
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
    if (rc == QT_OK && rank == 0 && qt_report_write(o->adapter_path) == QT_OK) info("report: %s/report.html\n", o->adapter_path);
    qt_free(idx);
    qt_free(bb.tokens);
    qt_free(bb.targets);
    qt_free(bb.seq_start);
    qt_batcher_free(bt);
    qt_tmodel_free(tm);
    if (m) qt_model_bind(m, NULL);
    qt_backend_free(be);
    qt_pool_free(pool);
    qt_lora_free(l);
    qt_dataset_free(dtrain);
    qt_dataset_free(dvalid);
    qt_dataset_free(dtest);
    qt_free(ptrain);
    qt_free(pvalid);
    qt_free(ptest);
    qt_model_free(m);
    if (rc == QT_ERR) qt_dist_abort("training failed");   // the other ranks must not wait for this one
    if (n_ranks > 1) qt_log_set_sink(NULL, NULL);   // only ours: a caller's sink stays
    qt_dist_finalize();
    return rc;
}
