// cuda-ops.cu: the CUDA context (device, stream, cuBLAS handle, scratch),
// memory, the cuBLAS products, and the element-wise and row-wise layer
// kernels of cuda-ops.h: RMSNorm, RoPE, SwiGLU, cross-entropy, dropout,
// and their backward passes.
// Each kernel computes what its CPU counterpart in layers.c /
// layers-train.c computes, in the same order of operations where that sets
// the result: sums of squares and of exponentials in double, the RoPE table
// in double, products rounded where the C code rounds them (__fmul_rn keeps
// nvcc from fusing them into a multiply-add the CPU does not do).
// Deliberately not here: CUDA graphs, multi-GPU.
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <vector>

#include "backend/cuda-impl.cuh"

// ---- errors ----

int qt_cu_fail(qt_cuda *c, cudaError_t e, const char *what, const char *file, int line) {
    const char *f = strrchr(file, '/');
    snprintf(c->err, sizeof(c->err), "%s: %s (%s:%d)", what, cudaGetErrorString(e), f ? f + 1 : file, line);
    return -1;
}

int qt_cublas_fail(qt_cuda *c, cublasStatus_t s, const char *what, const char *file, int line) {
    const char *f = strrchr(file, '/');
    snprintf(c->err, sizeof(c->err), "%s: cuBLAS %s (%s:%d)", what, cublasGetStatusString(s), f ? f + 1 : file, line);
    return -1;
}

extern "C" const char *qt_cuda_error(const qt_cuda *c) { return c->err; }
extern "C" bool qt_cuda_is_fp32(const qt_cuda *c) { return c->fp32; }
extern "C" const char *qt_cuda_device_name(const qt_cuda *c) { return c->name; }

// ---- devices ----

extern "C" void qt_cuda_versions(int *runtime, int *driver) {
    *runtime = 0;
    *driver = 0;
    cudaRuntimeGetVersion(runtime);
    cudaDriverGetVersion(driver);
}

extern "C" int qt_cuda_probe(char *why, size_t why_n) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e == cudaSuccess && n > 0) return n;
    int rt = 0, drv = 0;
    qt_cuda_versions(&rt, &drv);
    cudaGetLastError();
    if (drv == 0)
        snprintf(why, why_n, "no NVIDIA GPU driver found (%s; use --device cpu)", cudaGetErrorString(e));
    else if (e == cudaErrorInsufficientDriver || drv < rt)
        snprintf(why, why_n, "the NVIDIA driver is too old for this qtune: it supports CUDA %d.%d, qtune was built with "
                 "CUDA %d.%d (update the driver, or use --device cpu)", drv / 1000, drv % 1000 / 10, rt / 1000,
                 rt % 1000 / 10);
    else if (e == cudaErrorNoDevice || (e == cudaSuccess && n == 0))
        snprintf(why, why_n, "no NVIDIA GPU found (use --device cpu)");
    else
        snprintf(why, why_n, "the CUDA runtime cannot use the GPU: %s (use --device cpu)", cudaGetErrorString(e));
    return 0;
}

extern "C" int qt_cuda_dev_info_get(int dev, qt_cuda_dev_info *info) {
    cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, dev) != cudaSuccess) {
        cudaGetLastError();
        return -1;
    }
    memset(info, 0, sizeof(*info));
    snprintf(info->name, sizeof(info->name), "%s", p.name);
    info->total = p.totalGlobalMem;
    info->cc_major = p.major;
    info->cc_minor = p.minor;
    info->n_sm = p.multiProcessorCount;
    int cur = -1;
    cudaGetDevice(&cur);
    if (cudaSetDevice(dev) == cudaSuccess) {
        size_t f = 0, t = 0;
        if (cudaMemGetInfo(&f, &t) == cudaSuccess) info->free = f;
    }
    cudaGetLastError();
    if (cur >= 0) cudaSetDevice(cur);
    return 0;
}

// ---- context ----

extern "C" qt_cuda *qt_cuda_create(int dev, bool fp32, char *why, size_t why_n) {
    int n = qt_cuda_probe(why, why_n);
    if (n == 0) return nullptr;
    if (dev < 0 || dev >= n) {
        snprintf(why, why_n, "GPU %d does not exist: this machine has %d (cuda:0 .. cuda:%d)", dev, n, n - 1);
        return nullptr;
    }
    qt_cuda *c = (qt_cuda *)calloc(1, sizeof(qt_cuda));
    if (!c) {
        snprintf(why, why_n, "out of host memory");
        return nullptr;
    }
    c->dev = dev;
    c->fp32 = fp32;
    cudaDeviceProp p;
    cudaError_t e = cudaSetDevice(dev);
    if (e == cudaSuccess) e = cudaGetDeviceProperties(&p, dev);
    if (e == cudaSuccess) e = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking);
    if (e != cudaSuccess) {
        snprintf(why, why_n, "cannot start GPU %d: %s", dev, cudaGetErrorString(e));
        cudaGetLastError();
        free(c);
        return nullptr;
    }
    snprintf(c->name, sizeof(c->name), "%s", p.name);
    if (p.major < 8)
        snprintf(why, why_n, "%s has compute capability %d.%d; qtune's kernels are built for 8.0 and newer", p.name,
                 p.major, p.minor);
    cublasStatus_t s = p.major < 8 ? CUBLAS_STATUS_ARCH_MISMATCH : cublasCreate(&c->blas);
    if (s == CUBLAS_STATUS_SUCCESS) s = cublasSetStream(c->blas, c->stream);
    if (s != CUBLAS_STATUS_SUCCESS) {
        if (p.major >= 8) snprintf(why, why_n, "cannot start cuBLAS on %s: %s", p.name, cublasGetStatusString(s));
        if (c->blas) cublasDestroy(c->blas);
        cudaStreamDestroy(c->stream);
        free(c);
        return nullptr;
    }
    return c;
}

extern "C" void qt_cuda_destroy(qt_cuda *c) {
    if (!c) return;
    cudaStreamSynchronize(c->stream);
    cudaFree(c->wbuf);
    cudaFree(c->abuf);
    cudaFree(c->fbuf);
    cudaFree(c->ibuf);
    cudaFree(c->seq_dev);
    free(c->seq_host);
    cublasDestroy(c->blas);
    cudaStreamDestroy(c->stream);
    cudaGetLastError();
    free(c);
}

// ---- memory ----

static void note_alloc(qt_cuda *c, size_t n) {
    c->used += n;
    c->peak = std::max(c->peak, c->used);
}

static void oom_message(qt_cuda *c, size_t n, const char *what) {
    size_t f = 0, t = 0;
    cudaGetLastError();
    cudaMemGetInfo(&f, &t);
    cudaGetLastError();
    snprintf(c->err, sizeof(c->err), "out of GPU memory: %s needs %.1f MiB, %.1f MiB of %.1f MiB are free on %s",
             what, n / 1048576.0, f / 1048576.0, t / 1048576.0, c->name);
}

extern "C" void *qt_cuda_alloc(qt_cuda *c, size_t n) {
    void *p = nullptr;
    if (n == 0) n = 256;
    cudaError_t e = cudaMalloc(&p, n);
    if (e == cudaErrorMemoryAllocation) {
        oom_message(c, n, "this buffer");
        return nullptr;
    }
    if (e != cudaSuccess) {
        qt_cu_fail(c, e, "cudaMalloc", __FILE__, __LINE__);
        cudaGetLastError();
        return nullptr;
    }
    e = cudaMemsetAsync(p, 0, n, c->stream);
    if (e != cudaSuccess) {
        qt_cu_fail(c, e, "cudaMemset", __FILE__, __LINE__);
        cudaFree(p);
        return nullptr;
    }
    note_alloc(c, n);
    return p;
}

extern "C" void qt_cuda_free(qt_cuda *c, void *p, size_t n) {
    if (!p) return;
    cudaFree(p);   // waits for queued work that may still use p
    c->used -= std::min(c->used, n ? n : (size_t)256);
}

void *qt_cu_scratch(qt_cuda *c, void **buf, size_t *cap, size_t n, const char *what) {
    if (*cap >= n && *buf) return *buf;
    if (*buf) {
        cudaFree(*buf);
        c->used -= std::min(c->used, *cap);
        *buf = nullptr;
        *cap = 0;
    }
    n = (n + 0xfffff) & ~(size_t)0xfffff;   // whole MiB: fewer regrowths
    cudaError_t e = cudaMalloc(buf, n);
    if (e != cudaSuccess) {
        *buf = nullptr;
        if (e == cudaErrorMemoryAllocation) oom_message(c, n, what);
        else qt_cu_fail(c, e, what, __FILE__, __LINE__);
        cudaGetLastError();
        return nullptr;
    }
    *cap = n;
    note_alloc(c, n);
    return *buf;
}

int *qt_cu_upload_ints(qt_cuda *c, const int *host, size_t n) {
    if (!qt_cu_scratch(c, (void **)&c->ibuf, &c->ibuf_n, sizeof(int) * std::max(n, (size_t)1024), "index arrays"))
        return nullptr;
    if (cudaMemcpyAsync(c->ibuf, host, sizeof(int) * n, cudaMemcpyHostToDevice, c->stream) != cudaSuccess) {
        qt_cu_fail(c, cudaGetLastError(), "uploading indices", __FILE__, __LINE__);
        return nullptr;
    }
    return c->ibuf;
}

extern "C" int qt_cuda_upload(qt_cuda *c, void *dst, const void *src_host, size_t n) {
    if (n) CU_TRY(c, cudaMemcpyAsync(dst, src_host, n, cudaMemcpyHostToDevice, c->stream), "upload");
    return 0;
}

extern "C" int qt_cuda_download(qt_cuda *c, void *dst_host, const void *src, size_t n) {
    if (n) CU_TRY(c, cudaMemcpyAsync(dst_host, src, n, cudaMemcpyDeviceToHost, c->stream), "download");
    CU_TRY(c, cudaStreamSynchronize(c->stream), "the GPU's work before a download");
    return 0;
}

extern "C" int qt_cuda_copy(qt_cuda *c, void *dst, const void *src, size_t n) {
    if (n && dst != src) CU_TRY(c, cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToDevice, c->stream), "copy");
    return 0;
}

extern "C" int qt_cuda_zero(qt_cuda *c, void *p, size_t n) {
    if (n) CU_TRY(c, cudaMemsetAsync(p, 0, n, c->stream), "zero");
    return 0;
}

extern "C" int qt_cuda_sync(qt_cuda *c) {
    CU_TRY(c, cudaStreamSynchronize(c->stream), "the GPU's queued work");
    return 0;
}

extern "C" void qt_cuda_mem(qt_cuda *c, size_t *free_b, size_t *total_b, size_t *used_b, size_t *peak_b) {
    size_t f = 0, t = 0;
    if (free_b || total_b) {
        cudaMemGetInfo(&f, &t);
        cudaGetLastError();
    }
    if (free_b) *free_b = f;
    if (total_b) *total_b = t;
    if (used_b) *used_b = c->used;
    if (peak_b) *peak_b = c->peak;
}

extern "C" size_t qt_cuda_scratch_plan(const qt_cuda *c, int64_t n_tokens, int64_t max_in, int64_t max_out, int n_head) {
    const size_t w = (size_t)max_in * (size_t)max_out * (c->fp32 ? 4 : 2);
    const size_t a = c->fp32 ? 0 : (size_t)n_tokens * (size_t)std::max(max_in, max_out) * 2;
    const size_t f = (size_t)n_tokens * (size_t)n_head * 4;
    const size_t mib = 1 << 20;
    return w + a + f + 4 * mib;   // + rounding of each buffer to whole MiB, index arrays
}

// ---- products ----

// C (m, n) = alpha op(A) op(B) + beta C, column-major (cuBLAS's view of our
// row-major arrays); A, B of type ab (bf16 or f32), C float.
static int gemm(qt_cuda *c, cublasOperation_t ta, cublasOperation_t tb, int64_t m, int64_t n, int64_t k, const void *A,
                int64_t lda, const void *B, int64_t ldb, float beta, float *C, int64_t ldc, cudaDataType_t ab) {
    if (m <= 0 || n <= 0) return 0;
    if (m > INT32_MAX || n > INT32_MAX || k > INT32_MAX || lda > INT32_MAX || ldb > INT32_MAX || ldc > INT32_MAX) {
        snprintf(c->err, sizeof(c->err), "matrix product of %lld x %lld x %lld is too large for one cuBLAS call",
                 (long long)m, (long long)n, (long long)k);
        return -1;
    }
    const float alpha = 1.0f;
    cublasComputeType_t ct = ab == CUDA_R_32F && !c->fp32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    CUBLAS_TRY(c, cublasGemmEx(c->blas, ta, tb, (int)m, (int)n, (int)k, &alpha, A, ab, (int)lda, B, ab, (int)ldb, &beta,
                               C, CUDA_R_32F, (int)ldc, ct, CUBLAS_GEMM_DEFAULT),
               "matrix product");
    return 0;
}

// The weight as cuBLAS takes it: float32 weights as they are, BF16 as they
// are in bf16 mode, everything else dequantized into the scratch buffer.
static const void *weight_operand(qt_cuda *c, const void *w, int type, int64_t n_in, int64_t n_out, cudaDataType_t ab) {
    if (type == T_F32 && ab == CUDA_R_32F) return w;
    if (type == T_BF16 && ab == CUDA_R_16BF) return w;
    size_t n = (size_t)n_in * (size_t)n_out * (ab == CUDA_R_32F ? 4 : 2);
    void *buf = qt_cu_scratch(c, &c->wbuf, &c->wbuf_n, n, "a dequantized weight");
    if (!buf || qt_cu_dequant(c, buf, ab == CUDA_R_16BF, w, type, n_in, n_out)) return nullptr;
    return buf;
}

// Operand type of a product with a weight of this type: float32 for float32
// weights (adapters) and in fp32 mode, else bf16.
static cudaDataType_t operand_type(const qt_cuda *c, int type) {
    return c->fp32 || type == T_F32 ? CUDA_R_32F : CUDA_R_16BF;
}

// x (rows, n) as the product's B operand: itself (f32) or rounded to bf16 in abuf.
static const void *act_operand(qt_cuda *c, const float *x, int64_t n, cudaDataType_t ab) {
    if (ab == CUDA_R_32F) return x;
    void *buf = qt_cu_scratch(c, &c->abuf, &c->abuf_n, (size_t)n * 2, "activations in bf16");
    if (!buf || qt_cu_to_bf16(c, (__nv_bfloat16 *)buf, x, n)) return nullptr;
    return buf;
}

extern "C" int qt_cuda_matmul(qt_cuda *c, const float *x, int64_t n_in, int64_t N, const qt_cuda_mm *outs, int n) {
    if (N <= 0) return 0;
    if (N <= QT_CUDA_GEMV_MAX_N) return qt_cu_gemv(c, x, n_in, N, outs, n);
    const void *xb = nullptr;   // x in bf16, converted once for every bf16 output
    for (int i = 0; i < n; i++) {
        const cudaDataType_t ab = operand_type(c, outs[i].type);
        const void *B = ab == CUDA_R_32F ? (const void *)x : xb;
        if (!B) B = xb = act_operand(c, x, N * n_in, ab);
        const void *A = weight_operand(c, outs[i].w, outs[i].type, n_in, outs[i].n_out, ab);
        if (!A || !B) return -1;
        // y^T (n_out, N) = W (n_out, n_in) x^T: A = W stored (n_in, n_out) column-major, transposed
        if (gemm(c, CUBLAS_OP_T, CUBLAS_OP_N, outs[i].n_out, N, n_in, A, n_in, B, n_in, 0.0f, outs[i].y, outs[i].n_out,
                 ab))
            return -1;
    }
    return 0;
}

extern "C" int qt_cuda_matmul_t(qt_cuda *c, float *dx, const float *dy, const void *w, int type, int64_t n_in,
                                int64_t n_out, int64_t N) {
    if (N <= 0) return 0;
    const cudaDataType_t ab = operand_type(c, type);
    const void *B = act_operand(c, dy, N * n_out, ab);
    const void *A = B ? weight_operand(c, w, type, n_in, n_out, ab) : nullptr;
    if (!A || !B) return -1;
    // dx^T (n_in, N) += W^T (n_in, n_out) dy^T: A = W stored (n_in, n_out) column-major
    return gemm(c, CUBLAS_OP_N, CUBLAS_OP_N, n_in, N, n_out, A, n_in, B, n_out, 1.0f, dx, n_in, ab);
}

extern "C" int qt_cuda_matmul_dw(qt_cuda *c, float *dw, const float *dy, const float *x, int64_t n_in, int64_t n_out,
                                 int64_t N) {
    if (N <= 0) return 0;
    // dw^T (n_in, n_out) += x^T (n_in, N) dy (N, n_out)
    return gemm(c, CUBLAS_OP_N, CUBLAS_OP_T, n_in, n_out, N, x, n_in, dy, n_out, 1.0f, dw, n_in, CUDA_R_32F);
}

// ---- RMSNorm ----

#define ROW_THREADS 256

// One block per row: rstd = 1 / sqrt(mean(x^2) + eps) (sum in double), out = x * rstd * w.
__global__ void rmsnorm_kernel(float *out, float *rstd, const float *x, const float *w, int64_t C, float eps) {
    __shared__ double sh[32];
    const float *xr = x + blockIdx.x * C;
    float *orow = out + blockIdx.x * C;
    double ss = 0;
    for (int64_t i = threadIdx.x; i < C; i += blockDim.x) ss += (double)xr[i] * xr[i];
    ss = block_sum_d(ss, sh);
    const float r = (float)(1.0 / sqrt(ss / (double)C + (double)eps));
    if (rstd && threadIdx.x == 0) rstd[blockIdx.x] = r;
    for (int64_t i = threadIdx.x; i < C; i += blockDim.x) orow[i] = __fmul_rn(__fmul_rn(xr[i], r), w[i]);
}

extern "C" int qt_cuda_rmsnorm(qt_cuda *c, float *out, float *rstd, const float *x, const float *w, int64_t N,
                               int64_t C, float eps) {
    if (N <= 0) return 0;
    rmsnorm_kernel<<<(unsigned)N, ROW_THREADS, 0, c->stream>>>(out, rstd, x, w, C, eps);
    CU_LAUNCHED(c, "rmsnorm");
    return 0;
}

// dx += dout * w * r - c * x, c = sum(dout * w * x) * r^3 / C (sum in double).
__global__ void rmsnorm_backward_kernel(float *dx, const float *dout, const float *x, const float *w, const float *rstd,
                                        int64_t C) {
    __shared__ double sh[32];
    const size_t o = (size_t)blockIdx.x * C;
    const float r = rstd[blockIdx.x];
    double s = 0;
    for (int64_t i = threadIdx.x; i < C; i += blockDim.x) s += (double)dout[o + i] * w[i] * x[o + i];
    s = block_sum_d(s, sh);
    const float cc = (float)(s * r * r * r / (double)C);
    for (int64_t i = threadIdx.x; i < C; i += blockDim.x)
        dx[o + i] += __fsub_rn(__fmul_rn(__fmul_rn(dout[o + i], w[i]), r), __fmul_rn(cc, x[o + i]));
}

extern "C" int qt_cuda_rmsnorm_backward(qt_cuda *c, float *dx, const float *dout, const float *x, const float *w,
                                        const float *rstd, int64_t N, int64_t C) {
    if (N <= 0) return 0;
    rmsnorm_backward_kernel<<<(unsigned)N, ROW_THREADS, 0, c->stream>>>(dx, dout, x, w, rstd, C);
    CU_LAUNCHED(c, "rmsnorm backward");
    return 0;
}

// ---- element-wise ----

#define GRID_LOOP(i, n) for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

__global__ void add_bias_kernel(float *y, const float *b, int64_t N, int64_t n) {
    GRID_LOOP(i, N * n) y[i] += b[i % n];
}

extern "C" int qt_cuda_add_bias(qt_cuda *c, float *y, const float *b, int64_t N, int64_t n) {
    if (N * n <= 0) return 0;
    add_bias_kernel<<<qt_cu_blocks(N * n), 256, 0, c->stream>>>(y, b, N, n);
    CU_LAUNCHED(c, "add bias");
    return 0;
}

__global__ void axpy_kernel(int64_t n, float a, const float *x, float *y) {
    GRID_LOOP(i, n) y[i] += a * x[i];
}

extern "C" int qt_cuda_axpy(qt_cuda *c, int64_t n, float a, const float *x, float *y) {
    if (n <= 0) return 0;
    axpy_kernel<<<qt_cu_blocks(n), 256, 0, c->stream>>>(n, a, x, y);
    CU_LAUNCHED(c, "axpy");
    return 0;
}

__global__ void scale_kernel(int64_t n, float a, float *y) {
    GRID_LOOP(i, n) y[i] *= a;
}

extern "C" int qt_cuda_scale(qt_cuda *c, int64_t n, float a, float *y) {
    if (n <= 0) return 0;
    scale_kernel<<<qt_cu_blocks(n), 256, 0, c->stream>>>(n, a, y);
    CU_LAUNCHED(c, "scale");
    return 0;
}

// out = silu(g) * up, silu(g) = g / (1 + exp(-g))
__global__ void swiglu_kernel(float *out, const float *gate, const float *up, int64_t n) {
    GRID_LOOP(i, n) {
        const float g = gate[i];
        out[i] = __fmul_rn(__fdiv_rn(g, 1.0f + expf(-g)), up[i]);
    }
}

extern "C" int qt_cuda_swiglu(qt_cuda *c, float *out, const float *gate, const float *up, int64_t n) {
    if (n <= 0) return 0;
    swiglu_kernel<<<qt_cu_blocks(n), 256, 0, c->stream>>>(out, gate, up, n);
    CU_LAUNCHED(c, "swiglu");
    return 0;
}

// dgate += dout * up * sig * (1 + g * (1 - sig)), dup += dout * g * sig
__global__ void swiglu_backward_kernel(float *dgate, float *dup, const float *dout, const float *gate, const float *up,
                                       int64_t n) {
    GRID_LOOP(i, n) {
        const float g = gate[i], sig = __fdiv_rn(1.0f, 1.0f + expf(-g));
        if (dgate) dgate[i] += __fmul_rn(__fmul_rn(__fmul_rn(dout[i], up[i]), sig), 1.0f + __fmul_rn(g, 1.0f - sig));
        if (dup) dup[i] += __fmul_rn(dout[i], __fmul_rn(g, sig));
    }
}

extern "C" int qt_cuda_swiglu_backward(qt_cuda *c, float *dgate, float *dup, const float *dout, const float *gate,
                                       const float *up, int64_t n) {
    if (n <= 0 || (!dgate && !dup)) return 0;
    swiglu_backward_kernel<<<qt_cu_blocks(n), 256, 0, c->stream>>>(dgate, dup, dout, gate, up, n);
    CU_LAUNCHED(c, "swiglu backward");
    return 0;
}

__global__ void get_rows_kernel(float *dst, const float *src, const int *rows, int n_rows, int64_t C) {
    GRID_LOOP(i, (int64_t)n_rows * C) {
        const int64_t r = i / C, k = i % C;
        dst[i] = src[(int64_t)rows[r] * C + k];
    }
}

extern "C" int qt_cuda_get_rows(qt_cuda *c, float *dst, const float *src, const int *rows_host, int n_rows, int64_t C) {
    if (n_rows <= 0 || C <= 0) return 0;
    const int *rows = qt_cu_upload_ints(c, rows_host, (size_t)n_rows);
    if (!rows) return -1;
    get_rows_kernel<<<qt_cu_blocks((int64_t)n_rows * C), 256, 0, c->stream>>>(dst, src, rows, n_rows, C);
    CU_LAUNCHED(c, "get rows");
    return 0;
}

// ---- RoPE ----

// cs (N, HS/2, 2) = cos, sin of pos[t] * theta^(-2i/HS) / freqs[i], in double.
__global__ void rope_table_kernel(float *cs, const int *pos, int64_t N, int HS, double theta, const float *freqs) {
    const int half = HS / 2;
    GRID_LOOP(j, N * half) {
        const int64_t t = j / half;
        const int i = (int)(j % half);
        double f = pow(theta, -2.0 * i / HS);
        if (freqs) f /= freqs[i];
        const double a = pos[t] * f;
        cs[2 * j] = (float)cos(a);
        cs[2 * j + 1] = (float)sin(a);
    }
}

extern "C" int qt_cuda_rope_table(qt_cuda *c, float *cs, const int *pos_host, int64_t N, int HS, float theta,
                                  const float *freqs) {
    if (N <= 0) return 0;
    const int *pos = qt_cu_upload_ints(c, pos_host, (size_t)N);
    if (!pos) return -1;
    rope_table_kernel<<<qt_cu_blocks(N * (HS / 2)), 256, 0, c->stream>>>(cs, pos, N, HS, (double)theta, freqs);
    CU_LAUNCHED(c, "rope table");
    return 0;
}

// x (N, nh, HS) rotated in place: pairs (2i, 2i+1) (NORM) or (i, i + HS/2)
// (NEOX); inverse rotates by the negative angle (the backward).
__global__ void rope_kernel(float *x, const float *cs, int64_t N, int nh, int HS, bool neox, bool inverse) {
    const int half = HS / 2;
    GRID_LOOP(j, N * nh * half) {
        const int i = (int)(j % half);
        const int64_t th = j / half, t = th / nh;
        float *v = x + th * HS;
        const float co = cs[(size_t)t * HS + 2 * i], si = cs[(size_t)t * HS + 2 * i + 1];
        const int i0 = neox ? i : 2 * i, i1 = neox ? i + half : 2 * i + 1;
        const float a = v[i0], b = v[i1];
        if (!inverse) {
            v[i0] = __fsub_rn(__fmul_rn(a, co), __fmul_rn(b, si));
            v[i1] = __fadd_rn(__fmul_rn(a, si), __fmul_rn(b, co));
        } else {
            v[i0] = __fadd_rn(__fmul_rn(a, co), __fmul_rn(b, si));
            v[i1] = __fadd_rn(__fmul_rn(-a, si), __fmul_rn(b, co));
        }
    }
}

extern "C" int qt_cuda_rope(qt_cuda *c, float *x, const float *cs, int64_t N, int nh, int HS, bool neox, bool inverse) {
    if (N <= 0) return 0;
    rope_kernel<<<qt_cu_blocks(N * nh * (HS / 2)), 256, 0, c->stream>>>(x, cs, N, nh, HS, neox, inverse);
    CU_LAUNCHED(c, "rope");
    return 0;
}

// ---- cross-entropy ----

// One block per row l (V): loss = max + log(sum exp(l - max)) - l[y] (sum in
// double); d (may be l, or NULL) = exp(l - max) * (sc / sum), d[y] -= sc;
// y < 0: loss 0, d 0.
__global__ void cross_entropy_kernel(float *losses, float *dlogits, const float *logits, const int *targets, float sc,
                                     int64_t V) {
    __shared__ double shd[32];
    __shared__ float shf[32];
    const int64_t row = blockIdx.x;
    const float *l = logits + row * V;
    float *d = dlogits ? dlogits + row * V : nullptr;
    const int y = targets[row];
    if (y < 0) {
        if (threadIdx.x == 0) losses[row] = 0.0f;
        if (d)
            for (int64_t i = threadIdx.x; i < V; i += blockDim.x) d[i] = 0.0f;
        return;
    }
    float mx = -INFINITY;
    for (int64_t i = threadIdx.x; i < V; i += blockDim.x) mx = fmaxf(mx, l[i]);
    mx = block_max(mx, shf);
    const float ly = l[y];
    __syncthreads();   // every thread has read l[y] before d (== l) is written
    double s = 0;
    for (int64_t i = threadIdx.x; i < V; i += blockDim.x) {
        const float e = expf(l[i] - mx);
        s += e;
        if (d) d[i] = e;
    }
    s = block_sum_d(s, shd);
    if (threadIdx.x == 0) losses[row] = (float)((double)mx + log(s) - ly);
    if (!d) return;
    const float f = (float)(sc / s);
    for (int64_t i = threadIdx.x; i < V; i += blockDim.x) d[i] *= f;
    __syncthreads();
    if (threadIdx.x == 0) d[y] -= sc;
}

extern "C" int qt_cuda_cross_entropy(qt_cuda *c, float *losses, float *dlogits, const float *logits,
                                     const int32_t *targets_host, float dscale, int64_t N, int64_t V) {
    if (N <= 0) return 0;
    const int *tg = qt_cu_upload_ints(c, (const int *)targets_host, (size_t)N);
    if (!tg) return -1;
    cross_entropy_kernel<<<(unsigned)N, ROW_THREADS, 0, c->stream>>>(losses, dlogits, logits, tg, dscale, V);
    CU_LAUNCHED(c, "cross-entropy");
    return 0;
}

// ---- dropout ----

__device__ __forceinline__ uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

__global__ void dropout_kernel(float *dst, const float *src, int64_t n, uint64_t thresh, float inv, uint64_t key) {
    GRID_LOOP(i, n) dst[i] = mix64(key + (uint64_t)i * 0x9e3779b97f4a7c15ull) < thresh ? 0.0f : __fmul_rn(src[i], inv);
}

extern "C" int qt_cuda_dropout(qt_cuda *c, float *dst, const float *src, int64_t n, uint64_t thresh, float inv,
                               uint64_t key) {
    if (n <= 0) return 0;
    dropout_kernel<<<qt_cu_blocks(n), 256, 0, c->stream>>>(dst, src, n, thresh, inv, key);
    CU_LAUNCHED(c, "dropout");
    return 0;
}

// ---- measuring ----

extern "C" int qt_cuda_copy_bandwidth(qt_cuda *c, size_t bytes, int reps, double *gbps) {
    void *a = nullptr, *b = nullptr;
    cudaEvent_t e0 = nullptr, e1 = nullptr;
    std::vector<float> ms;
    int rc = -1;
    cudaError_t e = cudaMalloc(&a, bytes);
    if (e == cudaSuccess) e = cudaMalloc(&b, bytes);
    if (e == cudaSuccess) e = cudaMemsetAsync(a, 1, bytes, c->stream);   // not zeros
    if (e == cudaSuccess) e = cudaEventCreate(&e0);
    if (e == cudaSuccess) e = cudaEventCreate(&e1);
    for (int r = -2; r < reps && e == cudaSuccess; r++) {
        e = cudaEventRecord(e0, c->stream);
        if (e == cudaSuccess) e = cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, c->stream);
        if (e == cudaSuccess) e = cudaEventRecord(e1, c->stream);
        if (e == cudaSuccess) e = cudaEventSynchronize(e1);
        float t = 0;
        if (e == cudaSuccess) e = cudaEventElapsedTime(&t, e0, e1);
        if (e == cudaSuccess && r >= 0) ms.push_back(t);
    }
    if (e == cudaSuccess && !ms.empty()) {
        std::sort(ms.begin(), ms.end());
        *gbps = 2.0 * (double)bytes / (ms[ms.size() / 2] * 1e-3) / 1e9;
        rc = 0;
    } else {
        qt_cu_fail(c, e, "copy bandwidth", __FILE__, __LINE__);
    }
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    cudaFree(a);
    cudaFree(b);
    cudaGetLastError();
    return rc;
}
