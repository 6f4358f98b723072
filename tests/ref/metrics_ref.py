#!/usr/bin/env python3
"""Independent reference values for tests/test-metrics.c.

BLEU-4 as sacrebleu computes it (Papineni et al. 2002; sacrebleu 2.x BLEU with
the default 13a tokenizer and 'exp' smoothing; sentence_bleu uses the effective
order) and ROUGE-L F as Google's rouge-score computes it (Lin 2004; its default
tokenizer, no stemming), written from the published definitions with Python's
re module (sacrebleu and rouge-score are not needed). Our one deliberate
difference from rouge-score: non-ASCII characters count as word characters.

Writes tests/data/metrics-ref.tsv: lines "S<TAB>hyp<TAB>ref<TAB>bleu<TAB>rougeL_f"
for sentence scores and one "C<TAB><TAB><TAB>corpus_bleu<TAB>" line for corpus
BLEU over all pairs.   Usage: python3 tests/ref/metrics_ref.py
"""
import math
import os
import re
from collections import Counter

PAIRS = [
    ("The cat sat on the mat.", "The cat sat on the mat."),
    ("The cat is on the mat.", "The cat sat on the mat."),
    ("the the the the the the the", "The cat is on the mat."),
    ("It is a guide to action which ensures that the military always obeys the commands of the party.",
     "It is a guide to action that ensures that the military will forever heed Party commands."),
    ("It is to insure the troops forever hearing the activity guidebook that party direct.",
     "It is a guide to action that ensures that the military will forever heed Party commands."),
    ("Bolt went to a cat named Tom.", "Bolt went to a girl named Lily and asked for help."),
    ("hello", "hello world"),
    ("", "a reference"),
    ("a b", "a b c d e"),
    ("Prices rose 3.5% in 2023-24, (up from 2.1%).", "Prices rose 3.5% in 2023-24 (up from 2.1%)!"),
    ("He said: \"don't stop\" & left...", "He said \"don't stop\" and left."),
    ("A quick brown fox jumps over the lazy dog", "The quick brown fox jumped over the lazy dog"),
    ("Héllo wörld, ça va?", "héllo wörld ça va bien"),
    ("one two three four five six", "six five four three two one"),
    ("x", "y"),
    ("Thanks for watching! -ShawGPT", "Thanks for the comment! I'm glad it helped. -ShawGPT"),
    ("Great content thank you", "I appreciate the kind words"),
]

# ---- sacrebleu 13a tokenizer (mteval-v13a.pl) ----
_13A = [
    (re.compile(r'([\{-\~\[-\` -\&\(-\+\:-\@\/])'), r' \1 '),
    (re.compile(r'([^0-9])([\.,])'), r'\1 \2 '),
    (re.compile(r'([\.,])([^0-9])'), r' \1 \2'),
    (re.compile(r'([0-9])(-)'), r'\1 \2 '),
]


def tok13a(line):
    line = line.replace('<skipped>', '').replace('-\n', '').replace('\n', ' ')
    if '&' in line:
        line = line.replace('&quot;', '"').replace('&amp;', '&').replace('&lt;', '<').replace('&gt;', '>')
    line = ' {} '.format(line)
    for r, s in _13A:
        line = r.sub(s, line)
    return line.split()


def ngrams(toks, n):
    return Counter(tuple(toks[i:i + n]) for i in range(len(toks) - n + 1))


def bleu_stats(hyp, ref):
    h, r = tok13a(hyp), tok13a(ref)
    correct, total = [], []
    for n in range(1, 5):
        hn, rn = ngrams(h, n), ngrams(r, n)
        correct.append(sum(min(c, rn[g]) for g, c in hn.items()))
        total.append(max(len(h) - n + 1, 0))
    return correct, total, len(h), len(r)


def bleu(correct, total, sys_len, ref_len, effective_order):
    # sacrebleu BLEU.compute_bleu: "Early stop if there are no matches (#141)"
    if not any(correct):
        return 0.0
    precisions = [0.0] * 4
    smooth = 1.0
    eff = 4
    for n in range(1, 5):
        if total[n - 1] == 0:
            break
        if effective_order:
            eff = n
        if correct[n - 1] == 0:
            smooth *= 2
            precisions[n - 1] = 100.0 / (smooth * total[n - 1])
        else:
            precisions[n - 1] = 100.0 * correct[n - 1] / total[n - 1]
    if sys_len < ref_len:
        bp = math.exp(1 - ref_len / sys_len) if sys_len > 0 else 0.0
    else:
        bp = 1.0
    logs = [math.log(p) if p > 0 else -9999999999 for p in precisions[:eff]]
    return bp * math.exp(sum(logs) / eff)


# ---- rouge-score tokenizer and ROUGE-L ----
def tok_rouge(text):
    text = text.lower()
    # rouge-score: re.sub(r"[^a-z0-9]+", " ", text); we also keep non-ASCII
    text = re.sub(r"[^a-z0-9\u0080-\U0010ffff]+", " ", text)
    return [t for t in text.split() if t]


def lcs(a, b):
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b, 1):
            cur[j] = prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1])
        prev = cur
    return prev[-1]


def rouge_l(hyp, ref):
    h, r = tok_rouge(hyp), tok_rouge(ref)
    if not h or not r:
        return 0.0
    l = lcs(h, r)
    p, rc = l / len(h), l / len(r)
    return 0.0 if p + rc == 0 else 2 * p * rc / (p + rc)


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'data', 'metrics-ref.tsv')
    C = [0] * 4
    T = [0] * 4
    S = R = 0
    with open(out, 'w', encoding='utf-8') as f:
        for hyp, ref in PAIRS:
            c, t, s, r = bleu_stats(hyp, ref)
            C = [a + b for a, b in zip(C, c)]
            T = [a + b for a, b in zip(T, t)]
            S += s
            R += r
            f.write('S\t%s\t%s\t%.10f\t%.10f\n' % (hyp, ref, bleu(c, t, s, r, True), rouge_l(hyp, ref)))
        f.write('C\t\t\t%.10f\t\n' % bleu(C, T, S, R, False))
    print('wrote', out)


if __name__ == '__main__':
    main()
