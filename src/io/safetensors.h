// safetensors.h: reader for Hugging Face safetensors files and sharded folders.
// Format: huggingface/safetensors README (u64 header length, JSON header with
// dtype / shape / data_offsets per tensor, optional __metadata__). Zero copy:
// tensor data points into the mapped file. Every offset is checked against the
// file size, the shape against the byte count, and overlaps are rejected.
#ifndef QT_SAFETENSORS_H
#define QT_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "quant/types.h"

typedef struct {
    const char *name;   // owned by the set
    qt_type type;       // F32, F16, BF16 (and I8/I16/I32/I64/F64 for completeness)
    int n_dims;
    int64_t shape[4];   // as in the file: shape[0] outermost (PyTorch order)
    const void *data;
    size_t nbytes;
    int file_index;     // which shard
} qt_st_tensor;

typedef struct qt_st_set qt_st_set;

// Open one .safetensors file, or a model folder: model.safetensors, or the
// shards listed by model.safetensors.index.json. NULL on error (logged).
qt_st_set *qt_st_open(const char *path);
void qt_st_close(qt_st_set *s);
int64_t qt_st_n_tensors(const qt_st_set *s);
const qt_st_tensor *qt_st_tensor_at(const qt_st_set *s, int64_t i);
const qt_st_tensor *qt_st_find(const qt_st_set *s, const char *name);

// ---- writer (adapters, tests): atomic, header padded to 8 bytes ----
typedef struct qt_st_writer qt_st_writer;
qt_st_writer *qt_st_writer_init(void);
void qt_st_writer_free(qt_st_writer *w);
void qt_st_writer_meta(qt_st_writer *w, const char *key, const char *value);  // __metadata__
// shape in PyTorch order; data borrowed until write.
void qt_st_writer_add(qt_st_writer *w, const char *name, qt_type type, int n_dims,
                      const int64_t *shape, const void *data);
int qt_st_write(qt_st_writer *w, const char *path);

#endif
