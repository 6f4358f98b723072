// metrics.h: text-generation scores for `qtune eval --generate`: exact match,
// BLEU (Papineni et al. 2002, as sacrebleu computes it) and ROUGE-L (Lin 2004,
// as Google's rouge-score computes it).
#ifndef QT_METRICS_H
#define QT_METRICS_H

#include <stdbool.h>
#include <stdint.h>

#define QT_BLEU_ORDER 4

// Sufficient statistics of BLEU-4 against one reference per hypothesis; add
// sentence pairs to get corpus BLEU (statistics summed, then one score).
typedef struct {
    int64_t correct[QT_BLEU_ORDER];   // clipped n-gram matches, n = 1..4
    int64_t total[QT_BLEU_ORDER];     // hypothesis n-grams
    int64_t sys_len, ref_len;         // tokens
} qt_bleu_stats;

// Tokenizes both texts with sacrebleu's default "13a" tokenizer (mteval-v13a:
// punctuation split off, case kept) and adds their n-gram counts to s.
void qt_bleu_add(qt_bleu_stats *s, const char *hyp, const char *ref);
// BLEU in 0..100 (sacrebleu's scale): bp * exp(mean log p_n), bp =
// exp(1 - ref_len / sys_len) when sys_len < ref_len. Smoothing is sacrebleu's
// default "exp" (mteval-v13a): the k-th order with no match gets precision
// 1 / (2^k * total). effective_order (sacrebleu's sentence_bleu): average only
// over the orders the hypothesis has n-grams of. Corpus BLEU: false.
double qt_bleu_score(const qt_bleu_stats *s, bool effective_order);
// Sentence BLEU = sacrebleu.sentence_bleu(hyp, [ref]).score.
double qt_bleu_sentence(const char *hyp, const char *ref);

// ROUGE-L F-measure in 0..1 (rouge-score's rougeL, no stemming): LCS of the
// token sequences, P = lcs / |hyp|, R = lcs / |ref|, F = 2PR / (P + R).
// Tokens: lowercase, every run of characters other than [a-z0-9] (and bytes
// >= 0x80) separates tokens. rouge-score drops non-ASCII characters; we keep
// them as word characters so non-English text gets a score. *p, *r may be NULL.
double qt_rouge_l(const char *hyp, const char *ref, double *p, double *r);

// Exact match after trimming leading and trailing whitespace.
bool qt_exact_match(const char *hyp, const char *ref);

// Whitespace-separated tokens of s after the 13a tokenizer, into a malloc'd
// string (caller frees): for tests and debugging.
char *qt_bleu_tokenize(const char *s);

#endif
