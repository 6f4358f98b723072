// quant-impl.h: helpers shared by the scalar reference quantizers of src/quant
// only (not a public contract). Follows ggml-quants.c.
#ifndef QT_QUANT_IMPL_H
#define QT_QUANT_IMPL_H

#include <string.h>

// Groups whose largest magnitude is below this are stored as all zero
// (ggml GROUP_MAX_EPS).
#define QT_GROUP_MAX_EPS 1e-15f

// Round to nearest, ties to even, for |x| <= 2^22 - 1: adding 1.5 * 2^23
// leaves the rounded integer in the low mantissa bits (ggml nearest_int).
static inline int qt_nearest_int(float x) {
    float v = x + 12582912.f;
    int i;
    memcpy(&i, &v, sizeof(i));
    return (i & 0x007fffff) - 0x00400000;
}

#endif
