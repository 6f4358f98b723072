// optim.c: AdamW, clipping, schedules (see optim.h). Reference:
// torch/optim/adamw.py (_single_tensor_adamw) and torch/nn/utils/clip_grad.py.
#include "train/optim.h"

#include <math.h>
#include <string.h>

qt_adamw_params qt_adamw_defaults(void) {
    qt_adamw_params p = { .lr = 1e-4f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.01f };
    return p;
}

void qt_adamw_step(float *p, const float *g, float *m, float *v, size_t n, const qt_adamw_params *hp, float lr,
                   int64_t step) {
    // The scalars are computed in double and rounded once, as PyTorch does
    // them in Python floats before handing them to the tensor kernels.
    const float b1 = hp->beta1, b2 = hp->beta2;
    const double bc1 = 1.0 - pow((double)b1, (double)step), bc2 = 1.0 - pow((double)b2, (double)step);
    const float step_size = (float)((double)lr / bc1), bc2_sqrt = (float)sqrt(bc2);
    const float decay = (float)(1.0 - (double)lr * hp->weight_decay);
    for (size_t i = 0; i < n; i++) {
        p[i] *= decay;
        m[i] = m[i] * b1 + g[i] * (1.0f - b1);
        v[i] = v[i] * b2 + g[i] * g[i] * (1.0f - b2);
        float denom = sqrtf(v[i]) / bc2_sqrt + hp->eps;
        p[i] -= step_size * (m[i] / denom);
    }
}

double qt_grad_norm(const float *g, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)g[i] * g[i];
    return sqrt(s);
}

double qt_clip_grad_norm(float *g, size_t n, float max_norm) {
    double norm = qt_grad_norm(g, n);
    if (max_norm > 0) {
        double coef = max_norm / (norm + 1e-6);
        if (coef < 1.0)
            for (size_t i = 0; i < n; i++) g[i] = (float)(g[i] * coef);
    }
    return norm;
}

float qt_sched_lr(const qt_sched *s, float lr, int64_t step) {
    if (s->warmup > 0 && step < s->warmup) return lr * (float)(step + 1) / (float)s->warmup;
    if (s->kind == QT_SCHED_CONSTANT || s->total <= s->warmup) return lr;
    double progress = (double)(step - s->warmup) / (double)(s->total - s->warmup);
    if (progress > 1) progress = 1;
    double f = s->kind == QT_SCHED_LINEAR ? 1.0 - progress : 0.5 * (1.0 + cos(M_PI * progress));
    return (float)(s->min_lr + (lr - s->min_lr) * f);
}

int qt_sched_parse(const char *name) {
    if (!strcmp(name, "constant")) return QT_SCHED_CONSTANT;
    if (!strcmp(name, "linear")) return QT_SCHED_LINEAR;
    if (!strcmp(name, "cosine")) return QT_SCHED_COSINE;
    return -1;
}
