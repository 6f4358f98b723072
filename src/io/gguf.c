// gguf.c: GGUF reader (versions 2 and 3, little-endian) and writer (version 3).
//
// Reader: maps the file and returns zero-copy views into the mapping. The file
// is treated as hostile: every count, length and offset is checked against the
// bytes that remain BEFORE anything is allocated or read, so a count of 2^60
// strings fails with a message instead of an allocation. Checked: magic,
// version, metadata value types (no nested arrays), duplicate keys,
// general.alignment (u32, non-zero power of two), tensor infos (1..4 dims,
// ne >= 0 with overflow-checked products, type known with a block size, ne[0]
// a multiple of the block size, aligned offsets, data inside the file, no
// duplicate names, no overlapping data). Every failure logs one line
// "<file>: <problem>".
//
// Not supported: GGUF version 1 (u32 counts, 2023) and big-endian files; both
// are rejected with a clear error. The reader does not require tensors to be
// laid out contiguously in info order (llama.cpp does), only aligned, inside
// the file and non-overlapping.
//
// Writer: metadata and tensor list in memory, written as version 3 with the
// alignment of general.alignment (default 32), zero padding between tensors,
// through base.h's atomic file (temp file + rename). Lazy tensors are produced
// by a callback into one reused buffer, so models larger than memory can be
// written tensor by tensor.
//
// Reference: ggml/docs/gguf.md and ggml/src/gguf.cpp (llama.cpp).
#include "io/gguf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"

#define GGUF_MAGIC "GGUF"
#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_WRITE_VERSION 3

// Smallest encoding of one metadata kv (u64 key length, u32 type, 1-byte
// value) and of one tensor info (u64 name length, u32 n_dims, one i64 ne,
// u32 type, u64 offset): used to bound counts by the bytes that remain.
#define GGUF_MIN_KV_BYTES (8 + 4 + 1)
#define GGUF_MIN_TENSOR_INFO_BYTES (8 + 4 + 8 + 4 + 8)

struct qt_gguf {
    char *path;
    qt_mmap map;
    uint32_t version;
    size_t alignment;
    size_t data_offset;
    int64_t n_kv;
    qt_gguf_kv *kv;          // (n_kv)
    char **kv_cstr;          // (n_kv) NUL-terminated copy of STRING values, else NULL
    int64_t *kv_sorted;      // (n_kv) kv indices sorted by key
    int64_t n_tensors;
    qt_gguf_tensor *tensors; // (n_tensors)
    int64_t *t_sorted;       // (n_tensors) tensor indices sorted by name
};

// ---- helpers shared by reader and writer ----

static const size_t vtype_size[QT_GGUF_TYPE_COUNT] = {
    [QT_GGUF_UINT8] = 1, [QT_GGUF_INT8] = 1, [QT_GGUF_UINT16] = 2, [QT_GGUF_INT16] = 2,
    [QT_GGUF_UINT32] = 4, [QT_GGUF_INT32] = 4, [QT_GGUF_FLOAT32] = 4, [QT_GGUF_BOOL] = 1,
    [QT_GGUF_STRING] = 0, [QT_GGUF_ARRAY] = 0, [QT_GGUF_UINT64] = 8, [QT_GGUF_INT64] = 8,
    [QT_GGUF_FLOAT64] = 8,
};

const char *qt_gguf_vtype_name(int t) {
    static const char *names[QT_GGUF_TYPE_COUNT] = {
        "uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "bool",
        "string", "array", "uint64", "int64", "float64",
    };
    return t >= 0 && t < QT_GGUF_TYPE_COUNT ? names[t] : "?";
}

static bool vtype_is_int(int t) {
    return t == QT_GGUF_UINT8 || t == QT_GGUF_INT8 || t == QT_GGUF_UINT16 ||
           t == QT_GGUF_INT16 || t == QT_GGUF_UINT32 || t == QT_GGUF_INT32 ||
           t == QT_GGUF_UINT64 || t == QT_GGUF_INT64;
}
static bool vtype_is_signed(int t) {
    return t == QT_GGUF_INT8 || t == QT_GGUF_INT16 || t == QT_GGUF_INT32 || t == QT_GGUF_INT64;
}

static uint64_t rd_u64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}
static uint32_t rd_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint16_t rd_u16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

static uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

// ---- reader ----

typedef struct {
    const uint8_t *p;
    size_t size, pos;
    const char *path;
} cursor;

static size_t cur_left(const cursor *c) { return c->size - c->pos; }

// Reads n bytes or logs "<file>: truncated ... while reading <what>".
static int cur_need(cursor *c, size_t n, const char *what) {
    if (n > cur_left(c)) {
        qt_log_error("%s: truncated file: %s needs %zu bytes at offset %zu, only %zu left",
                     c->path, what, n, c->pos, cur_left(c));
        return QT_ERR;
    }
    return QT_OK;
}
static int cur_u32(cursor *c, uint32_t *v, const char *what) {
    if (cur_need(c, 4, what)) return QT_ERR;
    *v = rd_u32(c->p + c->pos);
    c->pos += 4;
    return QT_OK;
}
static int cur_u64(cursor *c, uint64_t *v, const char *what) {
    if (cur_need(c, 8, what)) return QT_ERR;
    *v = rd_u64(c->p + c->pos);
    c->pos += 8;
    return QT_OK;
}
static int cur_str(cursor *c, qt_gguf_str *s, const char *what) {
    uint64_t len;
    if (cur_u64(c, &len, what)) return QT_ERR;
    if (len > cur_left(c)) {
        qt_log_error("%s: %s: string length %llu at offset %zu exceeds the %zu bytes left in the file",
                     c->path, what, (unsigned long long)len, c->pos - 8, cur_left(c));
        return QT_ERR;
    }
    s->data = (const char *)c->p + c->pos;
    s->len = len;
    c->pos += len;
    return QT_OK;
}

// Grows *arr (elements of size sz) so that index i fits, doubling up to limit
// elements. Arrays sized from a count in the file grow as elements are actually
// read: memory stays proportional to the bytes parsed, never to a claimed count.
static void grow(void **arr, int64_t *cap, int64_t i, int64_t limit, size_t sz) {
    if (i < *cap) return;
    int64_t n = *cap ? 2 * *cap : 64;
    if (n > limit) n = limit;
    *arr = qt_realloc(*arr, (size_t)n * sz);
    memset((char *)*arr + (size_t)*cap * sz, 0, (size_t)(n - *cap) * sz);
    *cap = n;
}

static int str_cmp(qt_gguf_str a, qt_gguf_str b) {
    size_t n = a.len < b.len ? a.len : b.len;
    int r = n ? memcmp(a.data, b.data, n) : 0;
    if (r) return r;
    return a.len < b.len ? -1 : a.len > b.len;
}
static int str_cmp_c(qt_gguf_str a, const char *s) {
    qt_gguf_str b = { s, strlen(s) };
    return str_cmp(a, b);
}

static char *str_dup_n(qt_gguf_str s) {
    char *d = qt_malloc((size_t)s.len + 1);
    memcpy(d, s.data, (size_t)s.len);
    d[s.len] = 0;
    return d;
}

// Prints a key or name from the file for an error message (bounded, no NULs).
static const char *str_show(qt_gguf_str s, char *buf, size_t cap) {
    size_t n = s.len < cap - 1 ? s.len : cap - 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s.data[i];
        buf[i] = ch >= 32 && ch < 127 ? (char)ch : '?';
    }
    buf[n] = 0;
    return buf;
}

// Reads one value of scalar type t into kv (type already set).
static void read_scalar(const uint8_t *p, int t, qt_gguf_kv *kv) {
    switch (t) {
    case QT_GGUF_UINT8: kv->v.u64 = p[0]; break;
    case QT_GGUF_INT8: kv->v.i64 = (int8_t)p[0]; break;
    case QT_GGUF_UINT16: kv->v.u64 = rd_u16(p); break;
    case QT_GGUF_INT16: kv->v.i64 = (int16_t)rd_u16(p); break;
    case QT_GGUF_UINT32: kv->v.u64 = rd_u32(p); break;
    case QT_GGUF_INT32: kv->v.i64 = (int32_t)rd_u32(p); break;
    case QT_GGUF_UINT64: kv->v.u64 = rd_u64(p); break;
    case QT_GGUF_INT64: kv->v.i64 = (int64_t)rd_u64(p); break;
    case QT_GGUF_FLOAT32: {
        uint32_t u = rd_u32(p); float f; memcpy(&f, &u, 4); kv->v.f64 = f; break;
    }
    case QT_GGUF_FLOAT64: {
        uint64_t u = rd_u64(p); double d; memcpy(&d, &u, 8); kv->v.f64 = d; break;
    }
    case QT_GGUF_BOOL: kv->v.b = p[0] != 0; break;
    default: QT_ASSERT(!"not a scalar type");
    }
}

static int read_kv(cursor *c, qt_gguf_kv *kv) {
    char kb[96];
    if (cur_str(c, &kv->key, "metadata key")) return QT_ERR;
    const char *k = str_show(kv->key, kb, sizeof(kb));
    uint32_t t;
    if (cur_u32(c, &t, "metadata value type")) return QT_ERR;
    if (t >= QT_GGUF_TYPE_COUNT) {
        qt_log_error("%s: key '%s': unknown value type %u", c->path, k, t);
        return QT_ERR;
    }
    kv->type = (qt_gguf_vtype)t;
    if (t == QT_GGUF_STRING) return cur_str(c, &kv->v.str, "string value");
    if (t != QT_GGUF_ARRAY) {
        if (cur_need(c, vtype_size[t], "metadata value")) return QT_ERR;
        read_scalar(c->p + c->pos, (int)t, kv);
        c->pos += vtype_size[t];
        return QT_OK;
    }
    uint32_t et;
    uint64_t n;
    if (cur_u32(c, &et, "array element type") || cur_u64(c, &n, "array length")) return QT_ERR;
    if (et == QT_GGUF_ARRAY) {
        qt_log_error("%s: key '%s': nested array (arrays of arrays are not supported)", c->path, k);
        return QT_ERR;
    }
    if (et >= QT_GGUF_TYPE_COUNT) {
        qt_log_error("%s: key '%s': unknown array element type %u", c->path, k, et);
        return QT_ERR;
    }
    kv->v.arr.type = (qt_gguf_vtype)et;
    kv->v.arr.n = n;
    kv->v.arr.data = c->p + c->pos;
    kv->v.arr.strs = NULL;
    // every element takes at least 8 bytes (strings) or its size: bound n first
    size_t min_elem = et == QT_GGUF_STRING ? 8 : vtype_size[et];
    if (n > cur_left(c) / min_elem) {
        qt_log_error("%s: key '%s': array count %llu of %s is too large for the %zu bytes left in the file",
                     c->path, k, (unsigned long long)n, qt_gguf_vtype_name((int)et), cur_left(c));
        return QT_ERR;
    }
    if (et != QT_GGUF_STRING) {
        c->pos += (size_t)n * min_elem;
        return QT_OK;
    }
    int64_t cap = 0;
    for (uint64_t i = 0; i < n; i++) {
        void *p = (void *)kv->v.arr.strs;   // owned by the ctx (freed in close) even when partial
        grow(&p, &cap, (int64_t)i, (int64_t)n, sizeof(qt_gguf_str));
        kv->v.arr.strs = p;
        if (cur_str(c, (qt_gguf_str *)&kv->v.arr.strs[i], "array string")) return QT_ERR;
    }
    return QT_OK;
}

// Sorting without globals (qsort has no user pointer in C11): sort (key, index)
// pairs, then read back the indices.
typedef struct { qt_gguf_str s; uint64_t off; int64_t i; } sort_item;
static int sort_by_str(const void *a, const void *b) {
    const sort_item *x = a, *y = b;
    int r = str_cmp(x->s, y->s);
    return r ? r : (x->i > y->i) - (x->i < y->i);
}
static int sort_by_off(const void *a, const void *b) {
    const sort_item *x = a, *y = b;
    return (x->off > y->off) - (x->off < y->off);
}
// Fills idx (n) with 0..n-1 ordered by cmp over items; returns the first index
// of an adjacent pair with equal strings (duplicate), or -1.
static int64_t sort_indices(sort_item *items, int64_t n, int64_t *idx, int (*cmp)(const void *, const void *)) {
    qsort(items, (size_t)n, sizeof(*items), cmp);
    int64_t dup = -1;
    for (int64_t k = 0; k < n; k++) {
        idx[k] = items[k].i;
        if (dup < 0 && k > 0 && cmp == sort_by_str && str_cmp(items[k - 1].s, items[k].s) == 0) dup = items[k].i;
    }
    return dup;
}

static int read_tensor_info(cursor *c, const qt_gguf *g, qt_gguf_tensor *t) {
    char nb[96];
    if (cur_str(c, &t->name, "tensor name")) return QT_ERR;
    const char *nm = str_show(t->name, nb, sizeof(nb));
    uint32_t n_dims;
    if (cur_u32(c, &n_dims, "tensor n_dims")) return QT_ERR;
    if (n_dims < 1 || n_dims > QT_GGUF_MAX_DIMS) {
        qt_log_error("%s: tensor '%s': n_dims %u out of range (1..%d)", c->path, nm, n_dims, QT_GGUF_MAX_DIMS);
        return QT_ERR;
    }
    t->n_dims = (int)n_dims;
    for (int d = 0; d < QT_GGUF_MAX_DIMS; d++) t->ne[d] = 1;
    int64_t nel = 1;
    for (uint32_t d = 0; d < n_dims; d++) {
        uint64_t u;
        if (cur_u64(c, &u, "tensor shape")) return QT_ERR;
        if (u > (uint64_t)INT64_MAX) {
            qt_log_error("%s: tensor '%s': negative dimension ne[%u] = %lld", c->path, nm, d, (long long)(int64_t)u);
            return QT_ERR;
        }
        t->ne[d] = (int64_t)u;
        if (t->ne[d] != 0 && nel > INT64_MAX / t->ne[d]) {
            qt_log_error("%s: tensor '%s': element count overflows (shape too large)", c->path, nm);
            return QT_ERR;
        }
        nel *= t->ne[d];
    }
    uint32_t type;
    if (cur_u32(c, &type, "tensor type") || cur_u64(c, &t->offset, "tensor offset")) return QT_ERR;
    const qt_type_traits *tr = qt_type_traits_get((int)type);
    if (!tr || tr->blck_size <= 0 || tr->type_size == 0 || type >= QT_TYPE_FIRST_PRIVATE) {
        qt_log_error("%s: tensor '%s': unknown tensor type %u", c->path, nm, type);
        return QT_ERR;
    }
    t->type = (qt_type)type;
    if (t->ne[0] % tr->blck_size != 0) {
        qt_log_error("%s: tensor '%s': ne[0] = %lld is not a multiple of the block size %d of type %s",
                     c->path, nm, (long long)t->ne[0], tr->blck_size, tr->name);
        return QT_ERR;
    }
    // bytes = (ne[0] / blck) * type_size * ne[1] * ne[2] * ne[3], overflow-checked
    uint64_t nbytes = (uint64_t)(t->ne[0] / tr->blck_size);
    uint64_t mul[4] = { tr->type_size, (uint64_t)t->ne[1], (uint64_t)t->ne[2], (uint64_t)t->ne[3] };
    for (int i = 0; i < 4; i++) {
        if (mul[i] != 0 && nbytes > SIZE_MAX / mul[i]) {
            qt_log_error("%s: tensor '%s': byte size overflows (shape too large)", c->path, nm);
            return QT_ERR;
        }
        nbytes *= mul[i];
    }
    t->nbytes = (size_t)nbytes;
    if (t->offset % g->alignment != 0) {
        qt_log_error("%s: tensor '%s': data offset %llu is misaligned (alignment %zu)",
                     c->path, nm, (unsigned long long)t->offset, g->alignment);
        return QT_ERR;
    }
    return QT_OK;
}

// Bounded by the bytes that remain: counts, then kv, alignment, tensor infos,
// then the data section. Everything allocated here is owned by g (freed by
// qt_gguf_close) except the scratch arrays freed at fail/done.
static int parse(qt_gguf *g) {
    cursor c = { g->map.data, g->map.size, 0, g->path };
    const char *path = g->path;
    sort_item *items = NULL;
    int64_t *ord = NULL;
    char nb[96], nb2[96];
    if (c.size < 4 || memcmp(c.p, GGUF_MAGIC, 4) != 0) {
        qt_log_error("%s: not a GGUF file (bad magic)", path);
        return QT_ERR;
    }
    c.pos = 4;
    uint32_t ver;
    if (cur_u32(&c, &ver, "version")) return QT_ERR;
    if ((ver & 0xffff) == 0 && (ver >> 16) != 0) {
        // 0x03000000 etc.: the version of a big-endian file read little-endian
        qt_log_error("%s: big-endian GGUF file (version bytes 0x%08x) is not supported", path, ver);
        return QT_ERR;
    }
    if (ver != 2 && ver != 3) {
        qt_log_error("%s: unsupported GGUF version %u (qtune reads versions 2 and 3)", path, ver);
        return QT_ERR;
    }
    g->version = ver;
    uint64_t n_tensors, n_kv;
    if (cur_u64(&c, &n_tensors, "tensor count") || cur_u64(&c, &n_kv, "metadata kv count")) return QT_ERR;
    if (n_kv > cur_left(&c) / GGUF_MIN_KV_BYTES) {
        qt_log_error("%s: metadata kv count %llu is too large for the %zu bytes left in the file",
                     path, (unsigned long long)n_kv, cur_left(&c));
        return QT_ERR;
    }
    if (n_tensors > cur_left(&c) / GGUF_MIN_TENSOR_INFO_BYTES) {
        qt_log_error("%s: tensor count %llu is too large for the %zu bytes left in the file",
                     path, (unsigned long long)n_tensors, cur_left(&c));
        return QT_ERR;
    }

    // metadata
    int64_t cap = 0;
    for (uint64_t i = 0; i < n_kv; i++) {
        grow((void **)&g->kv, &cap, (int64_t)i, (int64_t)n_kv, sizeof(*g->kv));
        g->n_kv = (int64_t)i + 1;   // counts a partial kv too, so close frees its strings
        if (read_kv(&c, &g->kv[i])) return QT_ERR;
    }
    g->kv_cstr = qt_calloc((size_t)g->n_kv, sizeof(*g->kv_cstr));
    g->kv_sorted = qt_calloc((size_t)g->n_kv, sizeof(*g->kv_sorted));
    items = qt_malloc((size_t)(g->n_kv + 1) * sizeof(*items));
    for (int64_t i = 0; i < g->n_kv; i++) items[i] = (sort_item){ g->kv[i].key, 0, i };
    int64_t dup = sort_indices(items, g->n_kv, g->kv_sorted, sort_by_str);
    if (dup >= 0) {
        qt_log_error("%s: duplicate key '%s'", path, str_show(g->kv[dup].key, nb, sizeof(nb)));
        goto fail;
    }
    for (int64_t i = 0; i < g->n_kv; i++)
        if (g->kv[i].type == QT_GGUF_STRING) g->kv_cstr[i] = str_dup_n(g->kv[i].v.str);

    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    const qt_gguf_kv *al = qt_gguf_find_kv(g, "general.alignment");
    if (al) {
        if (al->type != QT_GGUF_UINT32) {
            qt_log_error("%s: general.alignment has type %s, expected uint32", path, qt_gguf_vtype_name(al->type));
            goto fail;
        }
        uint64_t a = al->v.u64;
        if (a == 0 || (a & (a - 1)) != 0) {
            qt_log_error("%s: bad alignment: general.alignment = %llu is not a non-zero power of two",
                         path, (unsigned long long)a);
            goto fail;
        }
        g->alignment = (size_t)a;
    }

    // tensor infos
    cap = 0;
    for (uint64_t i = 0; i < n_tensors; i++) {
        grow((void **)&g->tensors, &cap, (int64_t)i, (int64_t)n_tensors, sizeof(*g->tensors));
        if (read_tensor_info(&c, g, &g->tensors[i])) goto fail;
    }
    g->n_tensors = (int64_t)n_tensors;
    g->t_sorted = qt_calloc((size_t)g->n_tensors, sizeof(*g->t_sorted));
    qt_free(items);
    items = qt_malloc((size_t)(g->n_tensors + 1) * sizeof(*items));
    for (int64_t i = 0; i < g->n_tensors; i++) items[i] = (sort_item){ g->tensors[i].name, g->tensors[i].offset, i };
    dup = sort_indices(items, g->n_tensors, g->t_sorted, sort_by_str);
    if (dup >= 0) {
        qt_log_error("%s: duplicate tensor name '%s'", path, str_show(g->tensors[dup].name, nb, sizeof(nb)));
        goto fail;
    }

    // The data section starts at the next multiple of the alignment. A file
    // without tensors may end before that padding.
    uint64_t data_off = align_up(c.pos, g->alignment);
    g->data_offset = (size_t)data_off;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        qt_gguf_tensor *t = &g->tensors[i];
        uint64_t room = data_off <= c.size ? c.size - data_off : 0;
        if (data_off > c.size || t->offset > room || t->nbytes > room - t->offset) {
            qt_log_error("%s: tensor '%s': data [offset %llu, %zu bytes] extends past end of file "
                         "(size %zu, data section at %llu): truncated file?",
                         path, str_show(t->name, nb, sizeof(nb)), (unsigned long long)t->offset,
                         t->nbytes, c.size, (unsigned long long)data_off);
            goto fail;
        }
        t->data = c.p + data_off + t->offset;
    }
    // No two tensors share bytes. Sorted by offset, a non-empty tensor overlaps
    // an earlier one iff it starts before the furthest end so far; without
    // overlap each next tensor reaches further. Empty tensors own no bytes.
    ord = qt_malloc((size_t)(g->n_tensors + 1) * sizeof(int64_t));
    sort_indices(items, g->n_tensors, ord, sort_by_off);
    const qt_gguf_tensor *a = NULL;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        const qt_gguf_tensor *b = &g->tensors[ord[i]];
        if (b->nbytes == 0) continue;
        if (a && a->offset + a->nbytes > b->offset) {
            qt_log_error("%s: tensors '%s' and '%s' overlap in the data section", path,
                         str_show(a->name, nb, sizeof(nb)), str_show(b->name, nb2, sizeof(nb2)));
            goto fail;
        }
        a = b;
    }
    qt_free(ord);
    qt_free(items);
    return QT_OK;
fail:
    qt_free(ord);
    qt_free(items);
    return QT_ERR;
}

qt_gguf *qt_gguf_open(const char *path) {
    qt_gguf *g = qt_calloc(1, sizeof(*g));
    g->path = qt_strdup(path);
    if (qt_mmap_open(&g->map, path) != QT_OK) goto fail;
    if (parse(g) != QT_OK) goto fail;
    return g;
fail:
    qt_gguf_close(g);
    return NULL;
}

void qt_gguf_close(qt_gguf *g) {
    if (!g) return;
    for (int64_t i = 0; i < g->n_kv; i++) {
        if (g->kv[i].type == QT_GGUF_ARRAY) qt_free((void *)g->kv[i].v.arr.strs);
        if (g->kv_cstr) qt_free(g->kv_cstr[i]);
    }
    qt_free(g->kv);
    qt_free(g->kv_cstr);
    qt_free(g->kv_sorted);
    qt_free(g->tensors);
    qt_free(g->t_sorted);
    qt_mmap_close(&g->map);
    qt_free(g->path);
    qt_free(g);
}

uint32_t qt_gguf_version(const qt_gguf *g) { return g->version; }
size_t qt_gguf_alignment(const qt_gguf *g) { return g->alignment; }
const char *qt_gguf_path(const qt_gguf *g) { return g->path; }
int64_t qt_gguf_n_kv(const qt_gguf *g) { return g->n_kv; }
int64_t qt_gguf_n_tensors(const qt_gguf *g) { return g->n_tensors; }
size_t qt_gguf_data_offset(const qt_gguf *g) { return g->data_offset; }

const qt_gguf_kv *qt_gguf_kv_at(const qt_gguf *g, int64_t i) {
    QT_ASSERT(i >= 0 && i < g->n_kv);
    return &g->kv[i];
}
const qt_gguf_tensor *qt_gguf_tensor_at(const qt_gguf *g, int64_t i) {
    QT_ASSERT(i >= 0 && i < g->n_tensors);
    return &g->tensors[i];
}

static int64_t find_kv_index(const qt_gguf *g, const char *key) {
    int64_t lo = 0, hi = g->n_kv;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int r = str_cmp_c(g->kv[g->kv_sorted[mid]].key, key);
        if (r == 0) return g->kv_sorted[mid];
        if (r < 0) lo = mid + 1; else hi = mid;
    }
    return -1;
}

const qt_gguf_kv *qt_gguf_find_kv(const qt_gguf *g, const char *key) {
    int64_t i = find_kv_index(g, key);
    return i < 0 ? NULL : &g->kv[i];
}

const qt_gguf_tensor *qt_gguf_find_tensor(const qt_gguf *g, const char *name) {
    int64_t lo = 0, hi = g->n_tensors;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int r = str_cmp_c(g->tensors[g->t_sorted[mid]].name, name);
        if (r == 0) return &g->tensors[g->t_sorted[mid]];
        if (r < 0) lo = mid + 1; else hi = mid;
    }
    return NULL;
}

// ---- typed getters ----

// Finds key; returns 1 found, 0 absent-and-fine, QT_ERR absent-and-required.
static int getter_find(const qt_gguf *g, const char *key, bool required, const qt_gguf_kv **kv) {
    *kv = qt_gguf_find_kv(g, key);
    if (*kv) return 1;
    if (required) {
        qt_log_error("%s: missing key %s", g->path, key);
        return QT_ERR;
    }
    return 0;
}

static int type_error(const qt_gguf *g, const char *key, const char *expected, const qt_gguf_kv *kv) {
    if (kv->type == QT_GGUF_ARRAY)
        qt_log_error("%s: key %s: expected %s, found array of %s", g->path, key, expected,
                     qt_gguf_vtype_name(kv->v.arr.type));
    else
        qt_log_error("%s: key %s: expected %s, found %s", g->path, key, expected, qt_gguf_vtype_name(kv->type));
    return QT_ERR;
}

// Integer value of kv as a signed 128-bit-free pair: fits in [lo, hi]?
static int get_int_checked(const qt_gguf *g, const char *key, const qt_gguf_kv *kv, const char *expected,
                           int64_t lo, uint64_t hi, int64_t *out_i, uint64_t *out_u) {
    if (!vtype_is_int(kv->type)) return type_error(g, key, expected, kv);
    if (vtype_is_signed(kv->type)) {
        int64_t v = kv->v.i64;
        if (v < lo || (v >= 0 && (uint64_t)v > hi)) goto range;
        *out_i = v;
        *out_u = (uint64_t)v;
    } else {
        uint64_t v = kv->v.u64;
        if (v > hi) goto range;
        *out_u = v;
        *out_i = (int64_t)v;
    }
    return QT_OK;
range:
    if (vtype_is_signed(kv->type))
        qt_log_error("%s: key %s: value %lld does not fit in %s", g->path, key, (long long)kv->v.i64, expected);
    else
        qt_log_error("%s: key %s: value %llu does not fit in %s", g->path, key, (unsigned long long)kv->v.u64, expected);
    return QT_ERR;
}

int qt_gguf_get_u32(const qt_gguf *g, const char *key, uint32_t *out, bool required) {
    const qt_gguf_kv *kv;
    int r = getter_find(g, key, required, &kv);
    if (r <= 0) return r;
    int64_t i; uint64_t u;
    if (get_int_checked(g, key, kv, "uint32", 0, UINT32_MAX, &i, &u)) return QT_ERR;
    *out = (uint32_t)u;
    return QT_OK;
}

int qt_gguf_get_i64(const qt_gguf *g, const char *key, int64_t *out, bool required) {
    const qt_gguf_kv *kv;
    int r = getter_find(g, key, required, &kv);
    if (r <= 0) return r;
    int64_t i; uint64_t u;
    if (get_int_checked(g, key, kv, "int64", INT64_MIN, INT64_MAX, &i, &u)) return QT_ERR;
    *out = i;
    return QT_OK;
}

int qt_gguf_get_f32(const qt_gguf *g, const char *key, float *out, bool required) {
    const qt_gguf_kv *kv;
    int r = getter_find(g, key, required, &kv);
    if (r <= 0) return r;
    if (kv->type == QT_GGUF_FLOAT32 || kv->type == QT_GGUF_FLOAT64) *out = (float)kv->v.f64;
    else if (vtype_is_int(kv->type))
        *out = vtype_is_signed(kv->type) ? (float)kv->v.i64 : (float)kv->v.u64;
    else return type_error(g, key, "float32", kv);
    return QT_OK;
}

int qt_gguf_get_bool(const qt_gguf *g, const char *key, bool *out, bool required) {
    const qt_gguf_kv *kv;
    int r = getter_find(g, key, required, &kv);
    if (r <= 0) return r;
    if (kv->type != QT_GGUF_BOOL) return type_error(g, key, "bool", kv);
    *out = kv->v.b;
    return QT_OK;
}

int qt_gguf_get_str(const qt_gguf *g, const char *key, const char **out, bool required) {
    int64_t i = find_kv_index(g, key);
    if (i < 0) {
        if (!required) return QT_OK;
        qt_log_error("%s: missing key %s", g->path, key);
        return QT_ERR;
    }
    if (g->kv[i].type != QT_GGUF_STRING) return type_error(g, key, "string", &g->kv[i]);
    *out = g->kv_cstr[i];
    return QT_OK;
}

int qt_gguf_get_arr(const qt_gguf *g, const char *key, int elem_type, const qt_gguf_kv **out, bool required) {
    const qt_gguf_kv *kv;
    int r = getter_find(g, key, required, &kv);
    if (r <= 0) return r;
    if (kv->type != QT_GGUF_ARRAY) {
        char exp[40];
        snprintf(exp, sizeof(exp), "array of %s", elem_type < 0 ? "any" : qt_gguf_vtype_name(elem_type));
        return type_error(g, key, exp, kv);
    }
    if (elem_type >= 0 && (int)kv->v.arr.type != elem_type) {
        qt_log_error("%s: key %s: expected array of %s, found array of %s", g->path, key,
                     qt_gguf_vtype_name(elem_type), qt_gguf_vtype_name(kv->v.arr.type));
        return QT_ERR;
    }
    *out = kv;
    return QT_OK;
}

// ---- writer ----

typedef struct {
    char *key;
    qt_gguf_vtype type;
    uint8_t scalar[8];      // little-endian bytes of a scalar value
    char *str;              // STRING
    qt_gguf_vtype arr_type; // ARRAY
    uint64_t arr_n;
    uint8_t *arr_data;      // scalar elements, little-endian, copied
    char **arr_strs;        // STRING elements, copied
} wkv;

typedef struct {
    char *name;
    qt_type type;
    int n_dims;
    int64_t ne[QT_GGUF_MAX_DIMS];
    size_t nbytes;
    uint64_t offset;
    const void *data;
    qt_gguf_fill_fn fill;
    void *fill_ctx;
} wtensor;

struct qt_gguf_writer {
    wkv *kv;
    int64_t n_kv, cap_kv;
    wtensor *t;
    int64_t n_t, cap_t;
};

qt_gguf_writer *qt_gguf_writer_init(void) { return qt_calloc(1, sizeof(qt_gguf_writer)); }

static void wkv_clear(wkv *e) {
    qt_free(e->str);
    qt_free(e->arr_data);
    if (e->arr_strs)
        for (uint64_t i = 0; i < e->arr_n; i++) qt_free(e->arr_strs[i]);
    qt_free(e->arr_strs);
    e->str = NULL; e->arr_data = NULL; e->arr_strs = NULL; e->arr_n = 0;
}

void qt_gguf_writer_free(qt_gguf_writer *w) {
    if (!w) return;
    for (int64_t i = 0; i < w->n_kv; i++) { wkv_clear(&w->kv[i]); qt_free(w->kv[i].key); }
    for (int64_t i = 0; i < w->n_t; i++) qt_free(w->t[i].name);
    qt_free(w->kv);
    qt_free(w->t);
    qt_free(w);
}

// Returns the entry for key, cleared (an existing key is replaced in place,
// keeping its position, as gguf_set_* does in llama.cpp).
static wkv *wkv_slot(qt_gguf_writer *w, const char *key, qt_gguf_vtype type) {
    for (int64_t i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kv[i].key, key) == 0) {
            wkv_clear(&w->kv[i]);
            w->kv[i].type = type;
            return &w->kv[i];
        }
    }
    if (w->n_kv == w->cap_kv) {
        w->cap_kv = w->cap_kv ? 2 * w->cap_kv : 16;
        w->kv = qt_realloc(w->kv, (size_t)w->cap_kv * sizeof(*w->kv));
    }
    wkv *e = &w->kv[w->n_kv++];
    memset(e, 0, sizeof(*e));
    e->key = qt_strdup(key);
    e->type = type;
    return e;
}

static void put_le(uint8_t *dst, uint64_t v, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = (uint8_t)(v >> (8 * i));
}

void qt_gguf_set_val(qt_gguf_writer *w, const char *key, qt_gguf_vtype type, const void *val) {
    QT_ASSERT(type >= 0 && type < QT_GGUF_TYPE_COUNT && type != QT_GGUF_STRING && type != QT_GGUF_ARRAY);
    wkv *e = wkv_slot(w, key, type);
    size_t n = vtype_size[type];
    uint64_t v = 0;
    switch (n) {
    case 1: { uint8_t x; memcpy(&x, val, 1); v = x; break; }
    case 2: { uint16_t x; memcpy(&x, val, 2); v = x; break; }
    case 4: { uint32_t x; memcpy(&x, val, 4); v = x; break; }
    case 8: { uint64_t x; memcpy(&x, val, 8); v = x; break; }
    }
    if (type == QT_GGUF_BOOL) v = v != 0;
    put_le(e->scalar, v, n);
}

void qt_gguf_set_u32(qt_gguf_writer *w, const char *key, uint32_t v) { qt_gguf_set_val(w, key, QT_GGUF_UINT32, &v); }
void qt_gguf_set_i32(qt_gguf_writer *w, const char *key, int32_t v) { qt_gguf_set_val(w, key, QT_GGUF_INT32, &v); }
void qt_gguf_set_u64(qt_gguf_writer *w, const char *key, uint64_t v) { qt_gguf_set_val(w, key, QT_GGUF_UINT64, &v); }
void qt_gguf_set_i64(qt_gguf_writer *w, const char *key, int64_t v) { qt_gguf_set_val(w, key, QT_GGUF_INT64, &v); }
void qt_gguf_set_f32(qt_gguf_writer *w, const char *key, float v) { qt_gguf_set_val(w, key, QT_GGUF_FLOAT32, &v); }
void qt_gguf_set_f64(qt_gguf_writer *w, const char *key, double v) { qt_gguf_set_val(w, key, QT_GGUF_FLOAT64, &v); }
void qt_gguf_set_bool(qt_gguf_writer *w, const char *key, bool v) {
    uint8_t b = v;
    qt_gguf_set_val(w, key, QT_GGUF_BOOL, &b);
}

void qt_gguf_set_str(qt_gguf_writer *w, const char *key, const char *v) {
    wkv *e = wkv_slot(w, key, QT_GGUF_STRING);
    e->str = qt_strdup(v);
}

void qt_gguf_set_arr(qt_gguf_writer *w, const char *key, qt_gguf_vtype elem_type, const void *data, uint64_t n) {
    QT_ASSERT(elem_type >= 0 && elem_type < QT_GGUF_TYPE_COUNT);
    QT_ASSERT(elem_type != QT_GGUF_STRING && elem_type != QT_GGUF_ARRAY);
    size_t es = vtype_size[elem_type];
    uint8_t *copy = qt_malloc((size_t)n * es);
    // host order in, little-endian out (the same bytes on every supported host)
    for (uint64_t i = 0; i < n; i++) {
        const uint8_t *src = (const uint8_t *)data + i * es;
        uint64_t v = 0;
        switch (es) {
        case 1: v = src[0]; break;
        case 2: { uint16_t x; memcpy(&x, src, 2); v = x; break; }
        case 4: { uint32_t x; memcpy(&x, src, 4); v = x; break; }
        case 8: { uint64_t x; memcpy(&x, src, 8); v = x; break; }
        }
        put_le(copy + i * es, v, es);
    }
    wkv *e = wkv_slot(w, key, QT_GGUF_ARRAY);
    e->arr_type = elem_type;
    e->arr_n = n;
    e->arr_data = copy;
}

void qt_gguf_set_arr_str(qt_gguf_writer *w, const char *key, const char *const *strs, uint64_t n) {
    char **copy = qt_malloc((size_t)(n ? n : 1) * sizeof(char *));
    for (uint64_t i = 0; i < n; i++) copy[i] = qt_strdup(strs[i]);
    wkv *e = wkv_slot(w, key, QT_GGUF_ARRAY);
    e->arr_type = QT_GGUF_STRING;
    e->arr_n = n;
    e->arr_strs = copy;
}


static bool writer_has_key(const qt_gguf_writer *w, const char *key) {
    for (int64_t i = 0; i < w->n_kv; i++)
        if (strcmp(w->kv[i].key, key) == 0) return true;
    return false;
}

// Strings from a file may contain NUL bytes; the writer keeps C strings, so such
// strings are cut at the first NUL (GGUF strings in practice never hold NULs).
void qt_gguf_copy_kv(qt_gguf_writer *w, const qt_gguf *src) {
    for (int64_t i = 0; i < src->n_kv; i++) {
        const qt_gguf_kv *kv = &src->kv[i];
        char *key = str_dup_n(kv->key);
        // the writer picks its own alignment; copying the source's would lie
        if (writer_has_key(w, key) || strcmp(key, "general.alignment") == 0) { qt_free(key); continue; }
        if (kv->type == QT_GGUF_STRING) {
            qt_gguf_set_str(w, key, src->kv_cstr[i]);
        } else if (kv->type == QT_GGUF_ARRAY && kv->v.arr.type == QT_GGUF_STRING) {
            uint64_t n = kv->v.arr.n;
            char **copy = qt_malloc((size_t)(n ? n : 1) * sizeof(char *));
            for (uint64_t j = 0; j < n; j++) copy[j] = str_dup_n(kv->v.arr.strs[j]);
            wkv *e = wkv_slot(w, key, QT_GGUF_ARRAY);
            e->arr_type = QT_GGUF_STRING;
            e->arr_n = n;
            e->arr_strs = copy;
        } else if (kv->type == QT_GGUF_ARRAY) {
            size_t nb = (size_t)kv->v.arr.n * vtype_size[kv->v.arr.type];
            wkv *e = wkv_slot(w, key, QT_GGUF_ARRAY);
            e->arr_type = kv->v.arr.type;
            e->arr_n = kv->v.arr.n;
            e->arr_data = qt_malloc(nb);
            if (nb) memcpy(e->arr_data, kv->v.arr.data, nb);   // already little-endian
        } else {
            wkv *e = wkv_slot(w, key, kv->type);
            size_t n = vtype_size[kv->type];
            uint64_t v;
            if (kv->type == QT_GGUF_FLOAT32) { float f = (float)kv->v.f64; uint32_t u; memcpy(&u, &f, 4); v = u; }
            else if (kv->type == QT_GGUF_FLOAT64) memcpy(&v, &kv->v.f64, 8);
            else if (kv->type == QT_GGUF_BOOL) v = kv->v.b;
            else if (vtype_is_signed(kv->type)) v = (uint64_t)kv->v.i64;
            else v = kv->v.u64;
            put_le(e->scalar, v, n);
        }
        qt_free(key);
    }
}

static wtensor *add_tensor_common(qt_gguf_writer *w, const char *name, qt_type type, int n_dims, const int64_t *ne) {
    QT_ASSERT(n_dims >= 1 && n_dims <= QT_GGUF_MAX_DIMS);
    const qt_type_traits *tr = qt_type_traits_get(type);
    QT_ASSERT(tr && tr->blck_size > 0 && tr->type_size > 0 && type < QT_TYPE_FIRST_PRIVATE);   // no qtune-only types in files
    for (int64_t i = 0; i < w->n_t; i++) QT_ASSERT(strcmp(w->t[i].name, name) != 0);
    if (w->n_t == w->cap_t) {
        w->cap_t = w->cap_t ? 2 * w->cap_t : 16;
        w->t = qt_realloc(w->t, (size_t)w->cap_t * sizeof(*w->t));
    }
    wtensor *t = &w->t[w->n_t++];
    memset(t, 0, sizeof(*t));
    t->name = qt_strdup(name);
    t->type = type;
    t->n_dims = n_dims;
    for (int d = 0; d < QT_GGUF_MAX_DIMS; d++) t->ne[d] = d < n_dims ? ne[d] : 1;
    for (int d = 0; d < n_dims; d++) QT_ASSERT(ne[d] >= 0);
    QT_ASSERT(t->ne[0] % tr->blck_size == 0);
    t->nbytes = qt_row_size(type, t->ne[0]) * (size_t)(t->ne[1] * t->ne[2] * t->ne[3]);
    return t;
}

void qt_gguf_add_tensor(qt_gguf_writer *w, const char *name, qt_type type, int n_dims,
                        const int64_t *ne, const void *data) {
    wtensor *t = add_tensor_common(w, name, type, n_dims, ne);
    QT_ASSERT(data || t->nbytes == 0);
    t->data = data;
}

void qt_gguf_add_tensor_lazy(qt_gguf_writer *w, const char *name, qt_type type, int n_dims,
                             const int64_t *ne, qt_gguf_fill_fn fill, void *ctx) {
    QT_ASSERT(fill);
    wtensor *t = add_tensor_common(w, name, type, n_dims, ne);
    t->fill = fill;
    t->fill_ctx = ctx;
}

typedef struct { uint8_t *p; size_t n, cap; } buf;

static void buf_put(buf *b, const void *data, size_t n) {
    if (b->n + n > b->cap) {
        while (b->n + n > b->cap) b->cap = b->cap ? 2 * b->cap : 4096;
        b->p = qt_realloc(b->p, b->cap);
    }
    if (n) memcpy(b->p + b->n, data, n);
    b->n += n;
}
static void buf_u32(buf *b, uint32_t v) { uint8_t t[4]; put_le(t, v, 4); buf_put(b, t, 4); }
static void buf_u64(buf *b, uint64_t v) { uint8_t t[8]; put_le(t, v, 8); buf_put(b, t, 8); }
static void buf_str(buf *b, const char *s) { size_t n = strlen(s); buf_u64(b, n); buf_put(b, s, n); }

int qt_gguf_write(qt_gguf_writer *w, const char *path) {
    size_t alignment = GGUF_DEFAULT_ALIGNMENT;
    for (int64_t i = 0; i < w->n_kv; i++) {
        const wkv *e = &w->kv[i];
        if (strcmp(e->key, "general.alignment") == 0) {
            QT_ASSERT(e->type == QT_GGUF_UINT32);
            alignment = rd_u32(e->scalar);
            QT_ASSERT(alignment > 0 && (alignment & (alignment - 1)) == 0);
        }
    }
    // header, kv, tensor infos
    buf b = { 0 };
    buf_put(&b, GGUF_MAGIC, 4);
    buf_u32(&b, GGUF_WRITE_VERSION);
    buf_u64(&b, (uint64_t)w->n_t);
    buf_u64(&b, (uint64_t)w->n_kv);
    for (int64_t i = 0; i < w->n_kv; i++) {
        const wkv *e = &w->kv[i];
        buf_str(&b, e->key);
        buf_u32(&b, e->type);
        if (e->type == QT_GGUF_STRING) {
            buf_str(&b, e->str);
        } else if (e->type == QT_GGUF_ARRAY) {
            buf_u32(&b, e->arr_type);
            buf_u64(&b, e->arr_n);
            if (e->arr_type == QT_GGUF_STRING)
                for (uint64_t j = 0; j < e->arr_n; j++) buf_str(&b, e->arr_strs[j]);
            else
                buf_put(&b, e->arr_data, (size_t)e->arr_n * vtype_size[e->arr_type]);
        } else {
            buf_put(&b, e->scalar, vtype_size[e->type]);
        }
    }
    uint64_t off = 0;
    size_t max_lazy = 0;
    for (int64_t i = 0; i < w->n_t; i++) {
        wtensor *t = &w->t[i];
        t->offset = off;
        off = align_up(off + t->nbytes, alignment);
        if (t->fill && t->nbytes > max_lazy) max_lazy = t->nbytes;
        buf_str(&b, t->name);
        buf_u32(&b, (uint32_t)t->n_dims);
        for (int d = 0; d < t->n_dims; d++) buf_u64(&b, (uint64_t)t->ne[d]);
        buf_u32(&b, (uint32_t)t->type);
        buf_u64(&b, t->offset);
    }
    static const uint8_t zeros[256];   // alignment padding source (alignment may exceed it: loop)
    size_t pad = (size_t)(align_up(b.n, alignment) - b.n);

    qt_atomic_file f;
    uint8_t *scratch = NULL;
    if (qt_atomic_open(&f, path) != QT_OK) { qt_free(b.p); return QT_ERR; }
    qt_atomic_write(&f, b.p, b.n);
    for (; pad > 0; pad -= QT_MIN(pad, sizeof(zeros))) qt_atomic_write(&f, zeros, QT_MIN(pad, sizeof(zeros)));
    qt_free(b.p);
    if (max_lazy) {
        scratch = qt_alloc_big(max_lazy, "gguf writer tensor buffer");
        if (!scratch) goto fail;
    }
    for (int64_t i = 0; i < w->n_t; i++) {
        wtensor *t = &w->t[i];
        const void *src = t->data;
        if (t->fill) {
            if (t->fill(t->fill_ctx, i, scratch, t->nbytes) != QT_OK) {
                qt_log_error("%s: producing tensor '%s' failed", path, t->name);
                goto fail;
            }
            src = scratch;
        }
        if (qt_atomic_write(&f, src, t->nbytes) != QT_OK) goto fail;
        // every tensor is padded, the last one too (as llama.cpp writes it)
        pad = (size_t)(align_up(t->nbytes, alignment) - t->nbytes);
        for (; pad > 0; pad -= QT_MIN(pad, sizeof(zeros))) qt_atomic_write(&f, zeros, QT_MIN(pad, sizeof(zeros)));
    }
    qt_free_big(scratch, max_lazy);
    return qt_atomic_commit(&f);
fail:
    qt_free_big(scratch, max_lazy);
    qt_atomic_abort(&f);
    return QT_ERR;
}
