// trainer.c: the training loop (see trainer.h).
// Checkpoint = optimizer.safetensors (adapter parameters, AdamW m and v, the
// step: everything a resume needs), then the adapter in the form the output
// names (PEFT adapter_model.safetensors + adapter_config.json by default, for
// users), then training_state.json (the adapter's step, seed, settings),
// each written to a temporary file and renamed, in that order.
// optimizer.safetensors is the commit point: a run killed between two renames
// resumes from it, and training_state.json always names the step of the
// adapter beside it; when they differ (a kill mid-save) the resume says so and
// rewrites the adapter. Resume restores everything and seeks the batcher, and
// the dropout masks are a function of (seed, step), so a resumed run
// continues exactly the loss curve of an uninterrupted one.
//
// A fresh run refuses an output that already holds a run (--resume continues
// it, --overwrite replaces it); temporary files a killed save left behind
// (NAME.tmp.PID of a process that no longer runs) are removed at the start.
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
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/base.h"
#include "backend/backend.h"
#include "base/pool.h"
#include "dist/dist.h"
#include "io/safetensors.h"
#include "kernels/kernels.h"
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
    o.test_batches = -1;
    return o;
}

static bool stop_requested(const qt_train_opts *o) {
    return o->stop && atomic_load_explicit(o->stop, memory_order_relaxed) != 0;
}

void qt_train_paths(const char *adapter_path, char **run_dir, char **file) {
    qt_lora_format f = qt_lora_format_of(adapter_path);
    size_t n = strlen(adapter_path) + 16;
    *run_dir = qt_malloc(n);
    *file = NULL;
    if (f == QT_LORA_FMT_PEFT) {
        snprintf(*run_dir, n, "%s", adapter_path);
        // "adapters/" and "adapters" name the same folder
        for (size_t l = strlen(*run_dir); l > 1 && (*run_dir)[l - 1] == '/'; l--) (*run_dir)[l - 1] = 0;
        return;
    }
    *file = qt_strdup(adapter_path);
    if (f == QT_LORA_FMT_MLX) {   // mlx-lm: the run's files beside adapters.safetensors
        const char *slash = strrchr(adapter_path, '/');
        if (slash) snprintf(*run_dir, n, "%.*s", (int)(slash - adapter_path), adapter_path);
        else snprintf(*run_dir, n, ".");
        if (!(*run_dir)[0]) snprintf(*run_dir, n, "/");
    } else {   // one file (adapters.npz, lora.gguf): the run's files in adapters-run/
        const char *dot = strrchr(adapter_path, '.');
        snprintf(*run_dir, n, "%.*s-run", (int)(dot - adapter_path), adapter_path);
    }
}

// Only rank 0 talks to the terminal and the log files.
static bool g_quiet;

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
    char *early;     // what was said before the log was open (the run header)
    size_t n_early;
} run_logs;

// A line for the terminal (flushed at once, so a redirected run shows its
// header while the heavy work runs) and DIR/train.log.
static void say(run_logs *L, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(run_logs *L, const char *fmt, ...) {
    if (g_quiet) return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stdout, fmt, ap);
    va_end(ap);
    fflush(stdout);
    va_start(ap, fmt);
    if (L->log) {
        vfprintf(L->log, fmt, ap);
        fflush(L->log);
    } else {
        char line[2048];
        int k = vsnprintf(line, sizeof(line), fmt, ap);
        size_t len = k < 0 ? 0 : QT_MIN((size_t)k, sizeof(line) - 1);
        L->early = qt_realloc(L->early, L->n_early + len + 1);
        memcpy(L->early + L->n_early, line, len);
        L->n_early += len;
    }
    va_end(ap);
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
                       int64_t *n_tokens, bool *stopped) {
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
        int rc = qt_tmodel_step(tm, &bb->b, false, false, 0, 0, &ls, &c);
        if (rc == QT_STOPPED && stopped) *stopped = true;
        if (rc != QT_OK) { acc[0] = NAN; break; }
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
    for (int k = 0; k < l->n_slots; k++) {
        const qt_lora_pair *p = qt_lora_at(l, il, k);
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

// ---- the output: folder, adapter file, checkpoint ----

typedef struct {
    const char *out;   // what the user gave (-o)
    char *dir;         // run folder: checkpoint, logs, report (and the PEFT adapter)
    char *file;        // the adapter file, or NULL for a PEFT folder
} run_paths;

static char *join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = qt_malloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static bool exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

// The step training_state.json records (-1: none or unreadable).
static int64_t recorded_step(const char *dir) {
    char *p = join(dir, "training_state.json");
    int64_t step = -1;
    if (exists(p)) {
        char *text = qt_read_file(p, NULL);
        cJSON *j = text ? cJSON_Parse(text) : NULL;
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(j, "step");
        if (cJSON_IsNumber(s) && s->valuedouble >= 0) step = (int64_t)s->valuedouble;
        cJSON_Delete(j);
        qt_free(text);
    }
    qt_free(p);
    return step;
}

// A fresh run must not silently replace a run's adapter and checkpoint.
static int check_fresh_output(const run_paths *P) {
    bool taken = false;
    if (!P->file) {
        DIR *d = opendir(P->dir);
        if (d) {
            struct dirent *e;
            while ((e = readdir(d)))
                if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) { taken = true; break; }
            closedir(d);
        } else if (exists(P->dir)) {
            qt_log_error("%s: exists and is not a folder: give another -o", P->dir);
            return QT_ERR;
        }
    } else {
        char *opt = join(P->dir, "optimizer.safetensors");
        taken = exists(P->file) || exists(opt);
        qt_free(opt);
    }
    if (!taken) return QT_OK;
    int64_t st = recorded_step(P->dir);
    char at[64] = "";
    if (st >= 0) snprintf(at, sizeof(at), " (a run at step %lld)", (long long)st);
    qt_log_error("%s already holds %s%s: continue it with --resume, replace it with --overwrite, or give another -o",
                 P->out, P->file ? "an adapter" : "files", at);
    return QT_ERR;
}

// Removes NAME.tmp.PID files in dir whose process no longer runs (a save
// killed between write and rename).
static void clean_stale_tmp(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *t = strstr(e->d_name, ".tmp.");
        if (!t) continue;
        char *end;
        long pid = strtol(t + 5, &end, 10);
        if (*end || pid <= 0 || end == t + 5) continue;
        if (pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
        char *p = join(dir, e->d_name);
        if (unlink(p) == 0) qt_log_info("removed %s (left by a save that was killed)", p);
        qt_free(p);
    }
    closedir(d);
}

static int mkdir_p(const char *dir) {
    char buf[4096];
    snprintf(buf, sizeof(buf), "%s", dir);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            if (mkdir(buf, 0755) != 0 && errno != EEXIST) break;
            *p = '/';
        }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST) {
        qt_log_error("%s: cannot create folder: %s", dir, strerror(errno));
        return QT_ERR;
    }
    return QT_OK;
}

static int save_adapter(const run_paths *P, const qt_lora *l, const qt_model *m) {
    return qt_lora_save(l, m, P->file ? P->file : P->dir);
}

// Writes the checkpoint: optimizer.safetensors (the commit point), the
// adapter, training_state.json (the adapter's step and the settings).
static int save_state(const qt_train_opts *o, const run_paths *P, const qt_lora *l, const qt_model *m, int64_t step,
                      double epoch) {
    char *path = join(P->dir, "optimizer.safetensors");
    qt_st_writer *w = qt_st_writer_init();
    int64_t shape[1] = { (int64_t)l->n_params }, one[1] = { 1 }, st = step;
    qt_st_writer_add(w, "adamw.m", QT_TYPE_F32, 1, shape, l->m);
    qt_st_writer_add(w, "adamw.v", QT_TYPE_F32, 1, shape, l->v);
    qt_st_writer_add(w, "train.params", QT_TYPE_F32, 1, shape, l->params);
    qt_st_writer_add(w, "train.step", QT_TYPE_I64, 1, one, &st);
    int rc = qt_st_write(w, path);
    qt_st_writer_free(w);
    qt_free(path);
    if (rc == QT_OK) rc = save_adapter(P, l, m);
    if (rc == QT_OK) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddNumberToObject(j, "step", (double)step);
        cJSON_AddNumberToObject(j, "epoch", round(epoch * 1e4) / 1e4);
        cJSON_AddNumberToObject(j, "iters", o->iters);
        cJSON_AddNumberToObject(j, "seed", (double)o->seed);
        cJSON_AddNumberToObject(j, "batch_size", o->batch_size);
        cJSON_AddNumberToObject(j, "grad_accum", o->grad_accum);
        cJSON_AddNumberToObject(j, "learning_rate", o->adam.lr);
        cJSON_AddStringToObject(j, "model", o->model);
        cJSON_AddStringToObject(j, "adapter", P->file ? P->file : P->dir);
        cJSON_AddStringToObject(j, "adapter_format", qt_lora_format_name(qt_lora_format_of(P->out)));
        cJSON_AddNumberToObject(j, "lora_rank", l->cfg.rank);
        cJSON_AddNumberToObject(j, "lora_alpha", l->cfg.alpha);
        cJSON_AddNumberToObject(j, "lora_targets", l->cfg.targets);
        cJSON_AddNumberToObject(j, "lora_first_layer", l->first_layer);
        char *text = cJSON_Print(j);
        cJSON_Delete(j);
        path = join(P->dir, "training_state.json");
        rc = qt_write_file_atomic(path, text, strlen(text));
        qt_free(path);
        cJSON_free(text);
    }
    return rc;
}

// Restores adapter, moments and step from optimizer.safetensors (the commit
// point), after checking that training_state.json's adapter settings match
// the requested ones; rewrites the adapter when a killed save left it at
// another step.
static int load_state(const qt_train_opts *o, const run_paths *P, const qt_model *m, qt_lora *l, int64_t *step) {
    char *path = join(P->dir, "optimizer.safetensors");
    char *sp = join(P->dir, "training_state.json");
    int rc = QT_ERR;
    qt_st_set *s = NULL;
    cJSON *j = NULL;
    if (!exists(path)) {
        qt_log_error("%s: no checkpoint to resume (%s does not exist): start the run without --resume", P->out, path);
        goto done;
    }
    char *text = exists(sp) ? qt_read_file(sp, NULL) : NULL;
    j = text ? cJSON_Parse(text) : NULL;
    qt_free(text);
    const char *keys[4] = { "lora_rank", "lora_alpha", "lora_targets", "lora_first_layer" };
    double want[4] = { l->cfg.rank, l->cfg.alpha, l->cfg.targets, l->first_layer };
    for (int k = 0; k < 4; k++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, keys[k]);
        if (cJSON_IsNumber(v) && fabs(v->valuedouble - want[k]) > 1e-6 * fabs(want[k])) {
            qt_log_error("%s: the checkpoint's adapter (%s %g) does not match the requested settings (%s %g): resume "
                         "with the same --lora-* / --targets / --num-layers options", sp, keys[k], v->valuedouble, keys[k],
                         want[k]);
            goto done;
        }
    }
    s = qt_st_open(path);
    if (!s) goto done;
    const size_t bytes = sizeof(float) * l->n_params;
    const char *names[3] = { "adamw.m", "adamw.v", "train.params" };
    float *dst[3] = { l->m, l->v, l->params };
    for (int i = 0; i < 3; i++) {
        const qt_st_tensor *t = qt_st_find(s, names[i]);
        if (!t || t->type != QT_TYPE_F32 || t->nbytes != bytes) {
            qt_log_error("%s: tensor '%s' is missing or does not match the adapter (%zu F32 values): resume with the "
                         "same --lora-* / --targets / --num-layers options", path, names[i], l->n_params);
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
    const cJSON *js = cJSON_GetObjectItemCaseSensitive(j, "step");
    if (!cJSON_IsNumber(js) || (int64_t)js->valuedouble != st) {
        // a save was cut short after the commit point: the adapter may be older
        qt_log_warn("%s: the last save was cut short: optimizer.safetensors is at step %lld, training_state.json %s; "
                    "resuming from step %lld and rewriting the adapter", P->out, (long long)st,
                    cJSON_IsNumber(js) ? "at another step" : "missing", (long long)st);
        if (save_adapter(P, l, m) != QT_OK) goto done;
    }
    *step = st;
    rc = QT_OK;
done:
    cJSON_Delete(j);
    qt_st_close(s);
    qt_free(path);
    qt_free(sp);
    return rc;
}

// What a rank stopped by mpirun says about the checkpoint (step 0: none yet).
static void set_stop_note(const run_paths *P, int64_t step) {
    char note[1024];
    if (step) snprintf(note, sizeof(note), "the last checkpoint (step %lld) in %s is intact: continue with --resume",
                       (long long)step, P->out);
    else snprintf(note, sizeof(note), "no checkpoint had been saved yet");
    qt_dist_set_stop_note(note);
}

// Rank 0 writes the checkpoint; every rank learns whether that worked.
static int save_all(const qt_train_opts *o, const run_paths *P, const qt_lora *l, const qt_model *m, int64_t step,
                    double epoch) {
    bool ok = qt_dist_rank() != 0 || save_state(o, P, l, m, step, epoch) == QT_OK;
    return all_ok(ok) ? QT_OK : QT_ERR;
}

// Starts from another adapter's weights (mlx_lm.lora --resume-adapter-file):
// same model, same targets, layers and rank. The optimizer starts afresh.
static int init_from_adapter(const char *path, const qt_model *m, qt_lora *l) {
    qt_lora *src = qt_lora_load(m, path);
    if (!src) return QT_ERR;
    int rc = QT_ERR;
    if (src->cfg.rank != l->cfg.rank || src->cfg.targets != l->cfg.targets || src->first_layer != l->first_layer ||
        src->n_params != l->n_params) {
        qt_log_error("%s: the adapter (rank %d, %d layers) does not match this run's (rank %d, %d layers, targets): "
                     "give the same --lora-rank / --targets / --num-layers", path, src->cfg.rank,
                     src->n_layer - src->first_layer, l->cfg.rank, l->n_layer - l->first_layer);
    } else {
        // the update is s * B A: B carries the ratio of the two scales
        const float ratio = src->scale / l->scale;
        memcpy(l->params, src->params, sizeof(float) * l->n_params);
        for (int il = l->first_layer; il < l->n_layer; il++)
            for (int k = 0; k < l->n_slots; k++) {
                const qt_lora_pair *p = qt_lora_at(l, il, k);
                if (!p->a) continue;
                for (size_t i = 0; i < (size_t)p->n_out * l->cfg.rank; i++) p->b[i] *= ratio;
            }
        rc = QT_OK;
    }
    qt_lora_free(src);
    return rc;
}

// Whether every matrix of the model is stored quantized (QLoRA already).
static bool base_quantized(const qt_model *m) {
    const qt_type_traits *tr = qt_type_traits_get(qt_model_linear(m, 0, 0)->type);
    return tr && tr->is_quantized;
}

// GPU memory plan, once the weights are on the device: what the step still
// needs (activations, the adapter's parameters and gradients, the backend's
// scratch) against the device's free memory. QT_ERR (logged, with what to
// change) when it will not fit.
static int device_plan(run_logs *L, qt_backend *be, const qt_model *m, const qt_lora *l, int max_tokens, int max_seq,
                       qt_act_mode amode) {
    size_t free_b = 0, total_b = 0, held = 0;
    be->ops->mem_info(be, &free_b, &total_b, &held);
    int64_t max_in, max_out;
    qt_linear_widths(m, &max_in, &max_out);
    max_out = QT_MAX(max_out, (int64_t)m->cfg.n_vocab);   // the output head
    size_t act = qt_tmodel_bytes(m, l, max_tokens, max_seq, amode, 1);
    size_t ad = 2 * sizeof(float) * l->n_params;
    size_t scr = be->ops->scratch_bytes ? be->ops->scratch_bytes(be, max_tokens, max_in, max_out, m->cfg.n_head) : 0;
    size_t need = act + ad + scr;
    say(L, "GPU memory: %.1f MiB = weights %.1f (uploaded) + activations %.1f + adapters %.1f + scratch %.1f "
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
    run_paths P = { .out = o->adapter_path };
    bool stopped = false, report = false, created_dir = false;
    int64_t step = 0, saved_step = -1;
    qt_data_opts dopts = o->data_opts;   // max_seq_len capped to the model's positions

    if (o->iters <= 0 || o->batch_size <= 0 || o->grad_accum <= 0 || o->grad_accum > 256 || o->steps_per_report <= 0 ||
        o->save_every < 0 || o->steps_per_eval < 0 || !(o->adam.lr > 0) || !(o->epochs >= 0)) {
        qt_log_error("invalid training settings: --iters, --batch-size, --grad-accum (at most 256), --steps-per-report "
                     "and --learning-rate must be positive");
        return QT_ERR;
    }
    if (o->resume && o->overwrite) {
        qt_log_error("--resume continues the run in %s, --overwrite replaces it: give one of them", o->adapter_path);
        return QT_ERR;
    }
    if (qt_dist_init() != QT_OK) return QT_ERR;
    qt_dist_set_timeout(o->dist_timeout);
    const int rank = qt_dist_rank(), n_ranks = qt_dist_size();
    g_quiet = rank != 0;
    if (n_ranks > 1) qt_log_set_sink(rank_sink, NULL);
    qt_train_paths(o->adapter_path, &P.dir, &P.file);
    // the output first: a mistake there should not cost loading a model
    if (rank == 0 && !o->resume && !o->overwrite && check_fresh_output(&P) != QT_OK) goto done;
    if (rank == 0 && o->resume) {
        char *opt = join(P.dir, "optimizer.safetensors");
        bool have = exists(opt);
        if (!have) qt_log_error("%s: no checkpoint to resume (%s does not exist): start the run without --resume",
                                o->adapter_path, opt);
        qt_free(opt);
        if (!have) goto done;
    }
    if (rank == 0) clean_stale_tmp(P.dir);
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
    if (o->lora.n_layers > m->cfg.n_layer) {
        qt_log_error("--num-layers %d: the model has %d layers (0 = all)", o->lora.n_layers, m->cfg.n_layer);
        goto done;
    }
    if (o->quantize && qt_model_quantize_name(m, o->quantize) != QT_OK) goto done;
    if (m->cfg.n_pos_max > 0 && dopts.max_seq_len > m->cfg.n_pos_max) {
        say(&L, "  records truncated to %d tokens: the model has %d positions\n", m->cfg.n_pos_max, m->cfg.n_pos_max);
        dopts.max_seq_len = m->cfg.n_pos_max;
    }
    say(&L, "model: %s (%s, %d layers, %.1f M parameters, %s weights)\n", o->model, m->arch_name, m->cfg.n_layer,
        qt_model_n_params(m) / 1e6, qt_type_name(qt_model_linear(m, 0, 0)->type));
    if (m->cfg.n_expert > 0)
        say(&L, "  mixture of experts: %d per layer, %d per token (every expert's weights are read in a step; "
                "activations hold %d rows per token)\n", m->cfg.n_expert, m->cfg.n_expert_used, m->cfg.n_expert_used);
    if (qt_data_find_splits(o->data, &ptrain, &pvalid, &ptest) != QT_OK) goto done;
    dtrain = qt_dataset_load(ptrain, m->tok, &dopts);
    if (!dtrain) goto done;
    if (pvalid && !(dvalid = qt_dataset_load(pvalid, m->tok, &dopts))) goto done;
    if (o->test && !ptest) {
        qt_log_error("%s: --test needs a test.jsonl", o->data);
        goto done;
    }
    if (o->test && !(dtest = qt_dataset_load(ptest, m->tok, &dopts))) goto done;

    qt_lora_config lcfg = o->lora;
    if (o->targets && qt_lora_parse_targets(m->arch, o->targets, &lcfg.targets) != QT_OK) {
        rc = QT_EINVAL;
        goto done;
    }
    l = qt_lora_init(m, &lcfg, o->seed);
    if (!l || qt_lora_enable_training(l) != QT_OK) goto done;
    if (o->init_adapter && init_from_adapter(o->init_adapter, m, l) != QT_OK) goto done;

    int max_seq = qt_dataset_max_len(dtrain);
    if (dvalid) max_seq = QT_MAX(max_seq, qt_dataset_max_len(dvalid));
    if (dtest) max_seq = QT_MAX(max_seq, qt_dataset_max_len(dtest));
    int max_tokens = max_seq * o->batch_size;
    // default threads: this process's cores, shared with the other ranks on this machine
    int nth = o->threads > 0 ? o->threads : QT_MAX(1, qt_n_cpus() / qt_dist_local_size());
    const int global_batch = o->batch_size * n_ranks;   // records per micro-batch, all ranks together
    bt = qt_batcher_init(dtrain, global_batch, o->seed, true);
    const int per_epoch = qt_batcher_n_per_epoch(bt);   // micro-batches per pass over the data
    qt_train_opts run = *o;                              // iters fixed by --epochs
    if (o->epochs > 0) {
        double it = ceil(o->epochs * per_epoch / o->grad_accum);
        if (it > 1e9) {
            qt_log_error("--epochs %g: %.0f steps are too many", o->epochs, it);
            goto done;
        }
        run.iters = (int)QT_MAX(1.0, it);
    }

    // memory plan: keep every activation when that fits, else recompute the
    // cheap ones (unless --grad-checkpoint asked for the least); refuse what cannot fit
    size_t w_bytes = qt_model_weight_bytes(m), a_bytes = 4 * sizeof(float) * l->n_params;
    size_t avail = qt_total_memory();
    qt_act_mode amode = o->grad_checkpoint ? QT_ACT_CHECKPOINT : QT_ACT_KEEP;
    size_t act = qt_tmodel_bytes(m, l, max_tokens, max_seq, amode, nth);
    if (amode == QT_ACT_KEEP && avail && w_bytes + a_bytes + act > avail / 10 * 9) {
        amode = QT_ACT_RECOMPUTE;
        act = qt_tmodel_bytes(m, l, max_tokens, max_seq, amode, nth);
    }
    size_t total = w_bytes + a_bytes + act;
    say(&L, "data: %s: train %d records (%lld tokens, %lld trained), valid %d, test %d; longest %d tokens%s\n", o->data,
        qt_dataset_n(dtrain), (long long)qt_dataset_n_tokens(dtrain), (long long)qt_dataset_n_train_tokens(dtrain),
        dvalid ? qt_dataset_n(dvalid) : 0, dtest ? qt_dataset_n(dtest) : 0, max_seq,
        qt_dataset_n_truncated(dtrain) ? " (some truncated by --max-seq-len)" : "");
    if (qt_dataset_n_truncated(dtrain))
        say(&L, "  %d training records truncated to %d tokens\n", qt_dataset_n_truncated(dtrain), dopts.max_seq_len);
    if (qt_dataset_n_skipped(dtrain)) say(&L, "  %d bad lines skipped\n", qt_dataset_n_skipped(dtrain));
    char accum[64] = "";
    if (o->grad_accum > 1) snprintf(accum, sizeof(accum), " (%d batches of %d)", o->grad_accum, global_batch);
    say(&L, "steps: %d of %d records%s = %.2f epochs (%d steps per epoch)\n", run.iters, global_batch * o->grad_accum,
        accum, (double)run.iters * o->grad_accum / per_epoch, (per_epoch + o->grad_accum - 1) / o->grad_accum);
    say(&L, "lora: rank %d, alpha %g, scale %g, dropout %g, layers %d-%d, %zu trainable parameters (%.3f%% of the model)\n",
        l->cfg.rank, l->cfg.alpha, l->scale, l->cfg.dropout, l->first_layer, l->n_layer - 1, l->n_params,
        100.0 * l->n_params / qt_model_n_params(m));
    say(&L, "memory: %.1f MiB = weights %.1f + adapters and optimizer %.1f + activations %.1f%s (machine: %.1f GiB)\n",
        total / 1048576.0, w_bytes / 1048576.0, a_bytes / 1048576.0, act / 1048576.0,
        amode == QT_ACT_CHECKPOINT ? " (gradient checkpointing)"
        : amode == QT_ACT_RECOMPUTE ? " (cheap activations recomputed in backward, to fit)" : "",
        avail / 1073741824.0);
    say(&L, "output: %s (%s)\n", o->adapter_path, qt_lora_format_name(qt_lora_format_of(o->adapter_path)));
    if (P.file) say(&L, "  checkpoint, logs and report in %s/\n", P.dir);
    if (avail && total > avail / 10 * 9) {
        // hints that apply to this run
        char hint[512] = "";
        size_t hl = 0;
#define HINT(...) hl += (size_t)snprintf(hint + hl, hl < sizeof(hint) ? sizeof(hint) - hl : 0, __VA_ARGS__)
        if (o->batch_size > 1) HINT("%sa smaller --batch-size (with --grad-accum to keep the batch)", hl ? ", " : "");
        if (!o->grad_checkpoint) HINT("%s--grad-checkpoint", hl ? ", " : "");
        if (max_seq > 256) HINT("%sa shorter --max-seq-len (longest record: %d tokens)", hl ? ", " : "", max_seq);
        if (!base_quantized(m) && !o->quantize) HINT("%s--quantize q4_0 (QLoRA)", hl ? ", " : "");
        if (!hl) HINT("a smaller model or a machine with more memory");
#undef HINT
        qt_log_error("this run needs %.1f GiB but the machine has %.1f GiB: try %s", total / 1073741824.0,
                     avail / 1073741824.0, hint);
        goto done;
    }

    pool = qt_pool_init(nth);
    be = qt_backend_init(o->device ? o->device : "auto", pool);
    if (!be || qt_model_bind(m, be) != QT_OK) goto done;
    if (!be->host_memory && be->ops->mem_info && device_plan(&L, be, m, l, max_tokens, max_seq, amode) != QT_OK) goto done;
    tm = qt_tmodel_init(m, l, be, max_tokens, max_seq, amode);
    if (!tm) goto done;
    {   // --compute: bf16 products (fp32 sums) where the CPU has a bf16 gemm, unless fp32 is asked for
        bool bf16_hw = qt_kernels()->bf16.gemm_acc != NULL;
        bool bf16 = o->compute ? !strcmp(o->compute, "bf16") : bf16_hw;
        qt_tmodel_set_prec(tm, bf16 ? QT_PREC_BF16 : QT_PREC_F32);
        say(&L, "compute: %s products, fp32 sums (kernels %s%s)\n", bf16 && bf16_hw ? "bf16" : "fp32", qt_kernels()->isa,
             bf16 && !bf16_hw ? "; no bf16 gemm on this CPU: fp32" : "");
    }
    // in-step stops only with one process: ranks must not leave a collective half done
    if (n_ranks == 1) qt_tmodel_set_stop(tm, o->stop);
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
    bb.cap_tokens = max_tokens;
    bb.tokens = qt_malloc(sizeof(int32_t) * (size_t)max_tokens);
    bb.targets = qt_malloc(sizeof(int32_t) * (size_t)max_tokens);
    bb.seq_start = qt_malloc(sizeof(int) * (size_t)(o->batch_size + 1));
    idx = qt_malloc(sizeof(int) * (size_t)global_batch * (size_t)o->grad_accum);

    if (o->resume) {
        // rank 0 reads the checkpoint, every rank continues from its copy
        bool ok = rank != 0 || load_state(o, &P, m, l, &step) == QT_OK;
        if (!all_ok(ok)) goto done;
        double st = (double)step;
        size_t bytes = sizeof(float) * l->n_params;
        if (qt_dist_bcast(&st, sizeof(st), 0) != QT_OK || qt_dist_bcast(l->params, bytes, 0) != QT_OK ||
            qt_dist_bcast(l->m, bytes, 0) != QT_OK || qt_dist_bcast(l->v, bytes, 0) != QT_OK)
            goto done;
        step = (int64_t)st;
        qt_batcher_seek(bt, step * o->grad_accum);
        say(&L, "resumed from %s at step %lld\n", o->adapter_path, (long long)step);
    }
    if (n_ranks > 1)
        say(&L, "data parallel: %d ranks x %d records per batch = %d records per batch\n", n_ranks, o->batch_size,
            global_batch);
    created_dir = rank == 0 && !exists(P.dir);
    bool folder_ok = rank != 0 || mkdir_p(P.dir) == QT_OK;
    if (!all_ok(folder_ok)) goto done;
    if (rank == 0) {
        char *lp = join(P.dir, "train.log");
        L.log = fopen(lp, step ? "a" : "w");
        qt_free(lp);
        if (L.log && L.n_early) fwrite(L.early, 1, L.n_early, L.log);
        if (L.log) fflush(L.log);
        lp = join(P.dir, "metrics.jsonl");
        L.metrics = fopen(lp, step ? "a" : "w");
        qt_free(lp);
    }
    set_stop_note(&P, step);

    qt_sched sched = o->sched;
    sched.total = run.iters;
    double t_start = qt_time_s(), t_report = t_start, loss_acc = 0, t_comm = 0;
    int64_t tgt_acc = 0, tok_acc = 0, steps_done = 0;
    if (o->resume) saved_step = step;
    report = true;
    if (dvalid && o->steps_per_eval > 0 && step == 0) {
        double vl = evaluate(tm, &bb, dvalid, o->batch_size, o->val_batches, NULL, &stopped);
        if (!stopped) {
            say(&L, "iter %5d: val loss %.4f, val ppl %.2f\n", 0, vl, exp(vl));
            if (L.metrics) fprintf(L.metrics, "{\"step\": 0, \"val_loss\": %.6f}\n", vl);
        }
    }
    while (step < run.iters && !stopped) {
        // one optimizer step over grad_accum micro-batches of global_batch records
        int counts[256];
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
            if (src == QT_STOPPED) { stopped = true; break; }
            if (src != QT_OK) goto done;
            loss_sum += ls;
            tok_step += bb.b.seq_start[bb.b.n_seq];
        }
        if (stopped) break;   // this step is abandoned: the parameters are those of the last finished one
        if (n_ranks > 1) {
            double t0 = qt_time_s();
            // buckets not started during backward (this rank's last slice was
            // empty, or accumulation ended early), then the scalars
            double sc[3] = { loss_sum, tok_step, stop_requested(o) ? 1 : 0 };
            if (reduce_from(&red, 0) != QT_OK || qt_dist_wait() != QT_OK || qt_dist_sum_f64(sc, 3) != QT_OK) {
                qt_dist_abort("the gradient all-reduce failed");
                goto done;
            }
            loss_sum = sc[0];
            tok_step = sc[1];
            if (sc[2] > 0) stopped = true;   // any rank asked: all stop after this step
            t_comm += qt_time_s() - t0;
        }
        tok_acc += (int64_t)tok_step;
        double gnorm = qt_clip_grad_norm(l->grads, l->n_params, o->grad_clip);
        float lr = qt_sched_lr(&sched, o->adam.lr, step);
        qt_adamw_step(l->params, l->grads, l->m, l->v, l->n_params, &o->adam, lr, step + 1);
        step++;
        steps_done++;
        loss_acc += loss_sum;
        tgt_acc += n_tgt;
        double epoch = (double)step * o->grad_accum / per_epoch;
        if (L.metrics)
            fprintf(L.metrics, "{\"step\": %lld, \"epoch\": %.4f, \"loss\": %.6f, \"lr\": %.4g, \"grad_norm\": %.4g}\n",
                    (long long)step, epoch, n_tgt ? loss_sum / n_tgt : NAN, lr, gnorm);
        if (step % o->steps_per_report == 0 || step == run.iters) {
            double now = qt_time_s(), dt = now - t_report;
            char eta[32], comm[64] = "", gpu[48] = "";
            format_duration(eta, sizeof(eta), (now - t_start) / (double)steps_done * (double)(run.iters - step));
            if (n_ranks > 1) snprintf(comm, sizeof(comm), " | all-reduce wait %.0f ms/iter", 1e3 * t_comm / o->steps_per_report);
            if (!be->host_memory && be->ops->mem_info) {
                size_t gpeak = 0;
                be->ops->mem_info(be, NULL, NULL, &gpeak);
                snprintf(gpu, sizeof(gpu), " | GPU %.2f GiB", gpeak / 1073741824.0);
            }
            say(&L, "iter %5lld/%d: loss %.4f | epoch %.2f | lr %.3g | %.1f tokens/s | %.2f s/iter | ETA %s | peak mem "
                "%.2f GiB%s%s\n", (long long)step, run.iters, tgt_acc ? loss_acc / tgt_acc : NAN, epoch, lr, tok_acc / dt,
                dt / o->steps_per_report, eta, qt_peak_rss() / 1073741824.0, gpu, comm);
            if (L.metrics)
                fprintf(L.metrics, "{\"step\": %lld, \"train_loss\": %.6f, \"tokens_per_s\": %.2f, \"peak_rss\": %zu}\n",
                        (long long)step, tgt_acc ? loss_acc / tgt_acc : NAN, tok_acc / dt, qt_peak_rss());
            loss_acc = 0;
            tgt_acc = tok_acc = 0;
            t_comm = 0;
            t_report = now;
        }
        if (!stopped && dvalid && o->steps_per_eval > 0 && (step % o->steps_per_eval == 0 || step == run.iters)) {
            double t0 = qt_time_s();
            double vl = evaluate(tm, &bb, dvalid, o->batch_size, o->val_batches, NULL, &stopped);
            if (!stopped) {
                say(&L, "iter %5lld: val loss %.4f, val ppl %.2f (%.1f s)\n", (long long)step, vl, exp(vl),
                    qt_time_s() - t0);
                if (L.metrics) fprintf(L.metrics, "{\"step\": %lld, \"val_loss\": %.6f}\n", (long long)step, vl);
            }
            t_report += qt_time_s() - t0;   // keep evaluation out of the training speed
        }
        if (!stopped && o->save_every > 0 && step % o->save_every == 0 && step < run.iters) {
            if (save_all(o, &P, l, m, step, epoch) != QT_OK) goto done;
            saved_step = step;
            say(&L, "iter %5lld: saved checkpoint to %s\n", (long long)step, o->adapter_path);
            set_stop_note(&P, step);
        }
        if (L.metrics) fflush(L.metrics);
    }
    if (stopped) {
        // the last finished step, unless it is saved already
        if (step > 0 && step != saved_step) {
            if (save_all(o, &P, l, m, step, (double)step * o->grad_accum / per_epoch) != QT_OK) goto done;
            saved_step = step;
        }
        if (step > 0) {
            say(&L, "interrupted at step %lld/%d: checkpoint of step %lld saved to %s\n", (long long)step, run.iters,
                (long long)step, o->adapter_path);
            say(&L, "continue with: %s\n", o->resume_hint ? o->resume_hint : "the same command and --resume");
        } else {
            say(&L, "interrupted before the first step finished: nothing to save\n");
            report = false;
        }
        rc = QT_STOPPED;
        goto done;
    }
    if (save_all(o, &P, l, m, step, (double)step * o->grad_accum / per_epoch) != QT_OK) goto done;
    saved_step = step;
    say(&L, "saved adapter to %s (%s)\n", P.file ? P.file : P.dir, qt_lora_format_name(qt_lora_format_of(P.out)));
    if (dtest) {
        int64_t n;
        double tl = evaluate(tm, &bb, dtest, o->batch_size, o->test_batches, &n, &stopped);
        if (stopped) {
            say(&L, "interrupted during the test evaluation (the adapter is saved)\n");
            rc = QT_STOPPED;
            goto done;
        }
        say(&L, "test loss %.4f, test ppl %.2f (%lld tokens)\n", tl, exp(tl), (long long)n);
        if (L.metrics) fprintf(L.metrics, "{\"step\": %lld, \"test_loss\": %.6f}\n", (long long)step, tl);
    }
    rc = QT_OK;
done:
    if (L.log) fclose(L.log);
    if (L.metrics) fclose(L.metrics);
    qt_free(L.early);
    if (rank == 0 && saved_step < 0 && L.log) {
        // nothing was saved: leave no half-made run that a fresh run would refuse
        static const char *const ours[] = { "train.log", "metrics.jsonl" };
        for (int k = 0; k < 2; k++) {
            char *p = join(P.dir, ours[k]);
            unlink(p);
            qt_free(p);
        }
        if (created_dir) rmdir(P.dir);
        report = false;
    }
    if (rc != QT_ERR && report && rank == 0 && qt_report_write(P.dir) == QT_OK && !g_quiet)
        printf("report: %s/report.html\n", P.dir);
    qt_free(P.dir);
    qt_free(P.file);
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
