// cuda-quant.cu: the kernels that read weights in their stored type
// (cuda-impl.cuh's readers): upload into the device layout, dequantization
// to bf16 / f32 for the cuBLAS products, the decode matrix-vector product
// (a few tokens against every row, reading the blocks directly) and the
// embedding lookup.
// The decode product follows llama.cpp's mul_mat_vec_q in shape (a block of
// threads shares a few rows, threads stride over the row's 32-element units,
// one reduction at the end) but keeps the activations in float32 instead of
// rounding them to Q8_1: the same numbers as the CPU backend's F32 precision.
#include "backend/cuda-impl.cuh"

// ---- upload ----

// Q4_0 / Q8_0: block b of the stored array (2-byte scale, then QB quant bytes)
// -> quants at q + b * QB, scale at d[b]. One thread per block.
template <int QB>
__global__ void split_blocks_kernel(uint8_t *q, uint16_t *d, const uint8_t *raw, int64_t nb) {
    for (int64_t b = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; b < nb; b += (int64_t)gridDim.x * blockDim.x) {
        const uint16_t *src = (const uint16_t *)(raw + (size_t)b * (QB + 2));   // 2-byte aligned
        d[b] = src[0];
        uint4 *dst = (uint4 *)(q + (size_t)b * QB);
#pragma unroll
        for (int i = 0; i < QB / 16; i++) {
            uint4 v;
            v.x = (uint32_t)src[1 + 8 * i] | (uint32_t)src[2 + 8 * i] << 16;
            v.y = (uint32_t)src[3 + 8 * i] | (uint32_t)src[4 + 8 * i] << 16;
            v.z = (uint32_t)src[5 + 8 * i] | (uint32_t)src[6 + 8 * i] << 16;
            v.w = (uint32_t)src[7 + 8 * i] | (uint32_t)src[8 + 8 * i] << 16;
            dst[i] = v;
        }
    }
}

extern "C" bool qt_cuda_type_supported(int type) {
    return type == T_F32 || type == T_F16 || type == T_BF16 || type == T_Q4_0 || type == T_Q8_0 || type == T_Q4_K ||
           type == T_Q6_K;
}

extern "C" int qt_cuda_weight_upload(qt_cuda *c, void *dst, const void *src_host, int type, int64_t n_in,
                                     int64_t n_out) {
    const size_t bytes = qt_cu_row_bytes(type, n_in) * (size_t)n_out;
    if (type != T_Q4_0 && type != T_Q8_0) {
        CU_TRY(c, cudaMemcpyAsync(dst, src_host, bytes, cudaMemcpyHostToDevice, c->stream), "uploading a weight");
        return 0;
    }
    // the stored blocks go to a temporary buffer, then are split into place
    void *raw = nullptr;
    cudaError_t e = cudaMalloc(&raw, bytes);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return qt_cu_fail(c, e, "a temporary buffer for a weight upload", __FILE__, __LINE__);
    }
    int rc = 0;
    const int64_t nb = (n_in / 32) * n_out;
    e = cudaMemcpyAsync(raw, src_host, bytes, cudaMemcpyHostToDevice, c->stream);
    if (e == cudaSuccess) {
        if (type == T_Q4_0)
            split_blocks_kernel<16><<<qt_cu_blocks(nb), 256, 0, c->stream>>>((uint8_t *)dst,
                                                                             (uint16_t *)((uint8_t *)dst + nb * 16),
                                                                             (const uint8_t *)raw, nb);
        else
            split_blocks_kernel<32><<<qt_cu_blocks(nb), 256, 0, c->stream>>>((uint8_t *)dst,
                                                                             (uint16_t *)((uint8_t *)dst + nb * 32),
                                                                             (const uint8_t *)raw, nb);
        e = cudaGetLastError();
    }
    if (e == cudaSuccess) e = cudaStreamSynchronize(c->stream);
    if (e != cudaSuccess) rc = qt_cu_fail(c, e, "uploading a weight", __FILE__, __LINE__);
    cudaFree(raw);
    return rc;
}

// ---- dequantization ----

// Two floats rounded to bf16, a in the low half (memory order a, b).
__device__ __forceinline__ uint32_t pack_bf16(float a, float b) {
    __nv_bfloat162 h = __floats2bfloat162_rn(a, b);
    return *reinterpret_cast<uint32_t *>(&h);
}

// dst (n_rows, n_in) = the weight as bf16 or float; one thread per unit.
template <int TYPE, typename OUT>
__global__ void dequant_kernel(OUT *dst, WDev w, int64_t n_rows) {
    const int64_t n_units = n_rows * w.nu;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n_units; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t row = i / w.nu, u = i % w.nu;
        float v[32];
        Wr<TYPE>::load(w, row, u, v);
        OUT *o = dst + row * w.n_in + u * 32;
        const int64_t left = w.n_in - u * 32;
        if (left >= 32 && w.full) {
            if constexpr (sizeof(OUT) == 4) {
#pragma unroll
                for (int k = 0; k < 8; k++) ((float4 *)o)[k] = make_float4(v[4 * k], v[4 * k + 1], v[4 * k + 2], v[4 * k + 3]);
            } else {
#pragma unroll
                for (int k = 0; k < 4; k++)
                    ((uint4 *)o)[k] = make_uint4(pack_bf16(v[8 * k], v[8 * k + 1]), pack_bf16(v[8 * k + 2], v[8 * k + 3]),
                                                 pack_bf16(v[8 * k + 4], v[8 * k + 5]), pack_bf16(v[8 * k + 6], v[8 * k + 7]));
            }
        } else {
#pragma unroll
            for (int k = 0; k < 32; k++) {
                if (k < left) {
                    if constexpr (sizeof(OUT) == 4) o[k] = v[k];
                    else o[k] = __float2bfloat16_rn(v[k]);
                }
            }
        }
    }
}

template <typename OUT>
static int dequant_as(qt_cuda *c, OUT *dst, const void *w, int type, int64_t n_in, int64_t n_rows) {
    const WDev wd = qt_cu_wdev(w, type, n_in, n_rows);
    const unsigned g = qt_cu_blocks(n_rows * wd.nu);
    switch (type) {
    case T_F32: dequant_kernel<T_F32, OUT><<<g, 256, 0, c->stream>>>(dst, wd, n_rows); break;
    case T_F16: dequant_kernel<T_F16, OUT><<<g, 256, 0, c->stream>>>(dst, wd, n_rows); break;
    case T_BF16: dequant_kernel<T_BF16, OUT><<<g, 256, 0, c->stream>>>(dst, wd, n_rows); break;
    case T_Q4_0: dequant_kernel<T_Q4_0, OUT><<<g, 256, 0, c->stream>>>(dst, wd, n_rows); break;
    case T_Q8_0: dequant_kernel<T_Q8_0, OUT><<<g, 256, 0, c->stream>>>(dst, wd, n_rows); break;
    case T_Q4_K: dequant_kernel<T_Q4_K, OUT><<<g, 256, 0, c->stream>>>(dst, wd, n_rows); break;
    case T_Q6_K: dequant_kernel<T_Q6_K, OUT><<<g, 256, 0, c->stream>>>(dst, wd, n_rows); break;
    default: snprintf(c->err, sizeof(c->err), "weight type %d is not supported on the GPU", type); return -1;
    }
    CU_LAUNCHED(c, "dequantize");
    return 0;
}

int qt_cu_dequant(qt_cuda *c, void *dst, bool bf16, const void *w, int type, int64_t n_in, int64_t n_rows) {
    if (n_rows <= 0) return 0;
    return bf16 ? dequant_as(c, (__nv_bfloat16 *)dst, w, type, n_in, n_rows)
                : dequant_as(c, (float *)dst, w, type, n_in, n_rows);
}

extern "C" int qt_cuda_dequantize(qt_cuda *c, float *dst, const void *w, int type, int64_t n_in, int64_t n_rows) {
    return qt_cu_dequant(c, dst, false, w, type, n_in, n_rows);
}

__global__ void to_bf16_kernel(__nv_bfloat16 *dst, const float *src, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        dst[i] = __float2bfloat16_rn(src[i]);
}

int qt_cu_to_bf16(qt_cuda *c, __nv_bfloat16 *dst, const float *src, int64_t n) {
    if (n <= 0) return 0;
    to_bf16_kernel<<<qt_cu_blocks(n), 256, 0, c->stream>>>(dst, src, n);
    CU_LAUNCHED(c, "convert to bf16");
    return 0;
}

// ---- decode: y (N, n_out) = x (N, n_in) @ W^T for N <= 8 ----

// Rows per thread block; threads per block (fewer when a row has fewer units).
#define GEMV_ROWS 4
#define GEMV_THREADS 128

// Up to QT_CUDA_MM_MAX outputs of one type and one input in one launch:
// blocks [blk0[o], blk0[o + 1]) compute output o.
struct GemvArgs {
    const float *x;
    int64_t n_in;
    int N, n;
    bool xvec;                  // x rows 16-byte aligned with n_in % 32 == 0: float4 loads
    WDev w[QT_CUDA_MM_MAX];
    float *y[QT_CUDA_MM_MAX];
    int blk0[QT_CUDA_MM_MAX + 1];
};

__device__ __forceinline__ void load_x(const GemvArgs &a, int t, int64_t u, float *xv) {
    const float *xr = a.x + (size_t)t * a.n_in + u * 32;
    if (a.xvec) {
#pragma unroll
        for (int k = 0; k < 8; k++) {
            float4 f = ((const float4 *)xr)[k];
            xv[4 * k] = f.x; xv[4 * k + 1] = f.y; xv[4 * k + 2] = f.z; xv[4 * k + 3] = f.w;
        }
    } else {
        const int64_t left = a.n_in - u * 32;
#pragma unroll
        for (int k = 0; k < 32; k++) xv[k] = k < left ? xr[k] : 0.0f;
    }
}

// Each thread: units u = tid, tid + blockDim.x, ... of GEMV_ROWS rows, for
// every token (x's unit loaded once per token and reused by the rows); then
// one block-wide reduction per (row, token).
template <int TYPE, int NT>
__global__ void __launch_bounds__(GEMV_THREADS) gemv_kernel(const GemvArgs a) {
    // which output: constant indices only, so the arguments stay in the parameter bank
    WDev w = a.w[0];
    float *y = a.y[0];
    int b0 = 0;
#pragma unroll
    for (int i = 1; i < QT_CUDA_MM_MAX; i++)
        if (i < a.n && (int)blockIdx.x >= a.blk0[i]) {
            w = a.w[i];
            y = a.y[i];
            b0 = a.blk0[i];
        }
    const int64_t row0 = (int64_t)((int)blockIdx.x - b0) * GEMV_ROWS;
    float acc[GEMV_ROWS][NT];
#pragma unroll
    for (int r = 0; r < GEMV_ROWS; r++)
#pragma unroll
        for (int t = 0; t < NT; t++) acc[r][t] = 0.0f;
    for (int64_t u = threadIdx.x; u < w.nu; u += blockDim.x) {
#pragma unroll
        for (int t = 0; t < NT; t++) {
            if (t < a.N) {
                float xv[32];
                load_x(a, t, u, xv);
#pragma unroll
                for (int r = 0; r < GEMV_ROWS; r++) {
                    const int64_t row = min(row0 + r, w.n_out - 1);
                    float wv[32];
                    Wr<TYPE>::load(w, row, u, wv);
                    float s = 0.0f;
#pragma unroll
                    for (int k = 0; k < 32; k++) s = fmaf(wv[k], xv[k], s);
                    acc[r][t] += s;
                }
            }
        }
    }
    __shared__ float red[GEMV_THREADS / 32][GEMV_ROWS * NT];
    const int lane = threadIdx.x & 31, wi = threadIdx.x >> 5, nw = blockDim.x >> 5;
#pragma unroll
    for (int r = 0; r < GEMV_ROWS; r++)
#pragma unroll
        for (int t = 0; t < NT; t++) {
            const float s = warp_sum(acc[r][t]);
            if (lane == 0) red[wi][r * NT + t] = s;
        }
    __syncthreads();
    for (int i = threadIdx.x; i < GEMV_ROWS * NT; i += blockDim.x) {
        const int r = i / NT, t = i % NT;
        const int64_t row = row0 + r;
        if (t >= a.N || row >= w.n_out) continue;
        float s = 0.0f;
        for (int k = 0; k < nw; k++) s += red[k][i];
        y[(size_t)t * w.n_out + row] = s;
    }
}

template <int TYPE>
static void gemv_launch(const GemvArgs &a, int NT, unsigned blocks, unsigned threads, cudaStream_t st) {
    switch (NT) {
    case 1: gemv_kernel<TYPE, 1><<<blocks, threads, 0, st>>>(a); break;
    case 2: gemv_kernel<TYPE, 2><<<blocks, threads, 0, st>>>(a); break;
    case 4: gemv_kernel<TYPE, 4><<<blocks, threads, 0, st>>>(a); break;
    default: gemv_kernel<TYPE, 8><<<blocks, threads, 0, st>>>(a); break;
    }
}

// Outputs grouped by type, one launch per type.
int qt_cu_gemv(qt_cuda *c, const float *x, int64_t n_in, int64_t N, const qt_cuda_mm *outs, int n) {
    bool done[QT_CUDA_MM_MAX] = { false };
    const int NT = N <= 1 ? 1 : N <= 2 ? 2 : N <= 4 ? 4 : 8;
    for (int i = 0; i < n; i++) {
        if (done[i]) continue;
        const int type = outs[i].type;
        GemvArgs a;
        a.x = x;
        a.n_in = n_in;
        a.N = (int)N;
        a.n = 0;
        a.xvec = n_in % 32 == 0 && ((uintptr_t)x & 15) == 0;
        a.blk0[0] = 0;
        for (int j = i; j < n; j++) {
            if (done[j] || outs[j].type != type) continue;
            done[j] = true;
            a.w[a.n] = qt_cu_wdev(outs[j].w, type, n_in, outs[j].n_out);
            a.y[a.n] = outs[j].y;
            int64_t nb = (outs[j].n_out + GEMV_ROWS - 1) / GEMV_ROWS;
            if (a.blk0[a.n] + nb > 0x7fffffff) {
                snprintf(c->err, sizeof(c->err), "matmul: %lld output rows are too many", (long long)outs[j].n_out);
                return -1;
            }
            a.blk0[a.n + 1] = a.blk0[a.n] + (int)nb;
            a.n++;
        }
        const int64_t nu = (n_in + 31) / 32;
        const unsigned threads = (unsigned)(nu >= GEMV_THREADS ? GEMV_THREADS : ((nu + 31) / 32) * 32);
        const unsigned blocks = (unsigned)a.blk0[a.n];
        switch (type) {
        case T_F32: gemv_launch<T_F32>(a, NT, blocks, threads, c->stream); break;
        case T_F16: gemv_launch<T_F16>(a, NT, blocks, threads, c->stream); break;
        case T_BF16: gemv_launch<T_BF16>(a, NT, blocks, threads, c->stream); break;
        case T_Q4_0: gemv_launch<T_Q4_0>(a, NT, blocks, threads, c->stream); break;
        case T_Q8_0: gemv_launch<T_Q8_0>(a, NT, blocks, threads, c->stream); break;
        case T_Q4_K: gemv_launch<T_Q4_K>(a, NT, blocks, threads, c->stream); break;
        case T_Q6_K: gemv_launch<T_Q6_K>(a, NT, blocks, threads, c->stream); break;
        default: snprintf(c->err, sizeof(c->err), "weight type %d is not supported on the GPU", type); return -1;
        }
        CU_LAUNCHED(c, "matmul (decode)");
    }
    return 0;
}

// ---- embedding ----

// out (N, n_in) = rows tok[t] of W; one thread per (token, unit).
template <int TYPE>
__global__ void embed_kernel(float *out, const int *tok, int64_t N, WDev w) {
    const int64_t n_units = N * w.nu;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n_units; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t t = i / w.nu, u = i % w.nu;
        float v[32];
        Wr<TYPE>::load(w, tok[t], u, v);
        float *o = out + t * w.n_in + u * 32;
        const int64_t left = w.n_in - u * 32;
#pragma unroll
        for (int k = 0; k < 32; k++)
            if (k < left) o[k] = v[k];
    }
}

extern "C" int qt_cuda_embed(qt_cuda *c, float *out, const int32_t *tokens_host, int64_t N, const void *w, int type,
                             int64_t n_in, int64_t n_rows) {
    if (N <= 0) return 0;
    const int *tok = qt_cu_upload_ints(c, (const int *)tokens_host, (size_t)N);
    if (!tok) return -1;
    const WDev wd = qt_cu_wdev(w, type, n_in, n_rows);
    const unsigned g = qt_cu_blocks(N * wd.nu);
    switch (type) {
    case T_F32: embed_kernel<T_F32><<<g, 256, 0, c->stream>>>(out, tok, N, wd); break;
    case T_F16: embed_kernel<T_F16><<<g, 256, 0, c->stream>>>(out, tok, N, wd); break;
    case T_BF16: embed_kernel<T_BF16><<<g, 256, 0, c->stream>>>(out, tok, N, wd); break;
    case T_Q4_0: embed_kernel<T_Q4_0><<<g, 256, 0, c->stream>>>(out, tok, N, wd); break;
    case T_Q8_0: embed_kernel<T_Q8_0><<<g, 256, 0, c->stream>>>(out, tok, N, wd); break;
    case T_Q4_K: embed_kernel<T_Q4_K><<<g, 256, 0, c->stream>>>(out, tok, N, wd); break;
    case T_Q6_K: embed_kernel<T_Q6_K><<<g, 256, 0, c->stream>>>(out, tok, N, wd); break;
    default: snprintf(c->err, sizeof(c->err), "weight type %d is not supported on the GPU", type); return -1;
    }
    CU_LAUNCHED(c, "embedding");
    return 0;
}
