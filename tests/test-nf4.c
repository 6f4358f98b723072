// test-nf4.c: bitsandbytes NF4 (quant/nf4.h) against bitsandbytes'
// published definitions (tests/ref/make_ref_nf4.py re-writes them in PyTorch):
//   - the code book is get_4bit_type("nf4"), the dynamic map create_dynamic_map();
//   - quantization gives bitsandbytes' packed bytes and absmax bit for bit,
//     dequantization its float32 values bit for bit, with and without double
//     quantization of the absmax;
//   - every kernel table's NF4 kernels: to_float bit-exact, vec_dot / gemv /
//     matmul (decode, tiles, packed gemm) and matmul_t against double sums;
//   - a bitsandbytes 4-bit checkpoint (tests/data/tiny-mixtral-bnb) loads as
//     NF4 tensors that dequantize bit for bit to bitsandbytes' values, and
//     broken quant states are refused with one error naming the tensor.
// (Its logits and QLoRA gradients on an NF4 base are in test-moe.c.)
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/base.h"
#include "base/pool.h"
#include "io/safetensors.h"
#include "kernels/kernels.h"
#include "model/model.h"
#include "quant/nf4.h"
#include "test.h"
#include "model-common.h"

// Dot products of n float32 products summed in different orders, relative to
// sum |w * x|: float32 rounding, ~n * 2^-24 at worst, far below this.
#define DOT_RTOL 2e-6
// Double quantization's offset is the mean of the absmax: summed in double
// here, in float32 by PyTorch; a one-ulp difference moves each d by about an
// ulp of the offset.
#define DQ_RTOL 1e-6

// bitsandbytes functional.py get_4bit_type("nf4"), as printed there.
static const double bnb_nf4[16] = {
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
    -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
    0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
    0.7229568362236023, 1.0,
};

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static float frand(void) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (float)((g_rng >> 11) * (1.0 / 9007199254740992.0) * 2 - 1);
}

static void test_reference(void) {
    for (int i = 0; i < 16; i++) CHECK(qt_nf4_values[i] == (float)bnb_nf4[i], "code %d: %.9g", i, qt_nf4_values[i]);
    size_t n;
    char *buf = qt_read_file("tests/data/nf4-ref.bin", &n);
    CHECK(buf != NULL, "cannot read tests/data/nf4-ref.bin");
    if (!buf) return;
    const char *p = buf + 4, *end = buf + n;
    uint32_t v, rows, cols;
    int bad = n < 4 || memcmp(buf, "QTN4", 4) || rd(&p, end, &v, 4) || v != 1 || rd(&p, end, &rows, 4) ||
              rd(&p, end, &cols, 4) || rows > 64 || cols > 4096 || cols % QK_NF4;
    CHECK(!bad, "nf4-ref.bin header");
    if (bad) { free(buf); return; }
    const size_t ne = (size_t)rows * cols, nb = ne / QK_NF4, nn = (nb + QT_NF4_DQ_BLOCK - 1) / QT_NF4_DQ_BLOCK;
    float *x = malloc(4 * ne), *absmax = malloc(4 * nb), *nabs = malloc(4 * nn), *deq = malloc(4 * ne);
    float *deq_dq = malloc(4 * ne), *y = malloc(4 * ne), offset;
    uint8_t *packed = malloc(ne / 2), *qabs = malloc(nb);
    bad = rd(&p, end, x, 4 * ne) || rd(&p, end, packed, ne / 2) || rd(&p, end, absmax, 4 * nb) ||
          rd(&p, end, qabs, nb) || rd(&p, end, nabs, 4 * nn) || rd(&p, end, &offset, 4) || rd(&p, end, deq, 4 * ne) ||
          rd(&p, end, deq_dq, 4 * ne) || p != end;
    CHECK(!bad, "nf4-ref.bin body");
    block_nf4 *b = malloc(sizeof(block_nf4) * nb);
    qt_quantize_row_nf4_ref(x, b, (int64_t)ne);
    int bad_q = 0, bad_d = 0;
    for (size_t i = 0; i < nb; i++) {
        bad_q += memcmp(b[i].qs, packed + i * 32, 32) != 0;
        bad_d += memcmp(&b[i].d, &absmax[i], 4) != 0;
    }
    CHECK(bad_q == 0 && bad_d == 0, "quantize_4bit(nf4): %d blocks' codes and %d absmax differ", bad_q, bad_d);
    qt_dequantize_row_nf4(b, y, (int64_t)ne);
    CHECK(!memcmp(y, deq, 4 * ne), "dequantize_4bit(nf4) not bit-exact");
    // double quantization: the d bitsandbytes computes from its 8-bit codes
    qt_nf4_double_quant(b, (int64_t)nb);
    qt_dequantize_row_nf4(b, y, (int64_t)ne);
    double worst = 0;
    for (size_t i = 0; i < ne; i++) worst = fmax(worst, fabs(y[i] - deq_dq[i]) / fmax(fabs(deq_dq[i]), 1e-30));
    CHECK(worst <= DQ_RTOL, "double-quantized dequantization: rel diff %g", worst);
    // the same from bitsandbytes' stored codes and offset: bit-exact
    for (size_t i = 0; i < nb; i++) b[i].d = qt_nf4_dynamic_map[qabs[i]] * nabs[i / QT_NF4_DQ_BLOCK] + offset;
    qt_dequantize_row_nf4(b, y, (int64_t)ne);
    CHECK(!memcmp(y, deq_dq, 4 * ne), "dequantization from bitsandbytes' nested state not bit-exact");
    printf("nf4: quantize and dequantize bit-exact (%zu blocks); double quant rel diff %.2g\n", nb, worst);
    free(buf); free(x); free(absmax); free(nabs); free(deq); free(deq_dq); free(y); free(packed); free(qabs); free(b);
}

// NF4 kernels of every table against double sums and the reference dequantizer.
static void test_kernels(void) {
    const qt_kernel_table *tables[] = { qt_kernels_ref(), qt_kernels_avx2(), qt_kernels_avx512(), qt_kernels_neon() };
    enum { OUT = 77, IN = 320, TMAX = 40 };
    float *w = malloc(sizeof(float) * OUT * IN), *wd = malloc(sizeof(float) * OUT * IN), *row = malloc(sizeof(float) * IN);
    block_nf4 *q = malloc(sizeof(block_nf4) * OUT * IN / QK_NF4);
    float *x = malloc(sizeof(float) * TMAX * IN), *yv = malloc(sizeof(float) * TMAX * OUT);
    float *dy = malloc(sizeof(float) * TMAX * OUT), *dx = malloc(sizeof(float) * TMAX * IN);
    for (int i = 0; i < OUT * IN; i++) w[i] = frand() * (1 + (i % 7));
    for (int i = 0; i < TMAX * IN; i++) x[i] = frand();
    for (int i = 0; i < TMAX * OUT; i++) dy[i] = frand();
    qt_quantize_row_nf4_ref(w, q, OUT * IN);
    qt_dequantize_row_nf4(q, wd, OUT * IN);
    qt_pool *pool = qt_pool_init(2);
    for (size_t k = 0; k < sizeof(tables) / sizeof(tables[0]); k++) {
        const qt_kernel_table *kt = tables[k];
        if (!qt_kernels_runnable(kt)) continue;
        const qt_kernel_traits *tr = &kt->type[QT_TYPE_NF4];
        CHECK(tr->vec_dot && tr->to_float && tr->vec_dot_type == QT_TYPE_F32, "%s: nf4 entries", kt->isa);
        if (!tr->vec_dot) continue;
        int bad_tf = 0;
        for (int r = 0; r < OUT; r++) {
            tr->to_float(q + (size_t)r * IN / QK_NF4, row, IN);
            bad_tf += memcmp(row, wd + (size_t)r * IN, sizeof(float) * IN) != 0;
        }
        CHECK(bad_tf == 0, "%s: to_float differs from the reference in %d rows", kt->isa, bad_tf);
        double worst = 0;
        const int Ts[] = { 1, 5, TMAX };
        qt_kctx kc = { .kt = kt, .pool = pool, .prec = QT_PREC_FAST };
        for (int ti = 0; ti < 3; ti++) {
            const int T = Ts[ti];
            qt_matmul(&kc, yv, x, q, QT_TYPE_NF4, IN, OUT, T);   // T == 1: gemv; 5: tiles; 40: packed gemm
            for (int t = 0; t < T; t++)
                for (int r = 0; r < OUT; r++) {
                    double s = 0, a = 0;
                    for (int i = 0; i < IN; i++) {
                        s += (double)wd[(size_t)r * IN + i] * x[(size_t)t * IN + i];
                        a += fabs((double)wd[(size_t)r * IN + i] * x[(size_t)t * IN + i]);
                    }
                    worst = fmax(worst, fabs(s - yv[(size_t)t * OUT + r]) / a);
                }
            float s1;
            tr->vec_dot(IN, &s1, q + 3 * IN / QK_NF4, x);
            double s = 0, a = 0;
            for (int i = 0; i < IN; i++) s += (double)wd[3 * IN + i] * x[i], a += fabs((double)wd[3 * IN + i] * x[i]);
            worst = fmax(worst, fabs(s - s1) / a);
        }
        // backward to the input: dx = dy @ W
        memset(dx, 0, sizeof(float) * TMAX * IN);
        qt_matmul_t(&kc, dx, dy, q, QT_TYPE_NF4, IN, OUT, TMAX);
        for (int t = 0; t < TMAX; t++)
            for (int i = 0; i < IN; i++) {
                double s = 0, a = 0;
                for (int r = 0; r < OUT; r++) {
                    s += (double)dy[(size_t)t * OUT + r] * wd[(size_t)r * IN + i];
                    a += fabs((double)dy[(size_t)t * OUT + r] * wd[(size_t)r * IN + i]);
                }
                worst = fmax(worst, fabs(s - dx[(size_t)t * IN + i]) / a);
            }
        CHECK(worst <= DOT_RTOL, "%s: nf4 products differ from double by %g of sum |w x|", kt->isa, worst);
        printf("%-6s nf4 vec_dot/gemv/matmul/matmul_t: worst |y - double| / sum|w x| = %.2g\n", kt->isa, worst);
    }
    qt_pool_free(pool);
    free(w); free(wd); free(row); free(q); free(x); free(yv); free(dy); free(dx);
}

// The bitsandbytes checkpoint: NF4 tensors, dequantized as bitsandbytes does.
static void test_bnb(void) {
    const char *dir = "tests/data/tiny-mixtral-bnb";
    qt_model *m = qt_model_load(dir);
    CHECK(m != NULL, "load %s", dir);
    if (!m) return;
    CHECK(qt_model_linear(m, 0, 0)->type == QT_TYPE_NF4 && qt_model_expert(m, 1, m->arch->linears[5].weight, 2)->type ==
              QT_TYPE_NF4 && qt_model_global(m, QT_G_OUTPUT)->type == QT_TYPE_F32,
          "linears NF4, lm_head float");
    size_t n;
    char *buf = qt_read_file("tests/data/tiny-mixtral-bnb/deq.bin", &n);
    CHECK(buf != NULL, "deq.bin");
    const char *p = buf + 4, *end = buf + n;
    uint32_t v, count;
    int bad = !buf || n < 4 || memcmp(buf, "QTDQ", 4) || rd(&p, end, &v, 4) || v != 1 || rd(&p, end, &count, 4);
    for (uint32_t k = 0; !bad && k < count; k++) {
        uint32_t len, cnt;
        char name[160];
        bad = rd(&p, end, &len, 4) || len >= sizeof(name) || rd(&p, end, name, len);
        if (bad) break;
        name[len] = 0;
        bad = rd(&p, end, &cnt, 4) || (size_t)(end - p) < 4 * (size_t)cnt;
        if (bad) break;
        // find the tensor by its HF name among the layer tensors and experts
        const qt_tensor *t = NULL;
        for (int il = 0; il < m->cfg.n_layer && !t; il++)
            for (int s = 0; s < m->arch->n_layer_tensors && !t; s++) {
                const qt_tensor_desc *d = &m->arch->layer[s];
                int ne = d->flags & QT_TF_EXPERT ? m->cfg.n_expert : 1;
                for (int e = 0; e < ne && !t; e++) {
                    char hn[160];
                    snprintf(hn, sizeof(hn), d->hf, il, e);
                    if (!strcmp(hn, name)) t = d->flags & QT_TF_EXPERT ? qt_model_expert(m, il, s, e) : qt_model_tensor(m, il, s);
                }
            }
        CHECK(t && t->type == QT_TYPE_NF4 && (size_t)(t->ne0 * t->ne1) == cnt, "%s: an NF4 tensor of %u", name, cnt);
        if (t && (size_t)(t->ne0 * t->ne1) == cnt) {
            float *y = malloc(4 * (size_t)cnt);
            qt_dequantize_row_nf4(t->data, y, (int64_t)cnt);
            CHECK(!memcmp(y, p, 4 * (size_t)cnt), "%s: dequantization not bit-exact with bitsandbytes", name);
            free(y);
        }
        p += 4 * (size_t)cnt;
    }
    CHECK(!bad && p == end, "deq.bin format");
    printf("bitsandbytes checkpoint: %u tensors dequantize bit for bit\n", count);
    free(buf);
    qt_model_free(m);
}

// A copy of the bnb checkpoint with len bytes at offset `at` of its
// safetensors file replaced by `to` must fail with one error holding `word`.
static void expect_broken(long at, const void *to, size_t len, const char *word) {
    char dir[] = "/tmp/qt-bnb-XXXXXX", path[600];
    QT_ASSERT(mkdtemp(dir));
    size_t n, nc;
    char *cfg = qt_read_file("tests/data/tiny-mixtral-bnb/config.json", &nc);
    char *st = qt_read_file("tests/data/tiny-mixtral-bnb/model.safetensors", &n);
    QT_ASSERT(cfg && st && at >= 0 && (size_t)at + len <= n);
    memcpy(st + at, to, len);
    snprintf(path, sizeof(path), "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    fwrite(cfg, 1, nc, f);
    fclose(f);
    snprintf(path, sizeof(path), "%s/model.safetensors", dir);
    f = fopen(path, "wb");
    fwrite(st, 1, n, f);
    fclose(f);
    test_capture();
    qt_model *m = qt_model_load(dir);
    test_release();
    CHECK(!m && test_n_errors == 1 && strstr(test_last_log, word), "broken checkpoint: want one error with '%s', got %d: %s", word,
          test_n_errors, test_last_log);
    qt_model_free(m);
    free(cfg);
    free(st);
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    CHECK(system(cmd) == 0, "cleanup");
}

// Offset of the first occurrence of len bytes in the checkpoint's file.
static long find_bytes(const void *what, size_t len) {
    size_t n;
    char *st = qt_read_file("tests/data/tiny-mixtral-bnb/model.safetensors", &n);
    QT_ASSERT(st);
    char *hit = memmem(st, n, what, len);
    long at = hit ? (long)(hit - st) : -1;
    free(st);
    return at;
}

static void test_broken(void) {
    const char *fp4 = "quant_state.bitsandbytes__fp4", *bs = "\"blocksize\": 32";
    expect_broken(find_bytes("quant_state.bitsandbytes__nf4", strlen(fp4)), fp4, strlen(fp4), "fp4 is not supported");
    expect_broken(find_bytes("\"blocksize\": 64", strlen(bs)), bs, strlen(bs), "blocksize 32");
    // entry 12 of the first quant_map (the code book's bytes)
    const float other = 0.5f;
    expect_broken(find_bytes(qt_nf4_values, sizeof(qt_nf4_values)) + 12 * 4, &other, 4, "NF4 code book");
}

int main(void) {
    test_reference();
    test_kernels();
    test_bnb();
    test_broken();
    TEST_END();
}
