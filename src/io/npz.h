// npz.h: NumPy .npz archives (a ZIP of .npy arrays), as numpy.savez and
// mlx.core.savez write them, for mlx-examples' lora.py adapters
// (adapters.npz). Formats: numpy's "NPY format" spec (magic "\x93NUMPY",
// version, little-endian header length, a Python-dict header with descr,
// fortran_order, shape) and PKWARE's APPNOTE (local headers, central
// directory, ZIP64 extra fields).
// Does: stored (uncompressed) members, '<f4' / '<f2' / '<f8' C-order arrays.
// Does not: deflate (numpy.savez_compressed; the error says so), pickled
// objects, Fortran order, big-endian data.
#ifndef QT_NPZ_H
#define QT_NPZ_H

#include <stddef.h>
#include <stdint.h>

#include "quant/types.h"

typedef struct {
    char *name;          // the member name without ".npy"; owned by the archive
    qt_type type;        // F32, F16 (F64 arrays are converted to F32 on open)
    int n_dims;
    int64_t shape[4];
    const void *data;    // valid until qt_npz_close
    size_t nbytes;
} qt_npz_array;

typedef struct qt_npz qt_npz;

// Reads every member of the archive at path. NULL on error, logged as
// "<path>: <member>: what is wrong".
qt_npz *qt_npz_open(const char *path);
void qt_npz_close(qt_npz *z);   // NULL is a no-op
int qt_npz_n(const qt_npz *z);
const qt_npz_array *qt_npz_at(const qt_npz *z, int i);

// Writer: F32 arrays (data borrowed until qt_npz_write), stored members
// "<name>.npy", written atomically. QT_OK / QT_ERR (logged).
typedef struct qt_npz_writer qt_npz_writer;
qt_npz_writer *qt_npz_writer_init(void);
void qt_npz_writer_free(qt_npz_writer *w);
void qt_npz_writer_add(qt_npz_writer *w, const char *name, int n_dims, const int64_t *shape, const float *data);
int qt_npz_write(qt_npz_writer *w, const char *path);

#endif
