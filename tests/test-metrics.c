// test-metrics.c: BLEU (sentence and corpus), ROUGE-L and exact match against
// the independent Python implementation tests/ref/metrics_ref.py (sacrebleu's
// and rouge-score's published definitions), whose output is committed in
// tests/data/metrics-ref.tsv; plus hand-checked values and tokenizer cases.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "test.h"
#include "train/metrics.h"

static const double BLEU_TOL = 1e-4;    // on the 0..100 scale
static const double ROUGE_TOL = 1e-4;   // on the 0..1 scale

static void check_tok(const char *in, const char *want) {
    char *t = qt_bleu_tokenize(in);
    CHECK(strcmp(t, want) == 0, "13a('%s') = '%s', want '%s'", in, t, want);
    qt_free(t);
}

int main(void) {
    // 13a tokenizer cases (mteval-v13a.pl rules)
    check_tok("Hello, world!", "Hello , world !");
    check_tok("3.5% of 2,000", "3.5 % of 2,000");
    check_tok("2023-24 well-known end.", "2023 - 24 well-known end .");
    check_tok("a &amp; b &quot;c&quot;", "a & b \" c \"");
    check_tok("", "");

    // hand-computed: identical sentences score 100; "x" vs "y" has no matching
    // n-gram: sacrebleu returns 0 before smoothing (BLEU.compute_bleu, #141),
    // not the smoothed 100 / (2 * 1) = 50; one matching unigram is smoothed
    CHECK(fabs(qt_bleu_sentence("The cat sat on the mat.", "The cat sat on the mat.") - 100) < BLEU_TOL, "identical");
    CHECK(qt_bleu_sentence("x", "y") == 0, "x/y: no match scores 0");
    CHECK(qt_bleu_sentence("Great content thank you", "I appreciate the kind words") == 0, "no match, 4 words");
    CHECK(qt_bleu_sentence("a x", "a y") > 0, "one matching unigram is smoothed, not 0");
    CHECK(qt_bleu_sentence("", "abc") == 0, "empty hypothesis");
    double p, r;
    CHECK(fabs(qt_rouge_l("a b c d", "a x c d e", &p, &r) - 2 * 0.75 * 0.6 / 1.35) < ROUGE_TOL, "rouge-l by hand");
    CHECK(fabs(p - 0.75) < ROUGE_TOL && fabs(r - 0.6) < ROUGE_TOL, "rouge-l P %g R %g", p, r);
    CHECK(qt_rouge_l("", "", NULL, NULL) == 0, "empty rouge");
    CHECK(qt_exact_match("  yes\n", "yes"), "exact match trims");
    CHECK(!qt_exact_match("Yes", "yes"), "exact match is case-sensitive");

    // the independent reference
    char *text = qt_read_file("tests/data/metrics-ref.tsv", NULL);
    CHECK(text != NULL, "tests/data/metrics-ref.tsv (run from the repo root)");
    if (!text) TEST_END();
    qt_bleu_stats corpus;
    memset(&corpus, 0, sizeof(corpus));
    int n_sent = 0, n_corpus = 0;
    for (char *line = text, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = 0;
        char *f[5];
        int nf = 0;
        for (char *s = line; nf < 5; nf++) {
            f[nf] = s;
            char *t = strchr(s, '\t');
            if (!t) { nf++; break; }
            *t = 0;
            s = t + 1;
        }
        CHECK(nf == 5, "malformed reference line");
        if (nf != 5) continue;
        double want_bleu = atof(f[3]);
        if (f[0][0] == 'S') {
            double bleu = qt_bleu_sentence(f[1], f[2]);
            double rouge = qt_rouge_l(f[1], f[2], NULL, NULL);
            CHECK(fabs(bleu - want_bleu) < BLEU_TOL, "sentence BLEU('%s', '%s') = %.6f, reference %.6f", f[1], f[2], bleu,
                  want_bleu);
            CHECK(fabs(rouge - atof(f[4])) < ROUGE_TOL, "ROUGE-L('%s', '%s') = %.6f, reference %.6f", f[1], f[2], rouge,
                  atof(f[4]));
            qt_bleu_add(&corpus, f[1], f[2]);
            n_sent++;
        } else {
            double bleu = qt_bleu_score(&corpus, false);
            CHECK(fabs(bleu - want_bleu) < BLEU_TOL, "corpus BLEU %.6f, reference %.6f", bleu, want_bleu);
            n_corpus++;
        }
    }
    CHECK(n_sent >= 10 && n_corpus == 1, "reference file has %d pairs, %d corpus lines", n_sent, n_corpus);
    qt_free(text);
    TEST_END();
}
