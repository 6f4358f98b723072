// gguf.h: GGUF reader (versions 2 and 3) and writer.
// Format: ggml/docs/gguf.md and ggml/src/gguf.cpp (llama.cpp). The reader maps
// the file and returns zero-copy views: strings, arrays and tensor data point
// into the mapping and are valid until qt_gguf_close. Every count, length and
// offset is checked against the bytes that remain before it is used; a bad file
// gives QT_ERR/NULL with one error naming the file and the problem.
#ifndef QT_GGUF_H
#define QT_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "quant/types.h"

typedef enum {
    QT_GGUF_UINT8 = 0, QT_GGUF_INT8 = 1, QT_GGUF_UINT16 = 2, QT_GGUF_INT16 = 3,
    QT_GGUF_UINT32 = 4, QT_GGUF_INT32 = 5, QT_GGUF_FLOAT32 = 6, QT_GGUF_BOOL = 7,
    QT_GGUF_STRING = 8, QT_GGUF_ARRAY = 9, QT_GGUF_UINT64 = 10, QT_GGUF_INT64 = 11,
    QT_GGUF_FLOAT64 = 12, QT_GGUF_TYPE_COUNT = 13,
} qt_gguf_vtype;

typedef struct {
    const char *data;   // NOT NUL-terminated; points into the mapping
    uint64_t len;
} qt_gguf_str;

typedef struct {
    qt_gguf_str key;
    qt_gguf_vtype type;
    // scalar value by type: UINT8/16/32/64 in u64, INT8/16/32/64 in i64
    // (sign-extended), FLOAT32/FLOAT64 in f64, BOOL in b, STRING in str;
    // or the array description
    union {
        uint64_t u64; int64_t i64; double f64; bool b;
        qt_gguf_str str;
        struct {
            qt_gguf_vtype type;  // element type (never ARRAY: nested arrays are rejected)
            uint64_t n;
            const uint8_t *data; // raw elements; for STRING arrays, consecutive (u64 len, bytes)
            const qt_gguf_str *strs;  // STRING arrays only: n decoded strings (owned by the ctx)
        } arr;
    } v;
} qt_gguf_kv;

#define QT_GGUF_MAX_DIMS 4
typedef struct {
    qt_gguf_str name;
    qt_type type;
    int n_dims;
    int64_t ne[QT_GGUF_MAX_DIMS];  // ne[0] innermost (row length); unused dims 1
    uint64_t offset;               // relative to the data section
    size_t nbytes;
    const void *data;              // into the mapping
} qt_gguf_tensor;

typedef struct qt_gguf qt_gguf;

qt_gguf *qt_gguf_open(const char *path);       // NULL on error (logged)
void qt_gguf_close(qt_gguf *g);                // NULL is a no-op
uint32_t qt_gguf_version(const qt_gguf *g);
size_t qt_gguf_alignment(const qt_gguf *g);
const char *qt_gguf_path(const qt_gguf *g);
int64_t qt_gguf_n_kv(const qt_gguf *g);
const qt_gguf_kv *qt_gguf_kv_at(const qt_gguf *g, int64_t i);
const qt_gguf_kv *qt_gguf_find_kv(const qt_gguf *g, const char *key);   // NULL if absent
int64_t qt_gguf_n_tensors(const qt_gguf *g);
const qt_gguf_tensor *qt_gguf_tensor_at(const qt_gguf *g, int64_t i);
const qt_gguf_tensor *qt_gguf_find_tensor(const qt_gguf *g, const char *name);
size_t qt_gguf_data_offset(const qt_gguf *g);   // file offset of the tensor data section

// Typed getters: QT_OK and *out set, or QT_ERR (logged: "<file>: key K: expected
// uint32, found string") when the key is present with an incompatible type.
// A missing key returns QT_OK and leaves *out unchanged when !required, or logs
// "<file>: missing key K" and returns QT_ERR when required. Integer getters
// accept any integer type whose value fits.
int qt_gguf_get_u32(const qt_gguf *g, const char *key, uint32_t *out, bool required);
int qt_gguf_get_i64(const qt_gguf *g, const char *key, int64_t *out, bool required);
int qt_gguf_get_f32(const qt_gguf *g, const char *key, float *out, bool required);
int qt_gguf_get_bool(const qt_gguf *g, const char *key, bool *out, bool required);
// String: *out is a NUL-terminated copy owned by the ctx (valid until close).
int qt_gguf_get_str(const qt_gguf *g, const char *key, const char **out, bool required);
// Array: *kv is the array kv (type checked: element type must be elem_type,
// or any if elem_type < 0).
int qt_gguf_get_arr(const qt_gguf *g, const char *key, int elem_type, const qt_gguf_kv **kv, bool required);

const char *qt_gguf_vtype_name(int t);

// ---- writer: build in memory, then write atomically (temp file + rename) ----
typedef struct qt_gguf_writer qt_gguf_writer;
qt_gguf_writer *qt_gguf_writer_init(void);
void qt_gguf_writer_free(qt_gguf_writer *w);
void qt_gguf_set_u32(qt_gguf_writer *w, const char *key, uint32_t v);
void qt_gguf_set_i32(qt_gguf_writer *w, const char *key, int32_t v);
void qt_gguf_set_u64(qt_gguf_writer *w, const char *key, uint64_t v);
void qt_gguf_set_f32(qt_gguf_writer *w, const char *key, float v);
void qt_gguf_set_bool(qt_gguf_writer *w, const char *key, bool v);
void qt_gguf_set_i64(qt_gguf_writer *w, const char *key, int64_t v);
void qt_gguf_set_f64(qt_gguf_writer *w, const char *key, double v);
// Any scalar type (not STRING/ARRAY): val points to a value of that type in host
// order (uint8_t for BOOL). Setting an existing key replaces it in place.
void qt_gguf_set_val(qt_gguf_writer *w, const char *key, qt_gguf_vtype type, const void *val);
void qt_gguf_set_str(qt_gguf_writer *w, const char *key, const char *v);
// Array of scalars (elem_type not STRING/ARRAY), data copied.
void qt_gguf_set_arr(qt_gguf_writer *w, const char *key, qt_gguf_vtype elem_type, const void *data, uint64_t n);
void qt_gguf_set_arr_str(qt_gguf_writer *w, const char *key, const char *const *strs, uint64_t n);
// Copy every kv of an opened file (skipping keys already set, and
// general.alignment: the writer's own alignment applies).
void qt_gguf_copy_kv(qt_gguf_writer *w, const qt_gguf *src);
// Add a tensor; data is borrowed and must stay valid until write. ne[0] innermost.
void qt_gguf_add_tensor(qt_gguf_writer *w, const char *name, qt_type type, int n_dims,
                        const int64_t *ne, const void *data);
// Tensor data produced on the fly while writing (for models larger than memory):
// fill(ctx, index_of_tensor, dst, nbytes) writes the tensor bytes into dst.
typedef int (*qt_gguf_fill_fn)(void *ctx, int64_t tensor_index, void *dst, size_t nbytes);
void qt_gguf_add_tensor_lazy(qt_gguf_writer *w, const char *name, qt_type type, int n_dims,
                             const int64_t *ne, qt_gguf_fill_fn fill, void *ctx);
// Version 3, alignment 32 (or a general.alignment u32 set on the writer), each
// tensor zero-padded to the alignment as llama.cpp writes it. Lazy tensors are
// filled one at a time into one reused buffer. QT_ERR (logged) on I/O or fill
// failure, and then no file is left behind.
int qt_gguf_write(qt_gguf_writer *w, const char *path);

#endif
