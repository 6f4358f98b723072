// cuda-impl.cuh: what the CUDA source files (cuda-*.cu) share and the C glue
// does not see: the context struct, error checks, scratch buffers, warp and
// block reductions, and the weight readers (one per stored type) that the
// decode, dequantization and embedding kernels are written over.
// The dequantization follows src/quant/quant-ref.c and quant-kquants.c
// operation for operation (products rounded where the C code rounds them,
// __fmul_rn where nvcc would otherwise fuse a multiply-add), so a weight
// dequantized here equals the CPU's bit for bit.
#ifndef QT_CUDA_IMPL_CUH
#define QT_CUDA_IMPL_CUH

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>

#include "backend/cuda-ops.h"

// qt_type ids (quant/types.h numbers them as GGML does; not included here
// because that header is C).
enum {
    T_F32 = 0, T_F16 = 1, T_Q4_0 = 2, T_Q8_0 = 8, T_Q4_K = 12, T_Q6_K = 14, T_BF16 = 30,
};

struct qt_cuda {
    int dev;
    bool fp32;
    char name[256];
    cudaStream_t stream;
    cublasHandle_t blas;
    char err[512];
    size_t used, peak;            // bytes held: qt_cuda_alloc + scratch
    // scratch, grown on demand (cudaFree waits for queued work, so growing is safe)
    void *wbuf; size_t wbuf_n;    // a weight dequantized to bf16 / f32
    void *abuf; size_t abuf_n;    // activations rounded to bf16
    float *fbuf; size_t fbuf_n;   // attention backward: rowsum(dO * O)
    int *ibuf; size_t ibuf_n;     // small host int arrays (tokens, positions, rows, targets)
    // the attention's sequence table, uploaded once per forward (every layer passes the same)
    qt_cuda_seq *seq_dev; int seq_cap;
    qt_cuda_seq *seq_host; int seq_n;
    bool attn_attr_done;          // dynamic shared memory limits raised
};

// Records a failed CUDA call (what, the error, where) and returns -1.
int qt_cu_fail(qt_cuda *c, cudaError_t e, const char *what, const char *file, int line);
int qt_cublas_fail(qt_cuda *c, cublasStatus_t s, const char *what, const char *file, int line);
#define CU_TRY(c, call, what) do { cudaError_t e_ = (call); if (e_ != cudaSuccess) return qt_cu_fail((c), e_, (what), __FILE__, __LINE__); } while (0)
#define CUBLAS_TRY(c, call, what) do { cublasStatus_t s_ = (call); if (s_ != CUBLAS_STATUS_SUCCESS) return qt_cublas_fail((c), s_, (what), __FILE__, __LINE__); } while (0)
// After a kernel launch: the launch's own error, if any.
#define CU_LAUNCHED(c, what) CU_TRY((c), cudaGetLastError(), (what))

// *buf holds at least n bytes (grown, contents lost); NULL with the error set.
void *qt_cu_scratch(qt_cuda *c, void **buf, size_t *cap, size_t n, const char *what);
// n host ints in c->ibuf; NULL with the error set.
int *qt_cu_upload_ints(qt_cuda *c, const int *host, size_t n);

// Grid size for a grid-stride loop over n items with 256 threads.
static inline unsigned qt_cu_blocks(int64_t n) {
    int64_t b = (n + 255) / 256;
    return (unsigned)(b < 1 ? 1 : b > 65536 ? 65536 : b);
}

// ---- reductions ----

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ double warp_sum_d(double v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
// Sum over the block (blockDim.x a multiple of 32, <= 1024); every thread
// gets the result. sh: 32 doubles of shared memory.
__device__ __forceinline__ double block_sum_d(double v, double *sh) {
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum_d(v);
    __syncthreads();   // sh may still be read from a previous call
    if (lane == 0) sh[w] = v;
    __syncthreads();
    double s = 0;
    for (int i = 0; i < nw; i++) s += sh[i];
    return s;
}
__device__ __forceinline__ float block_max(float v, float *sh) {
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) sh[w] = v;
    __syncthreads();
    float m = -INFINITY;
    for (int i = 0; i < nw; i++) m = fmaxf(m, sh[i]);
    return m;
}

// ---- weights ----

// A weight as the kernels read it: n_out rows of n_in elements in 32-element
// units (the last one partial for float types whose n_in % 32 != 0).
struct WDev {
    const uint8_t *p;      // the data (device layout, cuda-ops.h)
    const __half *d;       // Q4_0 / Q8_0: the scales after the quants
    int64_t n_in, n_out;
    int64_t nu;            // units per row: ceil(n_in / 32)
    size_t row_bytes;      // k-quants: bytes per row
    bool full;             // n_in % 32 == 0 and 16-byte aligned (float types: vector loads)
};

// Bytes of one stored row of n elements (qt_row_size for the supported types).
static inline size_t qt_cu_row_bytes(int type, int64_t n) {
    switch (type) {
    case T_F32: return (size_t)n * 4;
    case T_F16: case T_BF16: return (size_t)n * 2;
    case T_Q4_0: return (size_t)(n / 32) * 18;
    case T_Q8_0: return (size_t)(n / 32) * 34;
    case T_Q4_K: return (size_t)(n / 256) * 144;
    case T_Q6_K: return (size_t)(n / 256) * 210;
    default: return 0;
    }
}

static inline WDev qt_cu_wdev(const void *w, int type, int64_t n_in, int64_t n_out) {
    WDev v;
    v.p = (const uint8_t *)w;
    v.n_in = n_in;
    v.n_out = n_out;
    v.nu = (n_in + 31) / 32;
    v.row_bytes = qt_cu_row_bytes(type, n_in);
    v.full = n_in % 32 == 0 && ((uintptr_t)w & 15) == 0;   // adapter tensors may sit at any float offset
    int64_t nbt = v.nu * n_out;   // all blocks of a split type
    v.d = type == T_Q4_0 ? (const __half *)(v.p + (size_t)nbt * 16)
        : type == T_Q8_0 ? (const __half *)(v.p + (size_t)nbt * 32) : nullptr;
    return v;
}

// Wr<TYPE>::load(w, row, u, v): v[0..32) = elements [32u, 32u + 32) of row
// `row` as float (0 past n_in).
template <int TYPE> struct Wr;

template <> struct Wr<T_F32> {
    static __device__ __forceinline__ void load(const WDev &w, int64_t row, int64_t u, float *v) {
        const float *r = (const float *)w.p + row * w.n_in + u * 32;
        if (w.full) {
#pragma unroll
            for (int i = 0; i < 8; i++) {
                float4 f = ((const float4 *)r)[i];
                v[4 * i] = f.x; v[4 * i + 1] = f.y; v[4 * i + 2] = f.z; v[4 * i + 3] = f.w;
            }
        } else {
            const int64_t left = w.n_in - u * 32;
#pragma unroll
            for (int i = 0; i < 32; i++) v[i] = i < left ? r[i] : 0.0f;
        }
    }
};

template <> struct Wr<T_F16> {
    static __device__ __forceinline__ void load(const WDev &w, int64_t row, int64_t u, float *v) {
        const __half *r = (const __half *)w.p + row * w.n_in + u * 32;
        if (w.full) {
#pragma unroll
            for (int i = 0; i < 4; i++) {
                uint4 q = ((const uint4 *)r)[i];
                const __half *h = (const __half *)&q;
#pragma unroll
                for (int k = 0; k < 8; k++) v[8 * i + k] = __half2float(h[k]);
            }
        } else {
            const int64_t left = w.n_in - u * 32;
#pragma unroll
            for (int i = 0; i < 32; i++) v[i] = i < left ? __half2float(r[i]) : 0.0f;
        }
    }
};

__device__ __forceinline__ float bf16_bits_to_float(uint32_t b) { return __uint_as_float(b << 16); }

template <> struct Wr<T_BF16> {
    static __device__ __forceinline__ void load(const WDev &w, int64_t row, int64_t u, float *v) {
        const uint16_t *r = (const uint16_t *)w.p + row * w.n_in + u * 32;
        if (w.full) {
#pragma unroll
            for (int i = 0; i < 4; i++) {
                uint4 q = ((const uint4 *)r)[i];
                const uint32_t x[4] = { q.x, q.y, q.z, q.w };
#pragma unroll
                for (int k = 0; k < 4; k++) {
                    v[8 * i + 2 * k] = bf16_bits_to_float(x[k] & 0xffffu);
                    v[8 * i + 2 * k + 1] = bf16_bits_to_float(x[k] >> 16);
                }
            }
        } else {
            const int64_t left = w.n_in - u * 32;
#pragma unroll
            for (int i = 0; i < 32; i++) v[i] = i < left ? bf16_bits_to_float(r[i]) : 0.0f;
        }
    }
};

// Q4_0 (split): x = ((q & 0xf) - 8) * d for element j, (q >> 4) - 8 for j + 16.
template <> struct Wr<T_Q4_0> {
    static __device__ __forceinline__ void load(const WDev &w, int64_t row, int64_t u, float *v) {
        const int64_t b = row * w.nu + u;
        const uint4 q = ((const uint4 *)w.p)[b];
        const float d = __half2float(w.d[b]);
        const uint32_t x[4] = { q.x, q.y, q.z, q.w };
#pragma unroll
        for (int k = 0; k < 4; k++)
#pragma unroll
            for (int by = 0; by < 4; by++) {
                const int byte = (x[k] >> (8 * by)) & 0xff, j = 4 * k + by;
                v[j] = (float)((byte & 0xf) - 8) * d;
                v[j + 16] = (float)((byte >> 4) - 8) * d;
            }
    }
};

// Q8_0 (split): x = q * d.
template <> struct Wr<T_Q8_0> {
    static __device__ __forceinline__ void load(const WDev &w, int64_t row, int64_t u, float *v) {
        const int64_t b = row * w.nu + u;
        const uint4 q0 = ((const uint4 *)w.p)[2 * b], q1 = ((const uint4 *)w.p)[2 * b + 1];
        const float d = __half2float(w.d[b]);
        const uint32_t x[8] = { q0.x, q0.y, q0.z, q0.w, q1.x, q1.y, q1.z, q1.w };
#pragma unroll
        for (int k = 0; k < 8; k++)
#pragma unroll
            for (int by = 0; by < 4; by++) v[4 * k + by] = (float)(int8_t)((x[k] >> (8 * by)) & 0xff) * d;
    }
};

// Q4_K (as stored, 144-byte super-blocks of 256): unit u is sub-block u % 8
// of super-block u / 8: x = d * sc * q - dmin * m (qt_dequantize_row_q4_K).
template <> struct Wr<T_Q4_K> {
    static __device__ __forceinline__ void load(const WDev &w, int64_t row, int64_t u, float *v) {
        const uint8_t *blk = w.p + (size_t)row * w.row_bytes + (size_t)(u >> 3) * 144;
        const int j = (int)(u & 7);
        const uint32_t dd = *(const uint32_t *)blk;
        const float d = __half2float(__ushort_as_half((unsigned short)(dd & 0xffff)));
        const float dmin = __half2float(__ushort_as_half((unsigned short)(dd >> 16)));
        const uint8_t *s = blk + 4;   // 12 bytes of 6-bit scales and mins
        int sc, m;   // qt_get_scale_min_k4
        if (j < 4) {
            sc = s[j] & 63;
            m = s[j + 4] & 63;
        } else {
            sc = (s[j + 4] & 0xf) | ((s[j - 4] >> 6) << 4);
            m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
        }
        const float d1 = d * (float)sc, m1 = dmin * (float)m;
        const uint4 *qp = (const uint4 *)(blk + 16 + (j >> 1) * 32);
        const uint4 q0 = qp[0], q1 = qp[1];
        const uint32_t x[8] = { q0.x, q0.y, q0.z, q0.w, q1.x, q1.y, q1.z, q1.w };
        const int shift = (j & 1) * 4;
#pragma unroll
        for (int k = 0; k < 8; k++)
#pragma unroll
            for (int by = 0; by < 4; by++) {
                const int q = (x[k] >> (8 * by + shift)) & 0xf;
                v[4 * k + by] = __fsub_rn(__fmul_rn(d1, (float)q), m1);
            }
    }
};

// Q6_K (as stored, 210-byte super-blocks, only 2-byte aligned): unit u is
// group g = u % 4 of half h = (u / 4) % 2 of super-block u / 8:
// x = d * sc * (q - 32) (qt_dequantize_row_q6_K's q1..q4).
template <> struct Wr<T_Q6_K> {
    static __device__ __forceinline__ void load(const WDev &w, int64_t row, int64_t u, float *v) {
        const uint8_t *blk = w.p + (size_t)row * w.row_bytes + (size_t)(u >> 3) * 210;
        const int h = (int)((u >> 2) & 1), g = (int)(u & 3);
        const uint16_t *ql = (const uint16_t *)(blk + h * 64 + (g & 1) * 32);
        const uint16_t *qh = (const uint16_t *)(blk + 128 + h * 32);
        const int8_t *sc = (const int8_t *)(blk + 192 + h * 8);
        const float d = __half2float(__ushort_as_half(*(const unsigned short *)(blk + 208)));
        const float d0 = d * (float)sc[2 * g], d1 = d * (float)sc[2 * g + 1];
        const int lshift = (g >> 1) * 4, hshift = 2 * g;
#pragma unroll
        for (int k = 0; k < 16; k++) {
            const uint32_t l2 = ql[k], h2 = qh[k];
#pragma unroll
            for (int by = 0; by < 2; by++) {
                const int l = 2 * k + by;
                const int q = (int)(((l2 >> (8 * by + lshift)) & 0xf) | (((h2 >> (8 * by + hshift)) & 3) << 4)) - 32;
                v[l] = (l < 16 ? d0 : d1) * (float)q;
            }
        }
    }
};

// Launchers shared between the files (cuda-quant.cu).
int qt_cu_dequant(qt_cuda *c, void *dst, bool bf16, const void *w, int type, int64_t n_in, int64_t n_rows);
int qt_cu_gemv(qt_cuda *c, const float *x, int64_t n_in, int64_t N, const qt_cuda_mm *outs, int n);
int qt_cu_to_bf16(qt_cuda *c, __nv_bfloat16 *dst, const float *src, int64_t n);

#endif
