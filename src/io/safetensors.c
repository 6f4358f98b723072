// safetensors.c: reader for .safetensors files and Hugging Face model folders
// (model.safetensors, or shards listed by model.safetensors.index.json), and
// an atomic writer.
//
// The file is hostile: the u64 header length is bounded (<= 100 MB and <= the
// file), the JSON header is parsed with cJSON, and every tensor's dtype, shape
// (<= 4 dims, non-negative integers), data_offsets (begin <= end inside the
// data section, byte count == elements * dtype size) is checked; duplicate
// names and overlapping tensors are rejected. Each failure logs one line
// "<file>: <problem>".
//
// Not supported: dtypes other than F32/F16/BF16/F64/I8/U8/I16/I32/I64 (BOOL,
// F8_* give "unsupported dtype"). __metadata__ is accepted and ignored by the
// reader. Unlike the Python library, gaps between tensors are allowed.
//
// Reference: huggingface/safetensors README ("Format") and the Python/Rust
// serializer (header keys sorted, header padded with spaces to 8 bytes).
#include "io/safetensors.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/base.h"

#define ST_MAX_HEADER (100u * 1024 * 1024)
#define ST_MAX_DIMS 4
#define ST_MAX_SHARDS 4096    // bounds the shard de-duplication of a hostile index
#define ST_MAX_JSON_INT 9007199254740992.0   // 2^53: larger JSON numbers are not exact

typedef struct {
    const char *name;
    qt_type type;
    size_t size;
} st_dtype;

static const st_dtype st_dtypes[] = {
    { "F32", QT_TYPE_F32, 4 }, { "F16", QT_TYPE_F16, 2 }, { "BF16", QT_TYPE_BF16, 2 },
    { "F64", QT_TYPE_F64, 8 }, { "I8", QT_TYPE_I8, 1 }, { "I16", QT_TYPE_I16, 2 },
    { "I32", QT_TYPE_I32, 4 }, { "I64", QT_TYPE_I64, 8 },
    // U8 (bitsandbytes' packed 4-bit weights and quant states) as raw bytes:
    // qtune has no unsigned type; readers interpret them (model/bnb.c)
    { "U8", QT_TYPE_I8, 1 },
};

static const st_dtype *dtype_by_name(const char *s) {
    for (size_t i = 0; i < QT_ARRAY_LEN(st_dtypes); i++)
        if (strcmp(st_dtypes[i].name, s) == 0) return &st_dtypes[i];
    return NULL;
}
static const st_dtype *dtype_by_type(qt_type t) {
    for (size_t i = 0; i < QT_ARRAY_LEN(st_dtypes); i++)
        if (st_dtypes[i].type == t) return &st_dtypes[i];
    return NULL;
}

struct qt_st_set {
    int n_files;
    qt_mmap *maps;        // (n_files)
    int64_t n, cap;
    qt_st_tensor *t;      // (n)
    int64_t *sorted;      // (n) indices sorted by name
};

static void set_add(qt_st_set *s, const qt_st_tensor *t) {
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 64;
        s->t = qt_realloc(s->t, (size_t)s->cap * sizeof(*s->t));
    }
    s->t[s->n++] = *t;
}

// Reads a JSON number that must be an exact non-negative integer.
static int json_uint(const cJSON *j, uint64_t *out) {
    if (!cJSON_IsNumber(j)) return QT_ERR;
    double d = j->valuedouble;
    if (!(d >= 0) || d > ST_MAX_JSON_INT || d != (double)(uint64_t)d) return QT_ERR;
    *out = (uint64_t)d;
    return QT_OK;
}

// Sorting without globals (qsort has no user pointer in C11): (name, index) pairs.
typedef struct { const char *name; int64_t i; } named;
static int named_cmp(const void *a, const void *b) {
    const named *x = a, *y = b;
    int r = strcmp(x->name, y->name);
    return r ? r : (x->i > y->i) - (x->i < y->i);
}

// Builds s->sorted (indices by name); logs and fails on a duplicate name.
static int index_names(qt_st_set *s, const char *where) {
    named *items = qt_malloc((size_t)(s->n + 1) * sizeof(*items));
    for (int64_t i = 0; i < s->n; i++) items[i] = (named){ s->t[i].name, i };
    qsort(items, (size_t)s->n, sizeof(*items), named_cmp);
    qt_free(s->sorted);
    s->sorted = qt_malloc((size_t)(s->n + 1) * sizeof(int64_t));
    int rc = QT_OK;
    for (int64_t i = 0; i < s->n; i++) {
        s->sorted[i] = items[i].i;
        if (rc == QT_OK && i > 0 && strcmp(items[i - 1].name, items[i].name) == 0) {
            qt_log_error("%s: duplicate tensor name '%s'", where, items[i].name);
            rc = QT_ERR;
        }
    }
    qt_free(items);
    return rc;
}
typedef struct { uint64_t begin, end; const char *name; } span;
static int span_cmp(const void *a, const void *b) {
    const span *x = a, *y = b;
    if (x->begin != y->begin) return (x->begin > y->begin) - (x->begin < y->begin);
    return (x->end > y->end) - (x->end < y->end);
}

// Parses one tensor entry of the header into *t. Returns QT_OK or logs.
static int parse_entry(const char *path, const cJSON *e, const uint8_t *data, uint64_t data_size,
                       qt_st_tensor *t, span *sp) {
    const char *nm = e->string;
    if (!cJSON_IsObject(e)) {
        qt_log_error("%s: tensor '%s': header entry is not a JSON object", path, nm);
        return QT_ERR;
    }
    const cJSON *jd = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *js = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *jo = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(jd)) {
        qt_log_error("%s: tensor '%s': missing or non-string dtype", path, nm);
        return QT_ERR;
    }
    const st_dtype *dt = dtype_by_name(jd->valuestring);
    if (!dt) {
        qt_log_error("%s: tensor '%s': unsupported dtype '%.32s' (qtune reads F32 F16 BF16 F64 I8 U8 I16 I32 I64)",
                     path, nm, jd->valuestring);
        return QT_ERR;
    }
    if (!cJSON_IsArray(js)) {
        qt_log_error("%s: tensor '%s': missing or non-array shape", path, nm);
        return QT_ERR;
    }
    int n_dims = cJSON_GetArraySize(js);
    if (n_dims > ST_MAX_DIMS) {
        qt_log_error("%s: tensor '%s': shape has %d dims, at most %d supported", path, nm, n_dims, ST_MAX_DIMS);
        return QT_ERR;
    }
    memset(t, 0, sizeof(*t));
    t->type = dt->type;
    t->n_dims = n_dims;
    for (int d = 0; d < ST_MAX_DIMS; d++) t->shape[d] = 1;
    uint64_t nel = 1;
    int d = 0;
    for (const cJSON *x = js->child; x; x = x->next, d++) {
        uint64_t v;
        if (json_uint(x, &v)) {
            qt_log_error("%s: tensor '%s': shape[%d] is not a non-negative integer (negative or invalid)", path, nm, d);
            return QT_ERR;
        }
        t->shape[d] = (int64_t)v;
        if (v != 0 && nel > UINT64_MAX / v) {
            qt_log_error("%s: tensor '%s': shape element count overflows", path, nm);
            return QT_ERR;
        }
        nel *= v;
    }
    if (!cJSON_IsArray(jo) || cJSON_GetArraySize(jo) != 2) {
        qt_log_error("%s: tensor '%s': data_offsets must be an array [begin, end]", path, nm);
        return QT_ERR;
    }
    uint64_t begin, end;
    if (json_uint(jo->child, &begin) || json_uint(jo->child->next, &end)) {
        qt_log_error("%s: tensor '%s': data_offsets are not non-negative integers", path, nm);
        return QT_ERR;
    }
    if (begin > end) {
        qt_log_error("%s: tensor '%s': data_offsets begin %llu > end %llu", path, nm,
                     (unsigned long long)begin, (unsigned long long)end);
        return QT_ERR;
    }
    if (end > data_size) {
        qt_log_error("%s: tensor '%s': data_offsets [%llu, %llu] out of range: the data section has %llu bytes",
                     path, nm, (unsigned long long)begin, (unsigned long long)end, (unsigned long long)data_size);
        return QT_ERR;
    }
    if (nel > UINT64_MAX / dt->size) {
        qt_log_error("%s: tensor '%s': shape/bytes mismatch: %llu elements of %s overflow a 64-bit byte count",
                     path, nm, (unsigned long long)nel, dt->name);
        return QT_ERR;
    }
    if (nel * dt->size != end - begin) {
        qt_log_error("%s: tensor '%s': shape/bytes mismatch: %llu elements of %s need %llu bytes, data_offsets give %llu",
                     path, nm, (unsigned long long)nel, dt->name, (unsigned long long)(nel * dt->size),
                     (unsigned long long)(end - begin));
        return QT_ERR;
    }
    t->data = data + begin;
    t->nbytes = (size_t)(end - begin);
    sp->begin = begin;
    sp->end = end;
    sp->name = nm;
    return QT_OK;
}

// Maps one file and appends its tensors to s (file_index = s->n_files).
static int open_file(qt_st_set *s, const char *path) {
    s->maps = qt_realloc(s->maps, (size_t)(s->n_files + 1) * sizeof(*s->maps));
    qt_mmap *m = &s->maps[s->n_files];
    if (qt_mmap_open(m, path) != QT_OK) return QT_ERR;
    int file_index = s->n_files++;
    if (m->size < 8) {
        qt_log_error("%s: not a safetensors file (%zu bytes, too small for the header length)", path, m->size);
        return QT_ERR;
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | m->data[i];
    if (hlen > ST_MAX_HEADER) {
        qt_log_error("%s: header length %llu is too large (limit %u): not a safetensors file?",
                     path, (unsigned long long)hlen, ST_MAX_HEADER);
        return QT_ERR;
    }
    if (hlen > m->size - 8) {
        qt_log_error("%s: header length %llu extends past the end of the file (size %zu): truncated?",
                     path, (unsigned long long)hlen, m->size);
        return QT_ERR;
    }
    const char *hdr = (const char *)m->data + 8;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(hdr, (size_t)hlen, &end, 0);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        size_t pos = at && at >= hdr && at <= hdr + hlen ? (size_t)(at - hdr) : 0;
        qt_log_error("%s: invalid JSON in header near byte %zu", path, pos + 8);
        return QT_ERR;
    }
    for (const char *p = end; p && p < hdr + hlen; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            qt_log_error("%s: invalid JSON in header: trailing bytes after the object at byte %zu",
                         path, (size_t)(p - hdr) + 8);
            cJSON_Delete(root);
            return QT_ERR;
        }
    }
    if (!cJSON_IsObject(root)) {
        qt_log_error("%s: invalid JSON in header: not an object", path);
        cJSON_Delete(root);
        return QT_ERR;
    }
    const uint8_t *data = m->data + 8 + hlen;
    uint64_t data_size = m->size - 8 - hlen;
    int n_entries = cJSON_GetArraySize(root);
    span *spans = qt_malloc((size_t)(n_entries ? n_entries : 1) * sizeof(*spans));
    int n_spans = 0, rc = QT_OK;
    for (const cJSON *e = root->child; e; e = e->next) {
        if (strcmp(e->string, "__metadata__") == 0) continue;
        qt_st_tensor t;
        if (parse_entry(path, e, data, data_size, &t, &spans[n_spans]) != QT_OK) { rc = QT_ERR; break; }
        t.name = qt_strdup(e->string);
        t.file_index = file_index;
        set_add(s, &t);
        n_spans++;
    }
    if (rc == QT_OK) {
        qsort(spans, (size_t)n_spans, sizeof(*spans), span_cmp);
        // sorted by begin: a non-empty span overlaps an earlier one iff it begins
        // before the furthest end seen so far (empty spans own no bytes)
        int last = -1;
        for (int i = 0; i < n_spans; i++) {
            if (spans[i].end == spans[i].begin) continue;
            if (last >= 0 && spans[last].end > spans[i].begin) {
                qt_log_error("%s: tensors '%s' [%llu, %llu] and '%s' [%llu, %llu] overlap", path,
                             spans[last].name, (unsigned long long)spans[last].begin,
                             (unsigned long long)spans[last].end, spans[i].name,
                             (unsigned long long)spans[i].begin, (unsigned long long)spans[i].end);
                rc = QT_ERR;
                break;
            }
            if (last < 0 || spans[i].end > spans[last].end) last = i;
        }
    }
    qt_free(spans);
    cJSON_Delete(root);
    return rc;
}

static bool is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}
static bool is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}
static char *join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = qt_malloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

// Sharded folder: open each shard named in weight_map once, then check that
// every name of the index is in the shard it names.
static int open_index(qt_st_set *s, const char *dir, const char *index_path) {
    size_t n;
    char *text = qt_read_file(index_path, &n);
    if (!text) return QT_ERR;
    int rc = QT_ERR;
    char **shards = NULL;
    int n_shards = 0;
    cJSON *root = cJSON_ParseWithLength(text, n);
    const cJSON *wm = root ? cJSON_GetObjectItemCaseSensitive(root, "weight_map") : NULL;
    if (!root) {
        qt_log_error("%s: invalid JSON", index_path);
        goto done;
    }
    if (!cJSON_IsObject(wm)) {
        qt_log_error("%s: missing weight_map object", index_path);
        goto done;
    }
    int n_names = cJSON_GetArraySize(wm);
    shards = qt_malloc((size_t)(n_names ? n_names : 1) * sizeof(char *));
    for (const cJSON *e = wm->child; e; e = e->next) {
        if (!cJSON_IsString(e)) {
            qt_log_error("%s: weight_map['%s'] is not a file name", index_path, e->string);
            goto done;
        }
        const char *f = e->valuestring;
        if (!*f || strchr(f, '/') || strcmp(f, ".") == 0 || strcmp(f, "..") == 0) {
            qt_log_error("%s: weight_map['%s']: bad shard file name '%s' (must be a file in the folder)",
                         index_path, e->string, f);
            goto done;
        }
        int k = 0;
        while (k < n_shards && strcmp(shards[k], f) != 0) k++;
        if (k == n_shards && n_shards == ST_MAX_SHARDS) {
            qt_log_error("%s: more than %d shard files", index_path, ST_MAX_SHARDS);
            goto done;
        }
        if (k == n_shards) shards[n_shards++] = (char *)f;
    }
    for (int k = 0; k < n_shards; k++) {
        char *p = join(dir, shards[k]);
        if (!is_file(p)) {
            qt_log_error("%s: shard '%s' listed in the index is missing (%s)", index_path, shards[k], p);
            qt_free(p);
            goto done;
        }
        int r = open_file(s, p);
        qt_free(p);
        if (r != QT_OK) goto done;
    }
    // resolve every name of the index in its shard (file k was opened k-th)
    if (index_names(s, dir) != QT_OK) goto done;
    for (const cJSON *e = wm->child; e; e = e->next) {
        int k = 0;
        while (strcmp(shards[k], e->valuestring) != 0) k++;
        const qt_st_tensor *t = qt_st_find(s, e->string);
        if (!t || t->file_index != k) {
            qt_log_error("%s: tensor '%s' is listed in the index but missing from shard '%s'",
                         index_path, e->string, shards[k]);
            goto done;
        }
    }
    rc = QT_OK;
done:
    qt_free(shards);
    cJSON_Delete(root);
    qt_free(text);
    return rc;
}

qt_st_set *qt_st_open(const char *path) {
    qt_st_set *s = qt_calloc(1, sizeof(*s));
    const char *where = path;
    char *p = NULL;
    if (is_dir(path)) {
        char *index = join(path, "model.safetensors.index.json");
        p = join(path, "model.safetensors");
        int r;
        if (is_file(index)) {
            r = open_index(s, path, index);
            where = path;
        } else if (is_file(p)) {
            r = open_file(s, p);
            where = p;
        } else {
            qt_log_error("%s: folder has neither model.safetensors nor model.safetensors.index.json", path);
            r = QT_ERR;
        }
        qt_free(index);
        if (r != QT_OK) goto fail;
    } else if (open_file(s, path) != QT_OK) {
        goto fail;
    }
    if (!s->sorted && index_names(s, where) != QT_OK) goto fail;
    qt_free(p);
    return s;
fail:
    qt_free(p);
    qt_st_close(s);
    return NULL;
}

void qt_st_close(qt_st_set *s) {
    if (!s) return;
    for (int64_t i = 0; i < s->n; i++) qt_free((void *)s->t[i].name);
    for (int i = 0; i < s->n_files; i++) qt_mmap_close(&s->maps[i]);
    qt_free(s->maps);
    qt_free(s->t);
    qt_free(s->sorted);
    qt_free(s);
}

int64_t qt_st_n_tensors(const qt_st_set *s) { return s->n; }

const qt_st_tensor *qt_st_tensor_at(const qt_st_set *s, int64_t i) {
    QT_ASSERT(i >= 0 && i < s->n);
    return &s->t[i];
}

const qt_st_tensor *qt_st_find(const qt_st_set *s, const char *name) {
    int64_t lo = 0, hi = s->n;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int r = strcmp(s->t[s->sorted[mid]].name, name);
        if (r == 0) return &s->t[s->sorted[mid]];
        if (r < 0) lo = mid + 1; else hi = mid;
    }
    return NULL;
}

// ---- writer ----

typedef struct {
    char *name;
    qt_type type;
    int n_dims;
    int64_t shape[ST_MAX_DIMS];
    const void *data;
    size_t nbytes;
} st_wentry;

struct qt_st_writer {
    st_wentry *e;
    int n, cap;
    char **meta_k, **meta_v;
    int n_meta;
};

qt_st_writer *qt_st_writer_init(void) { return qt_calloc(1, sizeof(qt_st_writer)); }

void qt_st_writer_free(qt_st_writer *w) {
    if (!w) return;
    for (int i = 0; i < w->n; i++) qt_free(w->e[i].name);
    for (int i = 0; i < w->n_meta; i++) { qt_free(w->meta_k[i]); qt_free(w->meta_v[i]); }
    qt_free(w->e);
    qt_free(w->meta_k);
    qt_free(w->meta_v);
    qt_free(w);
}

void qt_st_writer_meta(qt_st_writer *w, const char *key, const char *value) {
    for (int i = 0; i < w->n_meta; i++) {
        if (strcmp(w->meta_k[i], key) == 0) {
            qt_free(w->meta_v[i]);
            w->meta_v[i] = qt_strdup(value);
            return;
        }
    }
    w->meta_k = qt_realloc(w->meta_k, (size_t)(w->n_meta + 1) * sizeof(char *));
    w->meta_v = qt_realloc(w->meta_v, (size_t)(w->n_meta + 1) * sizeof(char *));
    w->meta_k[w->n_meta] = qt_strdup(key);
    w->meta_v[w->n_meta] = qt_strdup(value);
    w->n_meta++;
}

void qt_st_writer_add(qt_st_writer *w, const char *name, qt_type type, int n_dims,
                      const int64_t *shape, const void *data) {
    const st_dtype *dt = dtype_by_type(type);
    QT_ASSERT(dt);
    QT_ASSERT(n_dims >= 0 && n_dims <= ST_MAX_DIMS);
    QT_ASSERT(strcmp(name, "__metadata__") != 0);
    for (int i = 0; i < w->n; i++) QT_ASSERT(strcmp(w->e[i].name, name) != 0);
    if (w->n == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 32;
        w->e = qt_realloc(w->e, (size_t)w->cap * sizeof(*w->e));
    }
    st_wentry *e = &w->e[w->n++];
    memset(e, 0, sizeof(*e));
    e->name = qt_strdup(name);
    e->type = type;
    e->n_dims = n_dims;
    size_t nel = 1;
    for (int d = 0; d < ST_MAX_DIMS; d++) {
        e->shape[d] = d < n_dims ? shape[d] : 1;
        QT_ASSERT(e->shape[d] >= 0);
        nel *= (size_t)e->shape[d];
    }
    e->nbytes = nel * dt->size;
    QT_ASSERT(data || e->nbytes == 0);
    e->data = data;
}

typedef struct { char *p; size_t n, cap; } sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        while (b->n + n + 1 > b->cap) b->cap = b->cap ? 2 * b->cap : 1024;
        b->p = qt_realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}
static void sb_cat(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }
static void sb_json_str(sbuf *b, const char *s) {
    sb_cat(b, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[8];
        if (*p == '"' || *p == '\\') { esc[0] = '\\'; esc[1] = (char)*p; sb_put(b, esc, 2); }
        else if (*p < 0x20) { snprintf(esc, sizeof(esc), "\\u%04x", *p); sb_cat(b, esc); }
        else sb_put(b, (const char *)p, 1);
    }
    sb_cat(b, "\"");
}


int qt_st_write(qt_st_writer *w, const char *path) {
    named *items = qt_malloc((size_t)(w->n + 1) * sizeof(*items));
    for (int i = 0; i < w->n; i++) items[i] = (named){ w->e[i].name, i };
    qsort(items, (size_t)w->n, sizeof(*items), named_cmp);
    int *ord = qt_malloc((size_t)(w->n + 1) * sizeof(int));
    for (int i = 0; i < w->n; i++) ord[i] = (int)items[i].i;
    qt_free(items);

    sbuf b = { 0 };
    char num[64];
    sb_cat(&b, "{");
    bool first = true;
    if (w->n_meta) {
        sb_cat(&b, "\"__metadata__\":{");
        for (int i = 0; i < w->n_meta; i++) {
            if (i) sb_cat(&b, ",");
            sb_json_str(&b, w->meta_k[i]);
            sb_cat(&b, ":");
            sb_json_str(&b, w->meta_v[i]);
        }
        sb_cat(&b, "}");
        first = false;
    }
    uint64_t off = 0;
    for (int k = 0; k < w->n; k++) {
        const st_wentry *e = &w->e[ord[k]];
        if (!first) sb_cat(&b, ",");
        first = false;
        sb_json_str(&b, e->name);
        sb_cat(&b, ":{\"dtype\":\"");
        sb_cat(&b, dtype_by_type(e->type)->name);
        sb_cat(&b, "\",\"shape\":[");
        for (int d = 0; d < e->n_dims; d++) {
            snprintf(num, sizeof(num), d ? ",%lld" : "%lld", (long long)e->shape[d]);
            sb_cat(&b, num);
        }
        snprintf(num, sizeof(num), "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                 (unsigned long long)(off + e->nbytes));
        sb_cat(&b, num);
        off += e->nbytes;
    }
    sb_cat(&b, "}");
    while (b.n % 8) sb_cat(&b, " ");

    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)b.n >> (8 * i));
    qt_atomic_file f;
    int rc = qt_atomic_open(&f, path);
    if (rc == QT_OK) {
        qt_atomic_write(&f, len8, 8);
        qt_atomic_write(&f, b.p, b.n);
        for (int k = 0; k < w->n; k++) qt_atomic_write(&f, w->e[ord[k]].data, w->e[ord[k]].nbytes);
        rc = qt_atomic_commit(&f);
    }
    qt_free(b.p);
    qt_free(ord);
    return rc;
}
