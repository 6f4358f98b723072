// sampler.h: next-token choice from logits.
// Order: logit bias, OpenAI's frequency / presence penalties, then
// llama.cpp's default chain: repetition penalty, top-k, top-p, min-p,
// temperature, a draw from the RNG. temp <= 0 is greedy (argmax; ties to the
// lowest id). Same seed, same logits -> same tokens.
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
    float frequency_penalty;  // default 0; OpenAI: logit -= count * frequency_penalty
    float presence_penalty;   // default 0; OpenAI: logit -= (count > 0) * presence_penalty
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
// Count a generated token for the frequency / presence penalties (OpenAI counts
// the tokens sampled so far in this completion, not the prompt's).
void qt_sampler_count(qt_sampler *s, int token);
// Add bias[i] to logit ids[i] before every draw (OpenAI's logit_bias; -100
// bans a token in practice). Ids out of range are ignored. Replaces any
// earlier bias.
void qt_sampler_set_bias(qt_sampler *s, const int32_t *ids, const float *bias, int n);
void qt_sampler_reset(qt_sampler *s);   // clears the windows and counts, reseeds

#endif
