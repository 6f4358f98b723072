// optim.h: AdamW over flat parameter arenas, gradient clipping and learning
// rate schedules. AdamW follows torch.optim.AdamW (PyTorch 1.13, decoupled
// weight decay, bias correction) operation for operation, so a loss curve can
// be checked against PyTorch's.
#ifndef QT_OPTIM_H
#define QT_OPTIM_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    float lr;             // peak learning rate
    float beta1, beta2;   // default 0.9, 0.999
    float eps;            // default 1e-8
    float weight_decay;   // default 0.01 (PyTorch's AdamW default)
} qt_adamw_params;

qt_adamw_params qt_adamw_defaults(void);

// One step (step counts from 1) with learning rate lr over n parameters.
void qt_adamw_step(float *p, const float *g, float *m, float *v, size_t n, const qt_adamw_params *hp, float lr,
                   int64_t step);

// Global L2 norm of g (computed in double).
double qt_grad_norm(const float *g, size_t n);
// torch.nn.utils.clip_grad_norm_: scales g to norm max_norm when larger.
// Returns the norm before clipping. max_norm <= 0: no clipping.
double qt_clip_grad_norm(float *g, size_t n, float max_norm);

typedef enum { QT_SCHED_CONSTANT = 0, QT_SCHED_LINEAR, QT_SCHED_COSINE } qt_sched_kind;
typedef struct {
    qt_sched_kind kind;
    int warmup;           // linear warm-up steps from lr/warmup to lr
    int total;            // steps in the run (decay reaches min_lr at total)
    float min_lr;
} qt_sched;

// Learning rate for step (0-based) with peak lr.
float qt_sched_lr(const qt_sched *s, float lr, int64_t step);
// "constant" | "linear" | "cosine" -> kind; -1 if unknown.
int qt_sched_parse(const char *name);

#endif
