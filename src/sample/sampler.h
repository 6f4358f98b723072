// sampler.h: next-token choice from logits.
// Order as llama.cpp's default chain: repetition penalty, top-k, top-p,
// min-p, temperature, then a draw from the RNG. temp <= 0 is greedy (argmax;
// ties to the lowest id). Same seed, same logits -> same tokens.
#ifndef QT_SAMPLER_H
#define QT_SAMPLER_H

#include <stdint.h>

typedef struct {
    float temp;             // default 0.8; <= 0 greedy
    int top_k;              // default 40; <= 0 off
    float top_p;            // default 0.95; >= 1 off
    float min_p;            // default 0.05; <= 0 off
    float repeat_penalty;   // default 1.0 (off); CTRL-style: logit/p if > 0 else logit*p
    int repeat_last_n;      // default 64
    uint64_t seed;
} qt_sampler_params;

qt_sampler_params qt_sampler_defaults(void);

typedef struct qt_sampler qt_sampler;
qt_sampler *qt_sampler_init(const qt_sampler_params *p, int n_vocab);
void qt_sampler_free(qt_sampler *s);   // NULL is a no-op
// logits (n_vocab) are read and may be modified in place.
int qt_sampler_sample(qt_sampler *s, float *logits);
// Record a token (prompt or generated) for the repetition penalty window.
void qt_sampler_accept(qt_sampler *s, int token);
void qt_sampler_reset(qt_sampler *s);

#endif
