// lora-mlx.c: mlx-lm LoRA adapters (lora-io.h), read and written, following
// mlx-lm's tuner/lora.py (LoRALinear: lora_a (in, r), lora_b (r, out),
// y = W x + scale * (x @ lora_a) @ lora_b) and tuner/utils.py
// (adapter_config.json: fine_tune_type, num_layers, lora_parameters {rank,
// scale, dropout, keys}), and mlx-examples' lora/lora.py before mlx-lm
// (adapters.npz, same key names, no config file, LoRALinear's fixed scale 20).
// mlx-lm keeps HF's rotate_half q/k row order, so B rows are permuted for
// llama models loaded from GGUF, as for PEFT.
// Does not: DoRA, full fine-tunes, embedding LoRA, lora.py's first layout
// (layers.N.attention.wq, scale 2).
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "base/base.h"
#include "io/npz.h"
#include "io/safetensors.h"
#include "model/lora-io.h"

// lora.py's LoRALinear scale: an adapters.npz without adapter_config.json.
#define LORA_PY_SCALE 20.0f

// A linear's module path inside its layer ("self_attn.q_proj"): what follows
// the layer number in its HF path.
static const char *in_layer(const qt_arch_desc *a, int t) {
    const char *p = strstr(a->linears[t].hf, "%d.");
    return p ? p + 3 : a->linears[t].hf;
}

// Row r of B in HF order is model row hf_to_model(r) for an interleaved-order model.
static int hf_to_model(int r, int HS) {
    int h = r / HS, j = r % HS, half = HS / 2;
    return h * HS + (j < half ? 2 * j : 2 * (j - half) + 1);
}

static int parse_key(const qt_arch_desc *a, const char *name, int *il, int *t, int *e, int *ab) {
    return qt_lora_match_key(a, name, "", false, ".lora_a", ".lora_b", il, t, e, ab);
}

static bool ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

// One adapter tensor, from a safetensors file or an .npz member.
typedef struct {
    const char *name;
    qt_type type;
    int n_dims;
    const int64_t *shape;
    const void *data;
} view;

// Fills a new adapter from the tensors (names checked, shapes checked against
// the model). rank 0: from the tensors. NULL on error (logged).
static qt_lora *from_views(const qt_model *m, const char *file, const view *v, int n, int rank, float scale) {
    uint64_t mask = 0;
    int first = m->cfg.n_layer;
    for (int i = 0; i < n; i++) {
        int il, tg, e, ab;
        if (parse_key(m->arch, v[i].name, &il, &tg, &e, &ab) != QT_OK) {
            qt_log_error("%s: unexpected tensor '%s' (not an mlx-lm lora_a/lora_b of a %s projection)", file, v[i].name,
                         m->arch->name);
            return NULL;
        }
        if (il < 0 || il >= m->cfg.n_layer) {
            qt_log_error("%s: tensor '%s': layer %d does not exist in a %d-layer model", file, v[i].name, il, m->cfg.n_layer);
            return NULL;
        }
        if (qt_arch_linear_expert(m->arch, tg) && (e < 0 || e >= m->cfg.n_expert)) {
            qt_log_error("%s: tensor '%s': expert %d does not exist in a model with %d experts", file, v[i].name, e,
                         m->cfg.n_expert);
            return NULL;
        }
        if (rank == 0 && v[i].n_dims == 2) rank = (int)(ab ? v[i].shape[0] : v[i].shape[1]);
        mask |= 1ull << tg;
        first = QT_MIN(first, il);
    }
    if (!mask) {
        qt_log_error("%s: no LoRA tensors", file);
        return NULL;
    }
    if (rank < 1 || rank > 4096) {
        qt_log_error("%s: rank %d is not 1..4096", file, rank);
        return NULL;
    }
    qt_lora_config cfg = qt_lora_defaults();
    cfg.rank = rank;
    cfg.alpha = scale * (float)rank;   // our scale is alpha / r
    cfg.rslora = false;
    cfg.targets = mask;
    cfg.n_layers = m->cfg.n_layer - first;
    qt_lora *l = qt_lora_init(m, &cfg, 0);
    if (!l) return NULL;
    memset(l->params, 0, sizeof(float) * l->n_params);
    const int r = rank, HS = m->cfg.head_dim;
    float *tmp = NULL;
    for (int i = 0; i < n; i++) {
        int il, tg, e, ab;
        parse_key(m->arch, v[i].name, &il, &tg, &e, &ab);
        const qt_lora_pair *p = qt_lora_get_x(l, il, tg, e < 0 ? 0 : e);
        int64_t want0 = ab ? r : p->n_in, want1 = ab ? p->n_out : r;
        if (v[i].n_dims != 2 || v[i].shape[0] != want0 || v[i].shape[1] != want1) {
            qt_log_error("%s: tensor '%s' has shape [%lld, %lld], expected [%lld, %lld] for this model and rank %d", file,
                         v[i].name, (long long)v[i].shape[0], (long long)(v[i].n_dims > 1 ? v[i].shape[1] : 0),
                         (long long)want0, (long long)want1, r);
            goto fail;
        }
        if (v[i].type != QT_TYPE_F32 && v[i].type != QT_TYPE_F16 && v[i].type != QT_TYPE_BF16) {
            qt_log_error("%s: tensor '%s': dtype %s not supported", file, v[i].name, qt_type_name(v[i].type));
            goto fail;
        }
        size_t cnt = (size_t)want0 * (size_t)want1;
        tmp = qt_realloc(tmp, sizeof(float) * cnt);
        qt_type_traits_get(v[i].type)->to_float(v[i].data, tmp, (int64_t)cnt);
        for (size_t k = 0; k < cnt; k++)
            if (!isfinite(tmp[k])) {
                qt_log_error("%s: tensor '%s' holds a non-finite value", file, v[i].name);
                goto fail;
            }
        if (!ab) {   // (in, r) -> A (r, in)
            for (int k = 0; k < r; k++)
                for (int c = 0; c < p->n_in; c++) p->a[(size_t)k * p->n_in + c] = tmp[(size_t)c * r + k];
        } else {     // (r, out) -> B (out, r), rows to the model's order
            for (int o = 0; o < p->n_out; o++) {
                int row = qt_lora_hf_needs_permute(m, tg) ? hf_to_model(o, HS) : o;
                for (int k = 0; k < r; k++) p->b[(size_t)row * r + k] = tmp[(size_t)k * p->n_out + o];
            }
        }
    }
    qt_free(tmp);
    return l;
fail:
    qt_free(tmp);
    qt_lora_free(l);
    return NULL;
}

// adapter_config.json's lora_parameters: rank and scale (both checked).
static int read_mlx_config(const cJSON *j, const char *cfg_path, int *rank, float *scale) {
    const cJSON *ft = cJSON_GetObjectItemCaseSensitive(j, "fine_tune_type");
    if (ft && (!cJSON_IsString(ft) || strcmp(ft->valuestring, "lora") != 0)) {
        qt_log_error("%s: fine_tune_type must be \"lora\" (DoRA and full fine-tunes are not supported)", cfg_path);
        return QT_ERR;
    }
    const cJSON *lp = cJSON_GetObjectItemCaseSensitive(j, "lora_parameters");
    const cJSON *rk = cJSON_GetObjectItemCaseSensitive(lp, "rank");
    const cJSON *sc = cJSON_GetObjectItemCaseSensitive(lp, "scale");
    if (!cJSON_IsObject(lp) || !cJSON_IsNumber(rk) || rk->valuedouble < 1 || rk->valuedouble > 4096 ||
        rk->valuedouble != floor(rk->valuedouble) || !cJSON_IsNumber(sc) || !isfinite(sc->valuedouble) ||
        fabs(sc->valuedouble) > 1e6) {
        qt_log_error("%s: lora_parameters must hold an integer \"rank\" 1..4096 and a finite \"scale\" (|scale| <= 1e6)",
                     cfg_path);
        return QT_ERR;
    }
    *rank = (int)rk->valuedouble;
    *scale = (float)sc->valuedouble;
    return QT_OK;
}

// The file `name` in the folder of file `path` (malloc'd).
static char *beside(const char *path, const char *name) {
    const char *slash = strrchr(path, '/');
    int dl = slash ? (int)(slash - path) + 1 : 0;
    size_t n = (size_t)dl + strlen(name) + 1;
    char *p = qt_malloc(n);
    snprintf(p, n, "%.*s%s", dl, path, name);
    return p;
}

static qt_lora *load_npz(const qt_model *m, const char *path) {
    // an adapter_config.json next to the file (mlx-lm) gives the scale; lora.py wrote none
    char *cfg_path = beside(path, "adapter_config.json");
    struct stat st;
    int rank = 0;
    float scale = LORA_PY_SCALE;
    qt_lora *l = NULL;
    view *v = NULL;
    qt_npz *z = NULL;
    if (stat(cfg_path, &st) == 0) {
        char *text = qt_read_file(cfg_path, NULL);
        cJSON *j = text ? cJSON_Parse(text) : NULL;
        qt_free(text);
        // a PEFT config beside it describes another adapter: only mlx-lm's is read
        bool mlx = cJSON_GetObjectItemCaseSensitive(j, "lora_parameters") != NULL;
        int e = mlx ? read_mlx_config(j, cfg_path, &rank, &scale) : QT_OK;
        cJSON_Delete(j);
        if (e != QT_OK) goto done;
    }
    z = qt_npz_open(path);
    if (!z) goto done;
    v = qt_calloc((size_t)qt_npz_n(z) + 1, sizeof(view));
    for (int i = 0; i < qt_npz_n(z); i++) {
        const qt_npz_array *a = qt_npz_at(z, i);
        v[i] = (view){ a->name, a->type, a->n_dims, a->shape, a->data };
    }
    l = from_views(m, path, v, qt_npz_n(z), rank, scale);
done:
    qt_free(v);
    qt_npz_close(z);
    qt_free(cfg_path);
    return l;
}

qt_lora *qt_lora_load_mlx(const qt_model *m, const char *path) {
    if (ends_with(path, ".npz")) return load_npz(m, path);
    char *file = NULL, *cfg_path = NULL;
    qt_lora *l = NULL;
    qt_st_set *s = NULL;
    view *v = NULL;
    cJSON *j = qt_lora_read_config(path, "adapters.safetensors", &file, &cfg_path);
    if (!j) goto done;
    int rank;
    float scale;
    if (read_mlx_config(j, cfg_path, &rank, &scale) != QT_OK) goto done;
    s = qt_st_open(file);
    if (!s) goto done;
    int64_t nt = qt_st_n_tensors(s);
    v = qt_calloc((size_t)nt + 1, sizeof(view));
    for (int64_t i = 0; i < nt; i++) {
        const qt_st_tensor *t = qt_st_tensor_at(s, i);
        v[i] = (view){ t->name, t->type, t->n_dims, t->shape, t->data };
    }
    l = from_views(m, file, v, (int)nt, rank, scale);
done:
    qt_free(v);
    cJSON_Delete(j);
    qt_st_close(s);
    qt_free(file);
    qt_free(cfg_path);
    return l;
}

// ---- writing ----

// Every (layer, target) of l as mlx-lm tensors: lora_a (in, r) and lora_b
// (r, out) in HF row order, B times b_scale. Buffers malloc'd into *bufs.
typedef void (*add_fn)(void *w, const char *name, const int64_t *shape, const float *data);

static float **mlx_tensors(const qt_lora *l, const qt_model *m, float b_scale, void *w, add_fn add, int *n_bufs) {
    const int r = l->cfg.rank, HS = m->cfg.head_dim;
    int cap = 2 * l->n_layer * l->n_slots, n = 0;
    float **bufs = qt_calloc((size_t)cap + 1, sizeof(float *));
    char name[160];
    for (int il = l->first_layer; il < l->n_layer; il++)
        for (int k = 0; k < l->n_slots; k++) {   // experts under our PEFT-style path (mlx-lm's SwitchGLU differs)
            const qt_lora_pair *p = qt_lora_at(l, il, k);
            const int t = l->slot_lin[k];
            if (!p->a) continue;
            float *a = bufs[n++] = qt_malloc(sizeof(float) * (size_t)p->n_in * r);
            float *b = bufs[n++] = qt_malloc(sizeof(float) * (size_t)p->n_out * r);
            for (int j = 0; j < r; j++)
                for (int c = 0; c < p->n_in; c++) a[(size_t)c * r + j] = p->a[(size_t)j * p->n_in + c];
            for (int o = 0; o < p->n_out; o++) {
                int row = qt_lora_hf_needs_permute(m, t) ? hf_to_model(o, HS) : o;
                for (int j = 0; j < r; j++) b[(size_t)j * p->n_out + o] = b_scale * p->b[(size_t)row * r + j];
            }
            int64_t sa[2] = { p->n_in, r }, sb[2] = { r, p->n_out };
            char mod[128];
            snprintf(mod, sizeof(mod), m->arch->linears[t].hf, il, l->slot_expert[k]);
            snprintf(name, sizeof(name), "%s.lora_a", mod);
            add(w, name, sa, a);
            snprintf(name, sizeof(name), "%s.lora_b", mod);
            add(w, name, sb, b);
        }
    *n_bufs = n;
    return bufs;
}

static void free_bufs(float **b, int n) {
    for (int i = 0; i < n; i++) qt_free(b[i]);
    qt_free(b);
}

static void add_st(void *w, const char *name, const int64_t *shape, const float *data) {
    qt_st_writer_add(w, name, QT_TYPE_F32, 2, shape, data);
}
static void add_npz(void *w, const char *name, const int64_t *shape, const float *data) {
    qt_npz_writer_add(w, name, 2, shape, data);
}

int qt_lora_save_mlx(const qt_lora *l, const qt_model *m, const char *path) {
    int n_bufs = 0, rc;
    if (ends_with(path, ".npz")) {
        // lora.py reads no config and scales by 20: fold our scale into B
        qt_npz_writer *w = qt_npz_writer_init();
        float **bufs = mlx_tensors(l, m, l->scale / LORA_PY_SCALE, w, add_npz, &n_bufs);
        rc = qt_npz_write(w, path);
        qt_npz_writer_free(w);
        free_bufs(bufs, n_bufs);
        return rc;
    }
    qt_st_writer *w = qt_st_writer_init();
    float **bufs = mlx_tensors(l, m, 1.0f, w, add_st, &n_bufs);
    rc = qt_st_write(w, path);
    qt_st_writer_free(w);
    free_bufs(bufs, n_bufs);
    if (rc != QT_OK) return rc;
    // adapter_config.json beside it, as mlx_lm.lora writes it
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "fine_tune_type", "lora");
    cJSON_AddStringToObject(j, "model", m->path);
    cJSON_AddNumberToObject(j, "num_layers", l->n_layer - l->first_layer);
    cJSON *lp = cJSON_AddObjectToObject(j, "lora_parameters");
    cJSON_AddNumberToObject(lp, "rank", l->cfg.rank);
    cJSON_AddNumberToObject(lp, "scale", l->scale);
    cJSON_AddNumberToObject(lp, "dropout", l->cfg.dropout);
    cJSON *keys = cJSON_AddArrayToObject(lp, "keys");
    for (int t = 0; t < l->n_linears; t++)
        if (l->cfg.targets & (1ull << t)) cJSON_AddItemToArray(keys, cJSON_CreateString(in_layer(m->arch, t)));
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    char *cfg = beside(path, "adapter_config.json");
    rc = qt_write_file_atomic(cfg, text, strlen(text));
    cJSON_free(text);
    qt_free(cfg);
    return rc;
}
