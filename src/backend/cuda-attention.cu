// cuda-attention.cu: causal grouped-query attention on the GPU, streaming
// ("flash") style: scores live in registers and shared memory a tile at a
// time, never as a (T, T) matrix. One kernel serves inference (keys from
// the KV cache for earlier positions, this batch's k, v for the new ones,
// which it also stores in the cache) and training (keys of the sequence
// itself; the row's log-sum-exp kept for the backward).
// Follows FlashAttention-2 (Dao 2023) like the CPU's attention-train.c:
// forward with the online softmax (running max m and sum l, O rescaled by
// exp(m_old - m_new)); backward with D = rowsum(dO * O), P = exp(S * scale -
// lse), dS = P * (dP - D) * scale, in two kernels so that nothing is added
// atomically: one per block of query rows (dQ), one per block of keys (dK,
// dV) over every query row that sees them.
// Work layout: a thread block takes one key/value head of one sequence and
// 16 query rows of it, rows numbered (token, head in the group) so the
// group's query heads share each key tile; a warp takes 4 rows, a lane one
// key of the 32-key tile for the scores and up to 4 head dimensions for the
// output. Arithmetic in float32 on the CUDA cores (simple and exact; tensor
// cores are a later step). Head size up to QT_CUDA_MAX_HEAD.
#include <string.h>

#include "backend/cuda-impl.cuh"

#define BQ 16            // query rows per block (forward, dQ)
#define RQ 4             // query rows per warp
#define BK 32            // keys per tile (forward, dQ)
#define BKV 32           // keys per block (dK, dV)
#define BR 32            // query rows per tile (dK, dV)
#define ATT_THREADS 128

struct AttnArgs {
    float *out, *lse;                 // forward outputs
    float *dq, *dk, *dv;              // backward outputs (+=)
    const float *q, *k, *v, *dout;
    const float *lse_in, *rowdot;     // backward: saved lse, D = rowsum(dO * O), both (N, NH)
    float *kc, *vc;                   // one layer of the KV cache, or NULL (training)
    const qt_cuda_seq *seqs;
    int n_ctx, NH, NKV, HS, HSP;      // HSP: padded row length in shared memory (odd: no bank conflicts)
    float scale;
};

// Key (or value) position j of sequence s, kv head h: from the cache before
// pos0, else from this batch's rows.
__device__ __forceinline__ const float *kv_row(const AttnArgs &a, const float *act, const float *cache,
                                               const qt_cuda_seq &s, int h, int j) {
    if (cache && j < s.pos0) return cache + ((size_t)(s.slot * a.NKV + h) * a.n_ctx + j) * a.HS;
    return act + (size_t)(s.start + j - s.pos0) * ((size_t)a.NKV * a.HS) + (size_t)h * a.HS;
}

// Rows [r0, r0 + nrow) of the block's (token, group head) numbering into
// shared memory (n_rows x HSP), zeros past the sequence.
__device__ __forceinline__ void load_rows(float *dst, const float *src, const AttnArgs &a, const qt_cuda_seq &s, int h,
                                          int r0, int nrow, int nrows) {
    const int G = a.NH / a.NKV, HS = a.HS;
    for (int e = threadIdx.x; e < nrow * HS; e += blockDim.x) {
        const int i = e / HS, d = e % HS, row = r0 + i;
        float val = 0.0f;
        if (row < nrows) {
            const int t = row / G, g = row % G;
            val = src[(size_t)(s.start + t) * ((size_t)a.NH * HS) + (size_t)(h * G + g) * HS + d];
        }
        dst[i * a.HSP + d] = val;
    }
}

// Keys and values [j0, j0 + BK) (zeros from n_keys on) into Ks, Vs.
__device__ __forceinline__ void load_kv_tile(float *Ks, float *Vs, const AttnArgs &a, const qt_cuda_seq &s, int h,
                                             int j0, int n_keys) {
    const int HS = a.HS;
    for (int e = threadIdx.x; e < BK * HS; e += blockDim.x) {
        const int jj = e / HS, d = e % HS, j = j0 + jj;
        float kv = 0.0f, vv = 0.0f;
        if (j < n_keys) {
            kv = kv_row(a, a.k, a.kc, s, h, j)[d];
            vv = kv_row(a, a.v, a.vc, s, h, j)[d];
        }
        Ks[jj * a.HSP + d] = kv;
        Vs[jj * a.HSP + d] = vv;
    }
}

// acc[i][dd] += sum over the tile's keys jj of c[i] (as held by lane jj) *
// M[jj][dd * 32 + lane]: P V in the forward, dS K for dQ.
template <int D>
__device__ __forceinline__ void tile_accumulate(float (&acc)[RQ][D], const float (&c)[RQ], const float *M, int HSP,
                                                int HS, int lane) {
    for (int jj = 0; jj < BK; jj++) {
        float md[D];
#pragma unroll
        for (int dd = 0; dd < D; dd++) {
            const int d = dd * 32 + lane;
            md[dd] = d < HS ? M[jj * HSP + d] : 0.0f;
        }
#pragma unroll
        for (int i = 0; i < RQ; i++) {
            const float cj = __shfl_sync(0xffffffffu, c[i], jj);
#pragma unroll
            for (int dd = 0; dd < D; dd++) acc[i][dd] = fmaf(cj, md[dd], acc[i][dd]);
        }
    }
}

// ---- forward ----

template <int D>
__global__ void __launch_bounds__(ATT_THREADS) attn_fwd_kernel(const AttnArgs a) {
    const qt_cuda_seq s = a.seqs[blockIdx.z];
    const int h = blockIdx.y, G = a.NH / a.NKV, nrows = G * s.T, r0 = blockIdx.x * BQ;
    if (r0 >= nrows) return;
    const int HS = a.HS, HSP = a.HSP, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    extern __shared__ float sm[];
    float *Qs = sm, *Ks = Qs + BQ * HSP, *Vs = Ks + BK * HSP;

    // the first block of each (sequence, kv head) stores the new keys and
    // values; no block of this launch reads the cache at positions >= pos0
    if (a.kc && blockIdx.x == 0) {
        const size_t kvd = (size_t)a.NKV * HS;
        for (int e = threadIdx.x; e < s.T * HS; e += blockDim.x) {
            const int t = e / HS, d = e % HS;
            const size_t src = (size_t)(s.start + t) * kvd + (size_t)h * HS + d;
            const size_t dst = ((size_t)(s.slot * a.NKV + h) * a.n_ctx + s.pos0 + t) * HS + d;
            a.kc[dst] = a.k[src];
            a.vc[dst] = a.v[src];
        }
    }
    load_rows(Qs, a.q, a, s, h, r0, BQ, nrows);

    int pos[RQ];   // position of each row's token; -1: no row
    float m[RQ], l[RQ], o[RQ][D];
#pragma unroll
    for (int i = 0; i < RQ; i++) {
        const int row = r0 + warp * RQ + i;
        pos[i] = row < nrows ? s.pos0 + row / G : -1;
        m[i] = -INFINITY;
        l[i] = 0.0f;
#pragma unroll
        for (int dd = 0; dd < D; dd++) o[i][dd] = 0.0f;
    }
    const int t_last = min(s.T - 1, (r0 + BQ - 1) / G);
    const int n_keys = s.pos0 + t_last + 1;
    for (int j0 = 0; j0 < n_keys; j0 += BK) {
        __syncthreads();   // the previous tile is used up (and Qs written)
        load_kv_tile(Ks, Vs, a, s, h, j0, n_keys);
        __syncthreads();
        float sc[RQ];
#pragma unroll
        for (int i = 0; i < RQ; i++) sc[i] = 0.0f;
        const float *kr = Ks + lane * HSP;
        for (int d = 0; d < HS; d++) {
            const float kd = kr[d];
#pragma unroll
            for (int i = 0; i < RQ; i++) sc[i] = fmaf(Qs[(warp * RQ + i) * HSP + d], kd, sc[i]);
        }
        const int j = j0 + lane;
        float p[RQ];
#pragma unroll
        for (int i = 0; i < RQ; i++) {
            const bool valid = pos[i] >= 0 && j <= pos[i];
            const float x = valid ? sc[i] * a.scale : -INFINITY;
            const float mn = fmaxf(m[i], warp_max(x));   // the same in every lane
            if (mn == -INFINITY) {
                p[i] = 0.0f;
                continue;
            }
            p[i] = valid ? expf(x - mn) : 0.0f;
            const float alpha = expf(m[i] - mn);
            l[i] = l[i] * alpha + warp_sum(p[i]);
            m[i] = mn;
#pragma unroll
            for (int dd = 0; dd < D; dd++) o[i][dd] *= alpha;
        }
        tile_accumulate<D>(o, p, Vs, HSP, HS, lane);
    }
#pragma unroll
    for (int i = 0; i < RQ; i++) {
        if (pos[i] < 0) continue;
        const int row = r0 + warp * RQ + i, t = row / G, hg = h * G + row % G;
        const float inv = 1.0f / l[i];
        float *orow = a.out + (size_t)(s.start + t) * ((size_t)a.NH * HS) + (size_t)hg * HS;
#pragma unroll
        for (int dd = 0; dd < D; dd++) {
            const int d = dd * 32 + lane;
            if (d < HS) orow[d] = o[i][dd] * inv;
        }
        if (a.lse && lane == 0) a.lse[(size_t)(s.start + t) * a.NH + hg] = m[i] + logf(l[i]);
    }
}

// ---- backward ----

// D (rows) = rowsum(dO * O) over HS, one warp per (token, head) row.
__global__ void rowdot_kernel(float *D, const float *dout, const float *out, int64_t rows, int HS) {
    const int lane = threadIdx.x & 31;
    const int64_t warps = (int64_t)gridDim.x * (blockDim.x >> 5);
    for (int64_t r = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) >> 5; r < rows; r += warps) {
        float s = 0.0f;
        for (int d = lane; d < HS; d += 32) s = fmaf(dout[r * HS + d], out[r * HS + d], s);
        s = warp_sum(s);
        if (lane == 0) D[r] = s;
    }
}

// dQ += dS K over the keys each row sees; blocks as in the forward.
template <int D>
__global__ void __launch_bounds__(ATT_THREADS) attn_bwd_dq_kernel(const AttnArgs a) {
    const qt_cuda_seq s = a.seqs[blockIdx.z];
    const int h = blockIdx.y, G = a.NH / a.NKV, nrows = G * s.T, r0 = blockIdx.x * BQ;
    if (r0 >= nrows) return;
    const int HS = a.HS, HSP = a.HSP, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    extern __shared__ float sm[];
    float *Qs = sm, *dOs = Qs + BQ * HSP, *Ks = dOs + BQ * HSP, *Vs = Ks + BK * HSP;
    load_rows(Qs, a.q, a, s, h, r0, BQ, nrows);
    load_rows(dOs, a.dout, a, s, h, r0, BQ, nrows);

    int pos[RQ];
    float lse[RQ], rd[RQ], acc[RQ][D];
#pragma unroll
    for (int i = 0; i < RQ; i++) {
        const int row = r0 + warp * RQ + i;
        pos[i] = row < nrows ? row / G : -1;
        const size_t li = row < nrows ? (size_t)(s.start + row / G) * a.NH + h * G + row % G : 0;
        lse[i] = row < nrows ? a.lse_in[li] : 0.0f;
        rd[i] = row < nrows ? a.rowdot[li] : 0.0f;
#pragma unroll
        for (int dd = 0; dd < D; dd++) acc[i][dd] = 0.0f;
    }
    const int n_keys = min(s.T - 1, (r0 + BQ - 1) / G) + 1;
    for (int j0 = 0; j0 < n_keys; j0 += BK) {
        __syncthreads();
        load_kv_tile(Ks, Vs, a, s, h, j0, n_keys);
        __syncthreads();
        float sc[RQ], dp[RQ];
#pragma unroll
        for (int i = 0; i < RQ; i++) sc[i] = dp[i] = 0.0f;
        const float *kr = Ks + lane * HSP, *vr = Vs + lane * HSP;
        for (int d = 0; d < HS; d++) {
            const float kd = kr[d], vd = vr[d];
#pragma unroll
            for (int i = 0; i < RQ; i++) {
                sc[i] = fmaf(Qs[(warp * RQ + i) * HSP + d], kd, sc[i]);
                dp[i] = fmaf(dOs[(warp * RQ + i) * HSP + d], vd, dp[i]);
            }
        }
        const int j = j0 + lane;
        float ds[RQ];
#pragma unroll
        for (int i = 0; i < RQ; i++) {
            const bool valid = pos[i] >= 0 && j <= pos[i];
            const float p = valid ? expf(sc[i] * a.scale - lse[i]) : 0.0f;
            ds[i] = p * (dp[i] - rd[i]) * a.scale;
        }
        tile_accumulate<D>(acc, ds, Ks, HSP, HS, lane);
    }
#pragma unroll
    for (int i = 0; i < RQ; i++) {
        if (pos[i] < 0) continue;
        const int row = r0 + warp * RQ + i, t = row / G, hg = h * G + row % G;
        float *dst = a.dq + (size_t)(s.start + t) * ((size_t)a.NH * HS) + (size_t)hg * HS;
#pragma unroll
        for (int dd = 0; dd < D; dd++) {
            const int d = dd * 32 + lane;
            if (d < HS) dst[d] += acc[i][dd];
        }
    }
}

// dK, dV += over every (token, group head) row that sees the block's 32
// keys. Warp w owns keys 8w .. 8w + 7, lane the head dimensions lane + 32 dd.
// Per tile of 32 rows: P and dS (keys x rows) into shared memory (lane = row
// there), then dV += P dO, dK += dS Q.
template <int D>
__global__ void __launch_bounds__(ATT_THREADS) attn_bwd_dkv_kernel(const AttnArgs a) {
    const qt_cuda_seq s = a.seqs[blockIdx.z];
    const int h = blockIdx.y, G = a.NH / a.NKV, nrows = G * s.T, k0 = blockIdx.x * BKV;
    if (k0 >= s.T) return;
    const int HS = a.HS, HSP = a.HSP, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    extern __shared__ float sm[];
    float *Ks = sm, *Vs = Ks + BKV * HSP, *Qs = Vs + BKV * HSP, *dOs = Qs + BR * HSP;
    float *Ps = dOs + BR * HSP, *dSs = Ps + BKV * (BR + 1), *ls = dSs + BKV * (BR + 1), *rds = ls + BR;
    load_kv_tile(Ks, Vs, a, s, h, k0, s.T);

    float ak[8][D], av[8][D];
#pragma unroll
    for (int jj = 0; jj < 8; jj++)
#pragma unroll
        for (int dd = 0; dd < D; dd++) ak[jj][dd] = av[jj][dd] = 0.0f;

    for (int r0 = k0 * G; r0 < nrows; r0 += BR) {
        __syncthreads();   // the previous tile is used up
        load_rows(Qs, a.q, a, s, h, r0, BR, nrows);
        load_rows(dOs, a.dout, a, s, h, r0, BR, nrows);
        if (threadIdx.x < BR) {
            const int row = r0 + threadIdx.x;
            const size_t li = row < nrows ? (size_t)(s.start + row / G) * a.NH + h * G + row % G : 0;
            ls[threadIdx.x] = row < nrows ? a.lse_in[li] : 0.0f;
            rds[threadIdx.x] = row < nrows ? a.rowdot[li] : 0.0f;
        }
        __syncthreads();
        // scores of row `lane` against keys 8 warp + jj
        float sc[8], dp[8];
#pragma unroll
        for (int jj = 0; jj < 8; jj++) sc[jj] = dp[jj] = 0.0f;
        const float *qr = Qs + lane * HSP, *gr = dOs + lane * HSP;
        for (int d = 0; d < HS; d++) {
            const float qd = qr[d], gd = gr[d];
#pragma unroll
            for (int jj = 0; jj < 8; jj++) {
                sc[jj] = fmaf(qd, Ks[(warp * 8 + jj) * HSP + d], sc[jj]);
                dp[jj] = fmaf(gd, Vs[(warp * 8 + jj) * HSP + d], dp[jj]);
            }
        }
        const int row = r0 + lane, t = row / G;
#pragma unroll
        for (int jj = 0; jj < 8; jj++) {
            const int kj = k0 + warp * 8 + jj;
            const bool valid = row < nrows && kj < s.T && kj <= t;
            const float p = valid ? expf(sc[jj] * a.scale - ls[lane]) : 0.0f;
            Ps[(warp * 8 + jj) * (BR + 1) + lane] = p;
            dSs[(warp * 8 + jj) * (BR + 1) + lane] = p * (dp[jj] - rds[lane]) * a.scale;
        }
        __syncthreads();
        for (int i = 0; i < BR; i++) {
            float qd[D], gd[D];
#pragma unroll
            for (int dd = 0; dd < D; dd++) {
                const int d = dd * 32 + lane;
                qd[dd] = d < HS ? Qs[i * HSP + d] : 0.0f;
                gd[dd] = d < HS ? dOs[i * HSP + d] : 0.0f;
            }
#pragma unroll
            for (int jj = 0; jj < 8; jj++) {
                const float p = Ps[(warp * 8 + jj) * (BR + 1) + i], ds = dSs[(warp * 8 + jj) * (BR + 1) + i];
#pragma unroll
                for (int dd = 0; dd < D; dd++) {
                    av[jj][dd] = fmaf(p, gd[dd], av[jj][dd]);
                    ak[jj][dd] = fmaf(ds, qd[dd], ak[jj][dd]);
                }
            }
        }
    }
    const size_t kvd = (size_t)a.NKV * HS;
#pragma unroll
    for (int jj = 0; jj < 8; jj++) {
        const int kj = k0 + warp * 8 + jj;
        if (kj >= s.T) continue;
        const size_t o = (size_t)(s.start + kj) * kvd + (size_t)h * HS;
#pragma unroll
        for (int dd = 0; dd < D; dd++) {
            const int d = dd * 32 + lane;
            if (d >= HS) continue;
            if (a.dk) a.dk[o + d] += ak[jj][dd];
            if (a.dv) a.dv[o + d] += av[jj][dd];
        }
    }
}

// ---- launchers ----

static size_t smem_fwd(int HSP) { return (size_t)(BQ + 2 * BK) * HSP * sizeof(float); }
static size_t smem_dq(int HSP) { return (size_t)(2 * BQ + 2 * BK) * HSP * sizeof(float); }
static size_t smem_dkv(int HSP) {
    return ((size_t)(2 * BKV + 2 * BR) * HSP + 2 * (size_t)BKV * (BR + 1) + 2 * BR) * sizeof(float);
}
static int padded(int HS) { return HS % 2 ? HS : HS + 1; }

template <int D>
static int set_smem_limits(qt_cuda *c) {
    const int HSP = padded(32 * D);
    CU_TRY(c, cudaFuncSetAttribute(attn_fwd_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem_fwd(HSP)),
           "attention shared memory");
    CU_TRY(c, cudaFuncSetAttribute(attn_bwd_dq_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem_dq(HSP)),
           "attention shared memory");
    CU_TRY(c, cudaFuncSetAttribute(attn_bwd_dkv_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                   (int)smem_dkv(HSP)),
           "attention shared memory");
    return 0;
}

// Common checks, the sequence table on the device (uploaded only when it
// changed: every layer of a forward passes the same one), grid sizes.
static int prepare(qt_cuda *c, AttnArgs *a, const qt_cuda_seq *seqs, int n_seq, int NH, int NKV, int HS, int *max_T,
                   int64_t *n_tok) {
    if (HS < 1 || HS > QT_CUDA_MAX_HEAD || NKV < 1 || NH % NKV || n_seq > 65535) {
        snprintf(c->err, sizeof(c->err),
                 "attention with head size %d, %d heads, %d key/value heads, %d sequences is not supported on the GPU "
                 "(head size up to %d)", HS, NH, NKV, n_seq, QT_CUDA_MAX_HEAD);
        return -1;
    }
    if (!c->attn_attr_done) {
        if (set_smem_limits<1>(c) || set_smem_limits<2>(c) || set_smem_limits<4>(c)) return -1;
        c->attn_attr_done = true;
    }
    *max_T = 0;
    *n_tok = 0;
    for (int i = 0; i < n_seq; i++) {
        *max_T = seqs[i].T > *max_T ? seqs[i].T : *max_T;
        const int64_t end = (int64_t)seqs[i].start + seqs[i].T;
        *n_tok = end > *n_tok ? end : *n_tok;
    }
    if (n_seq != c->seq_n || memcmp(seqs, c->seq_host, sizeof(qt_cuda_seq) * (size_t)n_seq) != 0) {
        if (n_seq > c->seq_cap) {
            cudaFree(c->seq_dev);
            c->seq_dev = nullptr;
            c->seq_cap = 0;
            free(c->seq_host);
            c->seq_host = (qt_cuda_seq *)malloc(sizeof(qt_cuda_seq) * (size_t)n_seq);
            CU_TRY(c, cudaMalloc(&c->seq_dev, sizeof(qt_cuda_seq) * (size_t)n_seq), "the sequence table");
            c->seq_cap = n_seq;
        }
        memcpy(c->seq_host, seqs, sizeof(qt_cuda_seq) * (size_t)n_seq);
        c->seq_n = n_seq;
        CU_TRY(c, cudaMemcpyAsync(c->seq_dev, c->seq_host, sizeof(qt_cuda_seq) * (size_t)n_seq, cudaMemcpyHostToDevice,
                                  c->stream),
               "uploading the sequence table");
    }
    memset(a, 0, sizeof(*a));
    a->seqs = c->seq_dev;
    a->NH = NH;
    a->NKV = NKV;
    a->HS = HS;
    a->HSP = padded(HS);
    a->scale = 1.0f / sqrtf((float)HS);
    return 0;
}

extern "C" int qt_cuda_attention(qt_cuda *c, float *out, float *lse, const float *q, const float *k, const float *v,
                                 const qt_cuda_seq *seqs_host, int n_seq, float *kcache, float *vcache, int n_ctx,
                                 int NH, int NKV, int HS) {
    if (n_seq <= 0) return 0;
    AttnArgs a;
    int max_T;
    int64_t n_tok;
    if (prepare(c, &a, seqs_host, n_seq, NH, NKV, HS, &max_T, &n_tok)) return -1;
    if (max_T == 0) return 0;
    a.out = out;
    a.lse = lse;
    a.q = q;
    a.k = k;
    a.v = v;
    a.kc = kcache;
    a.vc = vcache;
    a.n_ctx = n_ctx;
    const int G = NH / NKV;
    const dim3 grid((unsigned)((G * max_T + BQ - 1) / BQ), (unsigned)NKV, (unsigned)n_seq);
    const size_t sh = smem_fwd(a.HSP);
    if (HS <= 32) attn_fwd_kernel<1><<<grid, ATT_THREADS, sh, c->stream>>>(a);
    else if (HS <= 64) attn_fwd_kernel<2><<<grid, ATT_THREADS, sh, c->stream>>>(a);
    else attn_fwd_kernel<4><<<grid, ATT_THREADS, sh, c->stream>>>(a);
    CU_LAUNCHED(c, "attention");
    return 0;
}

extern "C" int qt_cuda_attention_backward(qt_cuda *c, float *dq, float *dk, float *dv, const float *dout,
                                          const float *out, const float *lse, const float *q, const float *k,
                                          const float *v, const qt_cuda_seq *seqs_host, int n_seq, int NH, int NKV,
                                          int HS) {
    if (n_seq <= 0 || (!dq && !dk && !dv)) return 0;
    AttnArgs a;
    int max_T;
    int64_t n_tok;
    if (prepare(c, &a, seqs_host, n_seq, NH, NKV, HS, &max_T, &n_tok)) return -1;
    if (max_T == 0) return 0;
    float *rowdot = (float *)qt_cu_scratch(c, (void **)&c->fbuf, &c->fbuf_n, sizeof(float) * (size_t)n_tok * NH,
                                           "attention backward scratch");
    if (!rowdot) return -1;
    rowdot_kernel<<<qt_cu_blocks(n_tok * NH * 32), 256, 0, c->stream>>>(rowdot, dout, out, n_tok * NH, HS);
    CU_LAUNCHED(c, "attention backward (row sums)");
    a.dq = dq;
    a.dk = dk;
    a.dv = dv;
    a.q = q;
    a.k = k;
    a.v = v;
    a.dout = dout;
    a.lse_in = lse;
    a.rowdot = rowdot;
    const int G = NH / NKV;
    if (dq) {
        const dim3 grid((unsigned)((G * max_T + BQ - 1) / BQ), (unsigned)NKV, (unsigned)n_seq);
        const size_t sh = smem_dq(a.HSP);
        if (HS <= 32) attn_bwd_dq_kernel<1><<<grid, ATT_THREADS, sh, c->stream>>>(a);
        else if (HS <= 64) attn_bwd_dq_kernel<2><<<grid, ATT_THREADS, sh, c->stream>>>(a);
        else attn_bwd_dq_kernel<4><<<grid, ATT_THREADS, sh, c->stream>>>(a);
        CU_LAUNCHED(c, "attention backward (dq)");
    }
    if (dk || dv) {
        const dim3 grid((unsigned)((max_T + BKV - 1) / BKV), (unsigned)NKV, (unsigned)n_seq);
        const size_t sh = smem_dkv(a.HSP);
        if (HS <= 32) attn_bwd_dkv_kernel<1><<<grid, ATT_THREADS, sh, c->stream>>>(a);
        else if (HS <= 64) attn_bwd_dkv_kernel<2><<<grid, ATT_THREADS, sh, c->stream>>>(a);
        else attn_bwd_dkv_kernel<4><<<grid, ATT_THREADS, sh, c->stream>>>(a);
        CU_LAUNCHED(c, "attention backward (dk, dv)");
    }
    return 0;
}
