// lora-mlx.c: reads mlx-lm LoRA adapters (lora-io.h), following mlx-lm's
// tuner/lora.py (LoRALinear: lora_a (in, r), lora_b (r, out),
// y = W x + scale * (x @ lora_a) @ lora_b) and tuner/utils.py
// (adapter_config.json: fine_tune_type, num_layers, lora_parameters {rank,
// scale, dropout, keys}). mlx-lm keeps HF's rotate_half q/k row order, so B
// rows are permuted for llama models loaded from GGUF, as for PEFT.
// Does not: write mlx-lm adapters, DoRA, full fine-tunes, or embedding LoRA.
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "base/base.h"
#include "io/safetensors.h"
#include "model/lora-io.h"

// Row r of B in HF order is model row hf_to_model(r) for an interleaved-order model.
static int hf_to_model(int r, int HS) {
    int h = r / HS, j = r % HS, half = HS / 2;
    return h * HS + (j < half ? 2 * j : 2 * (j - half) + 1);
}

static int parse_key(const qt_arch_desc *a, const char *name, int *il, int *t, int *ab) {
    return qt_lora_match_key(a, name, "", false, ".lora_a", ".lora_b", il, t, ab);
}

qt_lora *qt_lora_load_mlx(const qt_model *m, const char *path) {
    char *file = NULL, *cfg_path = NULL;
    qt_lora *l = NULL;
    qt_st_set *s = NULL;
    float *tmp = NULL;
    cJSON *j = qt_lora_read_config(path, "adapters.safetensors", &file, &cfg_path);
    if (!j) goto done;
    const cJSON *ft = cJSON_GetObjectItemCaseSensitive(j, "fine_tune_type");
    if (ft && (!cJSON_IsString(ft) || strcmp(ft->valuestring, "lora") != 0)) {
        qt_log_error("%s: fine_tune_type must be \"lora\" (DoRA and full fine-tunes are not supported)", cfg_path);
        goto done;
    }
    const cJSON *lp = cJSON_GetObjectItemCaseSensitive(j, "lora_parameters");
    const cJSON *rank = cJSON_GetObjectItemCaseSensitive(lp, "rank");
    const cJSON *scale = cJSON_GetObjectItemCaseSensitive(lp, "scale");
    if (!cJSON_IsObject(lp) || !cJSON_IsNumber(rank) || rank->valuedouble < 1 || rank->valuedouble > 4096 ||
        rank->valuedouble != floor(rank->valuedouble) || !cJSON_IsNumber(scale) || !isfinite(scale->valuedouble)) {
        qt_log_error("%s: lora_parameters must hold an integer \"rank\" 1..4096 and a number \"scale\"", cfg_path);
        goto done;
    }
    qt_lora_config cfg = qt_lora_defaults();
    cfg.rank = (int)rank->valuedouble;
    cfg.alpha = (float)scale->valuedouble * (float)cfg.rank;   // our scale is alpha / r
    cfg.rslora = false;
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
    const int r = cfg.rank, HS = m->cfg.head_dim;
    for (int64_t i = 0; i < qt_st_n_tensors(s); i++) {
        const qt_st_tensor *t = qt_st_tensor_at(s, i);
        int il, tg, ab;
        parse_key(m->arch, t->name, &il, &tg, &ab);
        const qt_lora_pair *p = qt_lora_get(l, il, tg);
        int64_t want0 = ab ? r : p->n_in, want1 = ab ? p->n_out : r;
        if (t->n_dims != 2 || t->shape[0] != want0 || t->shape[1] != want1) {
            qt_log_error("%s: tensor '%s' has shape [%lld, %lld], expected [%lld, %lld] for this model and rank %d", file,
                         t->name, (long long)t->shape[0], (long long)(t->n_dims > 1 ? t->shape[1] : 0),
                         (long long)want0, (long long)want1, r);
            goto fail;
        }
        if (t->type != QT_TYPE_F32 && t->type != QT_TYPE_F16 && t->type != QT_TYPE_BF16) {
            qt_log_error("%s: tensor '%s': dtype %s not supported", file, t->name, qt_type_name(t->type));
            goto fail;
        }
        size_t cnt = (size_t)want0 * (size_t)want1;
        tmp = qt_realloc(tmp, sizeof(float) * cnt);
        qt_type_traits_get(t->type)->to_float(t->data, tmp, (int64_t)cnt);
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
    goto done;
fail:
    qt_lora_free(l);
    l = NULL;
done:
    qt_free(tmp);
    cJSON_Delete(j);
    qt_st_close(s);
    qt_free(file);
    qt_free(cfg_path);
    return l;
}
