// bench-train.c: speed and memory of one LoRA training step, the way the
// training issue measures it: a model file (random weights with real shapes
// are fine: cost does not depend on values), LoRA rank r on the given
// targets, `batch` sequences of T random tokens per step (packed), AdamW.
// Prints tokens/s (median over steps after a warm-up), the step's FLOP rate
// (6 * params-in-matmuls * T for forward + backward, + attention), and the
// peak RSS (and the GPU backend's peak device memory).
//   build/bench/bench-train MODEL [T=512] [steps=3] [threads=2] [rank=16] [targets=q,k,v,o,gate] [mode=1] [compute=auto|bf16|fp32] [batch=1] [quantize]
// mode: what the forward keeps for the backward (model-train.h): 0 keep
// everything, 1 checkpoint (layer inputs only), 2 recompute (Llama's q, k, v,
// gate, up recomputed). steps = 0 times the first step alone (memory runs).
// quantize: as train --quantize (q4_0, nf4, nf4-dq, ...), applied at load.
// QT_DEVICE=cuda runs it on the GPU backend (a CUDA=1 build).
// compute: the products' precision, as qtune train --compute (auto: bf16 where the
// CPU has a bf16 gemm).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "backend/backend.h"
#include "base/pool.h"
#include "kernels/kernels.h"
#include "model/lora.h"
#include "model/model.h"
#include "train/model-train.h"
#include "train/optim.h"

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL [T=512] [steps=3] [threads=2] [rank=16] [targets=q,k,v,o,gate] [mode=1] "
                        "[compute=auto|bf16|fp32] [batch=1] [quantize]\n", argv[0]);
        return 2;
    }
    int T = argc > 2 ? atoi(argv[2]) : 512, steps = argc > 3 ? atoi(argv[3]) : 3;
    int nth = argc > 4 ? atoi(argv[4]) : 2, rank = argc > 5 ? atoi(argv[5]) : 16;
    const char *targets = argc > 6 ? argv[6] : "q,k,v,o,gate";
    qt_act_mode mode = argc > 7 ? (qt_act_mode)atoi(argv[7]) : QT_ACT_CHECKPOINT;
    if (mode != QT_ACT_KEEP && mode != QT_ACT_CHECKPOINT && mode != QT_ACT_RECOMPUTE) return 2;
    const char *compute = argc > 8 ? argv[8] : "auto";
    bool bf16 = !strcmp(compute, "bf16") || (!strcmp(compute, "auto") && qt_kernels()->bf16.gemm_acc);
    const int B = argc > 9 ? atoi(argv[9]) : 1;
    if (T < 2 || steps < 0 || B < 1) {
        fprintf(stderr, "T >= 2, steps >= 0 and batch >= 1\n");
        return 2;
    }
    const int NT = T * B;
    double t_load = qt_time_s();
    qt_model *m = qt_model_load(argv[1]);
    if (!m || (argc > 10 && qt_model_quantize_name(m, argv[10]) != QT_OK)) return 1;
    if (getenv("QT_NO_MMAP") && qt_model_copy_weights(m) != QT_OK) return 1;
    t_load = qt_time_s() - t_load;
    qt_lora_config cfg = qt_lora_defaults();
    cfg.rank = rank;
    cfg.alpha = 2.0f * rank;
    if (qt_lora_parse_targets(m->arch, targets, &cfg.targets) != QT_OK) return 2;
    qt_lora *l = qt_lora_init(m, &cfg, 1);
    if (!l || qt_lora_enable_training(l) != QT_OK) return 1;
    qt_pool *pool = qt_pool_init(nth);
    qt_backend *be = qt_backend_init(getenv("QT_DEVICE") ? getenv("QT_DEVICE") : "cpu", pool);
    if (!be || qt_model_bind(m, be) != QT_OK) return 1;
    qt_tmodel *tm = qt_tmodel_init(m, l, be, NT, T, mode);
    if (!tm) return 1;
    qt_tmodel_set_prec(tm, bf16 ? QT_PREC_BF16 : QT_PREC_F32);
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)NT), *tgt = malloc(sizeof(int32_t) * (size_t)NT);
    int *seq = malloc(sizeof(int) * (size_t)(B + 1));
    qt_rng rng;
    qt_rng_seed(&rng, 5);
    for (int i = 0; i < NT; i++) tok[i] = (int32_t)(qt_rng_u64(&rng) % (uint64_t)m->cfg.n_vocab);
    for (int i = 0; i < NT; i++) tgt[i] = (i + 1) % T ? tok[i + 1] : -1;
    for (int s = 0; s <= B; s++) seq[s] = s * T;
    qt_batch b = { tok, tgt, seq, B };
    qt_adamw_params hp = qt_adamw_defaults();
    double *ts = malloc(sizeof(double) * (size_t)(steps + 1));
    for (int s = 0; s <= steps; s++) {   // step 0 is the warm-up
        double t0 = qt_time_s(), ls;
        int64_t n;
        memset(l->grads, 0, sizeof(float) * l->n_params);
        if (qt_tmodel_step(tm, &b, true, true, 1.0f / (float)(B * (T - 1)), (uint64_t)s, &ls, &n) != QT_OK) return 1;
        qt_adamw_step(l->params, l->grads, l->m, l->v, l->n_params, &hp, hp.lr, s + 1);
        ts[s] = qt_time_s() - t0;
        fprintf(stderr, "step %d: %.2f s, loss %.4f\n", s, ts[s], ls / (double)n);
    }
    qsort(ts + 1, (size_t)steps, sizeof(double), cmp_double);
    double med = steps ? ts[1 + steps / 2] : ts[0];
    const qt_config *c = &m->cfg;
    // Model FLOPs of a LoRA step (frozen base: forward 2pT, backward to the
    // inputs only 2pT; the adapters are < 1%), attention causal (half of T^2):
    // forward 2 matmuls, backward 4, each NH*HS*T^2/2 MACs. Recomputation under
    // checkpointing is not counted (it is overhead, not model work).
    // a mixture of experts: the n_expert_used experts a token runs, and the router
    const double ffn = c->n_expert ? 3.0 * c->n_ff * c->n_expert_used + c->n_expert : 3.0 * c->n_ff;
    double p_mm = (double)c->n_layer * c->n_embd * (2.0 * c->n_head * c->head_dim + 2.0 * c->n_head_kv * c->head_dim + ffn) +
                  (double)c->n_embd * c->n_vocab;
    double flop = B * (4.0 * p_mm * T + 6.0 * c->n_layer * (double)c->n_head * c->head_dim * (double)T * T);
    char gpu[64] = "";
    if (!be->host_memory && be->ops->mem_info) {
        size_t peak = 0;
        be->ops->mem_info(be, NULL, NULL, &peak);
        snprintf(gpu, sizeof(gpu), " peak GPU %.2f GiB |", peak / 1073741824.0);
    }
    printf("| %s | %s | %s | T=%d batch %d | r=%d %s | threads %d | %s | %s %s | %.1f tokens/s | %.3f s/step | %.1f GFLOP/s | peak RSS %.2f GiB |%s load %.1f s |\n",
           m->name, qt_type_name(qt_model_linear(m, 0, 0)->type), be->name, T, B, rank, targets, nth, qt_act_mode_name(mode), be->host_memory ? qt_kernels()->isa : "cuda",
           bf16 && (!be->host_memory || qt_kernels()->bf16.gemm_acc) ? "bf16" : "fp32", NT / med, med,
           flop / med / 1e9, qt_peak_rss() / 1073741824.0, gpu, t_load);
    qt_tmodel_free(tm);
    qt_model_bind(m, NULL);
    qt_backend_free(be);
    qt_pool_free(pool);
    qt_lora_free(l);
    qt_model_free(m);
    free(tok); free(tgt); free(seq); free(ts);
    return 0;
}
