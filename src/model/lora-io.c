// lora-io.c: PEFT adapter files (see lora-io.h). Key names and config fields
// follow peft/utils/save_and_load.py and peft/tuners/lora/config.py.
// qt_lora_load picks PEFT, mlx-lm (lora-mlx.c) or GGUF (lora-gguf.c) by
// content; qt_lora_save writes the form an output path names.
#include "model/lora-io.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "base/base.h"
#include "io/safetensors.h"

// Row r of B (HF order) comes from row rope_src_row(r) of the model's order.
static int rope_src_row(int r, int HS) {
    int h = r / HS, j = r % HS, half = HS / 2;
    return h * HS + (j < half ? 2 * j : 2 * (j - half) + 1);
}

bool qt_lora_hf_needs_permute(const qt_model *m, int t) {
    return m->cfg.rope_type != QT_ROPE_NEOX && m->arch->linears[t].rope != QT_LIN_PLAIN;
}

// Matches name against pattern pat whose %d (at most two) take decimal
// numbers; returns the rest of name after the pattern, or NULL.
static const char *match_pattern(const char *name, const char *pat, int *vals, int *n_vals) {
    *n_vals = 0;
    while (*pat) {
        if (pat[0] == '%' && pat[1] == 'd') {
            int v = 0, digits = 0;
            while (*name >= '0' && *name <= '9' && digits < 6) v = v * 10 + (*name++ - '0'), digits++;
            if (!digits || (*name >= '0' && *name <= '9') || *n_vals == 2) return NULL;
            vals[(*n_vals)++] = v;
            pat += 2;
        } else if (*name++ != *pat++) {
            return NULL;
        }
    }
    return name;
}

int qt_lora_match_key(const qt_arch_desc *a, const char *name, const char *prefix, bool gguf, const char *sfx_a,
                      const char *sfx_b, int *il, int *t, int *e, int *ab) {
    size_t np = strlen(prefix);
    if (strncmp(name, prefix, np) != 0) return QT_ERR;
    name += np;
    for (int k = 0; k < a->n_linears; k++) {
        char pat[160];
        if (gguf) snprintf(pat, sizeof(pat), "blk.%%d.%s", a->linears[k].gguf);
        else snprintf(pat, sizeof(pat), "%s", a->linears[k].hf);
        int vals[2], n;
        const char *q = match_pattern(name, pat, vals, &n);
        if (!q || n < 1) continue;
        int which = !strcmp(q, sfx_a) ? 0 : !strcmp(q, sfx_b) ? 1 : -1;
        if (which < 0) continue;
        *il = vals[0];
        *t = k;
        *e = n > 1 ? vals[1] : -1;
        *ab = which;
        return QT_OK;
    }
    return QT_ERR;
}

static int mkdir_p(const char *dir) {
    char buf[1024];
    snprintf(buf, sizeof(buf), "%s", dir);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            if (mkdir(buf, 0755) != 0 && errno != EEXIST) return QT_ERR;
            *p = '/';
        }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST) {
        qt_log_error("%s: cannot create folder: %s", dir, strerror(errno));
        return QT_ERR;
    }
    return QT_OK;
}

int qt_lora_save_peft(const qt_lora *l, const qt_model *m, const char *dir) {
    if (mkdir_p(dir) != QT_OK) return QT_ERR;
    const int r = l->cfg.rank, HS = m->cfg.head_dim;
    qt_st_writer *w = qt_st_writer_init();
    qt_st_writer_meta(w, "format", "pt");
    float *perm = NULL;
    size_t n_perm = 0;
    for (int il = l->first_layer; il < l->n_layer; il++)
        for (int k = 0; k < l->n_slots; k++)
            if (qt_lora_at(l, il, k)->a && qt_lora_hf_needs_permute(m, l->slot_lin[k]))
                n_perm += (size_t)qt_lora_at(l, il, k)->n_out * r;
    perm = qt_malloc(sizeof(float) * (n_perm + 1));
    size_t used = 0;
    char names[2][160];
    for (int il = l->first_layer; il < l->n_layer; il++)
        for (int k = 0; k < l->n_slots; k++) {
            const qt_lora_pair *p = qt_lora_at(l, il, k);
            const int t = l->slot_lin[k];
            if (!p->a) continue;
            const float *b = p->b;
            if (qt_lora_hf_needs_permute(m, t)) {
                float *dst = perm + used;
                for (int row = 0; row < p->n_out; row++)
                    memcpy(dst + (size_t)row * r, p->b + (size_t)rope_src_row(row, HS) * r, sizeof(float) * r);
                b = dst;
                used += (size_t)p->n_out * r;
            }
            char mod[128];
            snprintf(mod, sizeof(mod), m->arch->linears[t].hf, il, l->slot_expert[k]);   // expert linears: 2nd %d
            for (int ab = 0; ab < 2; ab++) {
                snprintf(names[ab], sizeof(names[ab]), "base_model.model.%s.lora_%c.weight", mod, "AB"[ab]);
                int64_t shape[2] = { ab ? p->n_out : r, ab ? r : p->n_in };
                qt_st_writer_add(w, names[ab], QT_TYPE_F32, 2, shape, ab ? b : p->a);
            }
        }
    size_t n = strlen(dir) + 40;
    char *path = qt_malloc(n);
    snprintf(path, n, "%s/adapter_model.safetensors", dir);
    int rc = qt_st_write(w, path);
    qt_st_writer_free(w);
    qt_free(perm);
    if (rc == QT_OK) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "peft_type", "LORA");
        cJSON_AddStringToObject(j, "task_type", "CAUSAL_LM");
        // what the user gave (a path or a hub id), which from_pretrained can resolve
        cJSON_AddStringToObject(j, "base_model_name_or_path", m->path ? m->path : "");
        cJSON_AddNumberToObject(j, "r", r);
        cJSON_AddNumberToObject(j, "lora_alpha", l->cfg.alpha);
        cJSON_AddNumberToObject(j, "lora_dropout", l->cfg.dropout);
        cJSON_AddBoolToObject(j, "use_rslora", l->cfg.rslora);
        cJSON_AddStringToObject(j, "bias", "none");
        // PEFT sets fan_in_fan_out for Conv1D bases (GPT-2), whose weight is stored [in, out];
        // lora_A and lora_B keep their usual shapes either way
        bool conv1d = false;
        for (int t = 0; t < l->n_linears; t++)
            if (l->cfg.targets >> t & 1) conv1d = conv1d || (m->arch->layer[m->arch->linears[t].weight].flags & QT_TF_HF_T);
        cJSON_AddBoolToObject(j, "fan_in_fan_out", conv1d);
        cJSON_AddBoolToObject(j, "inference_mode", true);
        cJSON *tm = cJSON_AddArrayToObject(j, "target_modules");
        char mod[128];
        for (int t = 0; t < l->n_linears; t++)
            if (l->cfg.targets & (1ull << t))
                cJSON_AddItemToArray(tm, cJSON_CreateString(qt_arch_linear_target(m->arch, t, mod, sizeof(mod))));
        if (l->first_layer > 0) {
            cJSON *lt = cJSON_AddArrayToObject(j, "layers_to_transform");
            for (int il = l->first_layer; il < l->n_layer; il++) cJSON_AddItemToArray(lt, cJSON_CreateNumber(il));
        }
        char *text = cJSON_Print(j);
        cJSON_Delete(j);
        snprintf(path, n, "%s/adapter_config.json", dir);
        rc = qt_write_file_atomic(path, text, strlen(text));
        cJSON_free(text);
    }
    qt_free(path);
    return rc;
}

static bool ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

qt_lora_format qt_lora_format_of(const char *path) {
    if (ends_with(path, ".gguf")) return QT_LORA_FMT_GGUF;
    if (ends_with(path, ".npz")) return QT_LORA_FMT_NPZ;
    if (ends_with(path, ".safetensors")) return QT_LORA_FMT_MLX;
    return QT_LORA_FMT_PEFT;
}

const char *qt_lora_format_name(qt_lora_format f) {
    switch (f) {
    case QT_LORA_FMT_GGUF: return "llama.cpp GGUF LoRA";
    case QT_LORA_FMT_NPZ: return "mlx lora.py adapters.npz";
    case QT_LORA_FMT_MLX: return "mlx-lm adapters.safetensors";
    default: return "Hugging Face PEFT folder";
    }
}

int qt_lora_save(const qt_lora *l, const qt_model *m, const char *path) {
    qt_lora_format f = qt_lora_format_of(path);
    if (f == QT_LORA_FMT_PEFT) return qt_lora_save_peft(l, m, path);
    // a file: its folder must exist
    char *dir = qt_strdup(path);
    char *slash = strrchr(dir, '/');
    int rc = QT_OK;
    if (slash && slash != dir) {
        *slash = 0;
        rc = mkdir_p(dir);
    }
    qt_free(dir);
    if (rc != QT_OK) return rc;
    if (f == QT_LORA_FMT_GGUF) return qt_lora_save_gguf(l, m, path);
    return qt_lora_save_mlx(l, m, path);
}

static int parse_key(const qt_arch_desc *a, const char *name, int *il, int *t, int *e, int *ab) {
    return qt_lora_match_key(a, name, "base_model.model.", false, ".lora_A.weight", ".lora_B.weight", il, t, e, ab);
}

cJSON *qt_lora_read_config(const char *path, const char *default_file, char **file, char **cfg_path) {
    struct stat st;
    bool is_dir = stat(path, &st) == 0 && S_ISDIR(st.st_mode);
    size_t n = strlen(path) + strlen(default_file) + 32;
    char *dir = qt_malloc(n);
    *file = qt_malloc(n);
    *cfg_path = qt_malloc(n);
    snprintf(dir, n, "%s", path);
    if (!is_dir) {
        char *slash = strrchr(dir, '/');
        if (slash) *slash = 0; else snprintf(dir, n, ".");
    }
    if (is_dir) snprintf(*file, n, "%s/%s", dir, default_file);
    else snprintf(*file, n, "%s", path);
    snprintf(*cfg_path, n, "%s/adapter_config.json", dir);
    qt_free(dir);
    char *text = qt_read_file(*cfg_path, NULL);
    if (!text) return NULL;
    cJSON *j = cJSON_Parse(text);
    qt_free(text);
    if (!cJSON_IsObject(j)) {
        qt_log_error("%s: not valid JSON", *cfg_path);
        cJSON_Delete(j);
        return NULL;
    }
    return j;
}

int qt_lora_scan_keys(const qt_model *m, const qt_st_set *s, const char *file, qt_lora_key_parser parse,
                      uint64_t *mask, int *first) {
    *mask = 0;
    *first = m->cfg.n_layer;
    for (int64_t i = 0; i < qt_st_n_tensors(s); i++) {
        const qt_st_tensor *t = qt_st_tensor_at(s, i);
        int il, tg, e, ab;
        if (parse(m->arch, t->name, &il, &tg, &e, &ab) != QT_OK) {
            qt_log_error("%s: unexpected tensor '%s' (not a LoRA A/B of a %s projection)", file, t->name, m->arch->name);
            return QT_ERR;
        }
        if (il < 0 || il >= m->cfg.n_layer) {
            qt_log_error("%s: tensor '%s': layer %d does not exist in a %d-layer model", file, t->name, il, m->cfg.n_layer);
            return QT_ERR;
        }
        if (qt_arch_linear_expert(m->arch, tg) && (e < 0 || e >= m->cfg.n_expert)) {
            qt_log_error("%s: tensor '%s': expert %d does not exist in a model with %d experts", file, t->name, e,
                         m->cfg.n_expert);
            return QT_ERR;
        }
        *mask |= 1ull << tg;
        *first = QT_MIN(*first, il);
    }
    if (!*mask) {
        qt_log_error("%s: no LoRA tensors", file);
        return QT_ERR;
    }
    return QT_OK;
}

qt_lora *qt_lora_load_peft(const qt_model *m, const char *path) {
    char *file = NULL, *cfg_path = NULL;
    qt_lora *l = NULL;
    qt_st_set *s = NULL;
    cJSON *j = qt_lora_read_config(path, "adapter_model.safetensors", &file, &cfg_path);
    if (!j) goto done;
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(j, "r"), *alpha = cJSON_GetObjectItemCaseSensitive(j, "lora_alpha");
    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(j, "peft_type");
    if (pt && (!cJSON_IsString(pt) || strcmp(pt->valuestring, "LORA") != 0)) {
        qt_log_error("%s: peft_type must be \"LORA\"", cfg_path);
        goto done;
    }
    if (!cJSON_IsNumber(r) || r->valuedouble < 1 || r->valuedouble > 4096 || r->valuedouble != floor(r->valuedouble)) {
        qt_log_error("%s: field \"r\" must be an integer rank 1..4096", cfg_path);
        goto done;
    }
    if (alpha && (!cJSON_IsNumber(alpha) || !(alpha->valuedouble > 0) || alpha->valuedouble > 1e6)) {
        qt_log_error("%s: field \"lora_alpha\" must be a number in (0, 1e6]", cfg_path);
        goto done;
    }
    qt_lora_config cfg = qt_lora_defaults();
    cfg.rank = (int)r->valuedouble;
    cfg.alpha = cJSON_IsNumber(alpha) ? (float)alpha->valuedouble : (float)cfg.rank;
    cfg.rslora = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "use_rslora"));
    s = qt_st_open(file);
    if (!s) goto done;
    uint64_t mask = 0;
    int first = 0;
    if (qt_lora_scan_keys(m, s, file, parse_key, &mask, &first) != QT_OK) goto done;
    cfg.targets = mask;
    cfg.n_layers = m->cfg.n_layer - first;
    l = qt_lora_init(m, &cfg, 0);
    if (!l) goto done;
    memset(l->params, 0, sizeof(float) * l->n_params);
    const int HS = m->cfg.head_dim;
    for (int64_t i = 0; i < qt_st_n_tensors(s); i++) {
        const qt_st_tensor *t = qt_st_tensor_at(s, i);
        int il, tg, e, ab;
        parse_key(m->arch, t->name, &il, &tg, &e, &ab);
        const qt_lora_pair *p = qt_lora_get_x(l, il, tg, e < 0 ? 0 : e);
        int64_t want0 = ab ? p->n_out : cfg.rank, want1 = ab ? cfg.rank : p->n_in;
        if (t->n_dims != 2 || t->shape[0] != want0 || t->shape[1] != want1) {
            qt_log_error("%s: tensor '%s' has shape [%lld, %lld], expected [%lld, %lld] for this model and rank %d", file,
                         t->name, (long long)t->shape[0], (long long)(t->n_dims > 1 ? t->shape[1] : 0),
                         (long long)want0, (long long)want1, cfg.rank);
            qt_lora_free(l);
            l = NULL;
            goto done;
        }
        if (t->type != QT_TYPE_F32 && t->type != QT_TYPE_F16 && t->type != QT_TYPE_BF16) {
            qt_log_error("%s: tensor '%s': dtype %s not supported", file, t->name, qt_type_name(t->type));
            qt_lora_free(l);
            l = NULL;
            goto done;
        }
        float *dst = ab ? p->b : p->a;
        size_t cnt = (size_t)want0 * (size_t)want1;
        float *tmp = qt_malloc(sizeof(float) * cnt);
        qt_type_traits_get(t->type)->to_float(t->data, tmp, (int64_t)cnt);
        if (ab && qt_lora_hf_needs_permute(m, tg)) {
            for (int row = 0; row < p->n_out; row++)
                memcpy(dst + (size_t)rope_src_row(row, HS) * cfg.rank, tmp + (size_t)row * cfg.rank,
                       sizeof(float) * cfg.rank);
        } else {
            memcpy(dst, tmp, sizeof(float) * cnt);
        }
        qt_free(tmp);
    }
done:
    cJSON_Delete(j);
    qt_st_close(s);
    qt_free(file);
    qt_free(cfg_path);
    return l;
}

static bool file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static bool has_gguf_magic(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    char magic[4] = { 0 };
    bool ok = fread(magic, 1, 4, f) == 4 && !memcmp(magic, "GGUF", 4);
    fclose(f);
    return ok;
}

qt_lora *qt_lora_load(const qt_model *m, const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) {
        qt_log_error("%s: cannot open adapter: %s", path, strerror(errno));
        return NULL;
    }
    if (!S_ISDIR(st.st_mode)) {
        if (has_gguf_magic(path)) return qt_lora_load_gguf(m, path);
        if (ends_with(path, ".npz")) return qt_lora_load_mlx(m, path);
        const char *base = strrchr(path, '/');
        base = base ? base + 1 : path;
        if (!strcmp(base, "adapters.safetensors")) return qt_lora_load_mlx(m, path);
        return qt_lora_load_peft(m, path);
    }
    size_t n = strlen(path) + 40;
    char *f = qt_malloc(n);
    qt_lora *l = NULL;
    snprintf(f, n, "%s/adapter_model.safetensors", path);
    if (file_exists(f)) {
        l = qt_lora_load_peft(m, path);
    } else {
        snprintf(f, n, "%s/adapters.safetensors", path);
        if (file_exists(f)) {
            l = qt_lora_load_mlx(m, path);
        } else {
            snprintf(f, n, "%s/adapters.npz", path);
            if (file_exists(f)) l = qt_lora_load_mlx(m, f);
            else qt_log_error("%s: no adapter_model.safetensors (PEFT), adapters.safetensors (mlx-lm) or adapters.npz "
                              "(lora.py) in this folder", path);
        }
    }
    qt_free(f);
    return l;
}
