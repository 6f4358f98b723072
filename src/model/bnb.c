// bnb.c: bitsandbytes 4-bit (NF4) weights of Hugging Face checkpoints as
// qtune NF4 tensors (bnb.h). Each 64-weight block becomes one block_nf4: its
// 32 packed bytes as bitsandbytes wrote them (first element in the high
// nibble), and d = its absmax, or with double quantization the value
// bitsandbytes' dequantize_4bit computes before use,
//   d = nested_quant_map[absmax_code] * nested_absmax[block / 256] + nested_offset
// in float32 (dequantize_blockwise, then absmax += offset), so every weight
// dequantizes bit for bit as bitsandbytes does before its cast to the compute
// dtype. The weights stay 4-bit (4.5 bits per weight here).
// Reference: bitsandbytes functional.py (QuantState.from_dict / as_dict,
// dequantize_4bit, dequantize_blockwise), utils.py (pack_dict_to_tensor:
// the quant state's JSON as uint8), backends/default/ops.py.
// Deliberately not: FP4, LLM.int8 (8-bit) checkpoints, block sizes other than
// 64 (every bnb-4bit checkpoint we know uses 64), rows that are not a whole
// number of blocks.
#include "model/bnb.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "base/base.h"
#include "quant/nf4.h"

static const qt_st_tensor *find_sfx(const qt_st_set *s, const char *name, const char *sfx) {
    char key[256];
    if (snprintf(key, sizeof(key), "%s.%s", name, sfx) >= (int)sizeof(key)) return NULL;
    return qt_st_find(s, key);
}

bool qt_bnb_is_4bit(const qt_st_set *s, const char *name) {
    return find_sfx(s, name, "quant_state.bitsandbytes__nf4") || find_sfx(s, name, "quant_state.bitsandbytes__fp4");
}

// A float32 vector of exactly n elements, or NULL (logged).
static const float *f32_vec(const qt_model *m, const char *name, const char *sfx, int64_t n) {
    const qt_st_tensor *t = find_sfx(m->st, name, sfx);
    if (!t || t->type != QT_TYPE_F32 || t->nbytes != (size_t)n * sizeof(float)) {
        qt_log_error("%s: tensor '%s.%s' is %s; bitsandbytes' quant state needs %lld float32 values", m->path, name,
                     sfx, t ? "of another size or dtype" : "missing", (long long)n);
        return NULL;
    }
    return t->data;
}

// p[i] of a float32 tensor that may sit at any byte offset of its file.
static float ld(const float *p, int64_t i) {
    float v;
    memcpy(&v, (const char *)p + (size_t)i * sizeof(float), sizeof(float));
    return v;
}

static int json_num(const qt_model *m, const char *name, const cJSON *j, const char *key, double *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!cJSON_IsNumber(v)) {
        qt_log_error("%s: tensor '%s': quant state field \"%s\" missing or not a number", m->path, name, key);
        return QT_ERR;
    }
    *out = v->valuedouble;
    return QT_OK;
}

int qt_bnb_load(qt_model *m, const char *name, qt_tensor *t) {
    memset(t, 0, sizeof(*t));
    if (find_sfx(m->st, name, "quant_state.bitsandbytes__fp4")) {
        qt_log_error("%s: tensor '%s': bitsandbytes fp4 is not supported (nf4 is)", m->path, name);
        return QT_ERR;
    }
    const qt_st_tensor *qs = find_sfx(m->st, name, "quant_state.bitsandbytes__nf4");
    const qt_st_tensor *w = qt_st_find(m->st, name);
    QT_ASSERT(qs && w);
    cJSON *j = cJSON_ParseWithLength(qs->data, qs->nbytes);
    int rc = QT_ERR;
    double bs = 0, nbs = 256, off = 0;
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(j, "shape");
    const cJSON *qtype = cJSON_GetObjectItemCaseSensitive(j, "quant_type");
    if (!cJSON_IsObject(j) || !cJSON_IsArray(shape) || cJSON_GetArraySize(shape) != 2 ||
        !cJSON_IsNumber(cJSON_GetArrayItem(shape, 0)) || !cJSON_IsNumber(cJSON_GetArrayItem(shape, 1))) {
        qt_log_error("%s: tensor '%s': the quant state is not bitsandbytes' JSON with a 2-D \"shape\"", m->path, name);
        goto done;
    }
    if (qtype && (!cJSON_IsString(qtype) || strcmp(qtype->valuestring, "nf4") != 0)) {
        qt_log_error("%s: tensor '%s': quant_type must be \"nf4\"", m->path, name);
        goto done;
    }
    if (json_num(m, name, j, "blocksize", &bs) != QT_OK) goto done;
    const double out_d = cJSON_GetArrayItem(shape, 0)->valuedouble, in_d = cJSON_GetArrayItem(shape, 1)->valuedouble;
    if (bs != QK_NF4 || !(out_d >= 1 && out_d <= (1 << 24) && in_d >= 1 && in_d <= (1 << 24)) ||
        fmod(in_d, QK_NF4) != 0) {
        qt_log_error("%s: tensor '%s': blocksize %g with shape [%g, %g]: qtune reads blocksize 64 with rows of a "
                     "multiple of 64", m->path, name, bs, out_d, in_d);
        goto done;
    }
    const int64_t out = (int64_t)out_d, in = (int64_t)in_d, nb = out * in / QK_NF4;
    if (w->nbytes != (size_t)(out * in / 2)) {
        qt_log_error("%s: tensor '%s' has %zu bytes, expected %lld packed 4-bit values for shape [%lld, %lld]", m->path,
                     name, w->nbytes, (long long)(out * in), (long long)out, (long long)in);
        goto done;
    }
    const float *map = f32_vec(m, name, "quant_map", 16);
    if (!map) goto done;
    for (int i = 0; i < 16; i++)
        if (memcmp(&map[i], &qt_nf4_values[i], sizeof(float)) != 0) {
            qt_log_error("%s: tensor '%s.quant_map' is not the NF4 code book (entry %d: %.9g)", m->path, name, i,
                         ld(map, i));
            goto done;
        }
    const bool nested = find_sfx(m->st, name, "nested_absmax") != NULL;
    const qt_st_tensor *am = find_sfx(m->st, name, "absmax");
    const float *nabs = NULL, *nmap = NULL;
    if (nested) {
        if (json_num(m, name, j, "nested_blocksize", &nbs) != QT_OK || json_num(m, name, j, "nested_offset", &off) != QT_OK)
            goto done;
        if (!(nbs >= 1 && nbs <= (1 << 20)) || nbs != floor(nbs)) {
            qt_log_error("%s: tensor '%s': nested_blocksize %g is not a block size", m->path, name, nbs);
            goto done;
        }
        const int64_t n_nested = (nb + (int64_t)nbs - 1) / (int64_t)nbs;
        if (!am || am->nbytes != (size_t)nb) {
            qt_log_error("%s: tensor '%s.absmax' must hold %lld 8-bit codes (double quantization)", m->path, name,
                         (long long)nb);
            goto done;
        }
        if (!(nabs = f32_vec(m, name, "nested_absmax", n_nested)) || !(nmap = f32_vec(m, name, "nested_quant_map", 256)))
            goto done;
    } else if (!f32_vec(m, name, "absmax", nb)) {
        goto done;
    }
    block_nf4 *b = qt_model_own_buffer(m, (size_t)nb * sizeof(block_nf4), "bitsandbytes 4-bit weights");
    if (!b) goto done;
    const uint8_t *packed = w->data, *codes = am->data;
    const float offset = (float)off, *absmax = am->data;
    for (int64_t i = 0; i < nb; i++) {
        b[i].d = nested ? ld(nmap, codes[i]) * ld(nabs, i / (int64_t)nbs) + offset : ld(absmax, i);
        memcpy(b[i].qs, packed + i * (QK_NF4 / 2), QK_NF4 / 2);
    }
    *t = (qt_tensor){ .type = QT_TYPE_NF4, .ne0 = in, .ne1 = out, .data = b };
    rc = QT_OK;
done:
    cJSON_Delete(j);
    return rc;
}
