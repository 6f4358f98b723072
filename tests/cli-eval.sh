#!/bin/sh
# `qtune eval`: the loss equals the test loss `qtune train --test` reports for
# the same adapter and data; no adapter = the base model; --generate writes one
# scored line per record whose output equals `qtune generate` greedy text, and
# the summary scores are the means of the per-record ones.
. tests/lib.sh
# --compute fp32: these equalities hold in fp32; bf16 products (the default
# where the CPU has AVX512_BF16) round differently once batches are cut differently.

$Q train -m $M --compute fp32 --data data/demo --iters 6 --batch-size 8 --learning-rate 2e-3 --targets all --steps-per-eval 0 \
  --test -t 2 -o "$tmp/a" > "$tmp/train.out" 2>&1 || bad "train: $(tail -3 "$tmp/train.out")"
want=$(grep -o '"test_loss": [0-9.]*' "$tmp/a/metrics.jsonl" | awk '{print $2}')
$Q eval -m $M --compute fp32 --adapter "$tmp/a" --data data/demo --batch-size 8 -t 2 > "$tmp/e.out" 2>&1 || bad "eval: $(cat "$tmp/e.out")"
got=$(grep -o '^loss [0-9.]*' "$tmp/e.out" | awk '{print $2}')
[ -n "$want" ] && [ "$want" = "$got" ] && ok || bad "eval loss '$got' != train test loss '$want'"
grep -q "844 tokens scored" "$tmp/e.out" && ok || bad "token count: $(cat "$tmp/e.out")"
# perplexity = exp(loss)
awk -v l="$got" -v p="$(grep -o 'perplexity [0-9.]*' "$tmp/e.out" | awk '{print $2}')" \
  'BEGIN { exit !(p > 0 && (exp(l) - p) ^ 2 < 1e-6) }' && ok || bad "perplexity is not exp(loss)"

# without an adapter: the base model's loss, which the untrained adapter (B = 0) of a 0-step-equivalent
# run matches: train's step-0 validation loss on the same file
cp data/demo/train.jsonl "$tmp/d.jsonl"; mkdir "$tmp/v"; cp data/demo/train.jsonl "$tmp/v/train.jsonl"; cp data/demo/test.jsonl "$tmp/v/valid.jsonl"
$Q train -m $M --compute fp32 --data "$tmp/v" --iters 1 --batch-size 4 --steps-per-eval 10 --val-batches -1 -t 2 -o "$tmp/b" > /dev/null 2>&1
want0=$(head -1 "$tmp/b/metrics.jsonl" | grep -o '"val_loss": [0-9.]*' | awk '{print $2}')
got0=$($Q eval -m $M --compute fp32 --data data/demo/test.jsonl -t 2 | grep -o '^loss [0-9.]*' | awk '{print $2}')
[ -n "$want0" ] && [ "$want0" = "$got0" ] && ok || bad "base loss '$got0' != step-0 val loss '$want0'"

# --generate on prompt/completion records
python3 - "$tmp/pc.jsonl" <<'PY'
import json, sys
with open(sys.argv[1], "w") as f:
    for line in open("data/demo/test.jsonl"):
        t = json.loads(line)["text"]; i = t.index("One day")
        f.write(json.dumps({"prompt": t[:i], "completion": t[i:]}) + "\n")
PY
$Q eval -m $M --adapter "$tmp/a" --data "$tmp/pc.jsonl" --generate -n 30 -t 2 -v 0 > "$tmp/g.out" 2>&1 || bad "generate: $(cat "$tmp/g.out")"
[ "$(wc -l < "$tmp/a/eval.jsonl")" -eq 8 ] && ok || bad "eval.jsonl lines"
python3 - "$tmp/a/eval.jsonl" "$tmp/g.out" <<'PY' && ok || bad "summary does not match the per-record scores"
import json, re, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
out = open(sys.argv[2]).read()
assert all(k in r for r in rows for k in ("prompt", "reference", "output", "exact_match", "bleu", "rouge_l"))
rl = float(re.search(r"ROUGE-L F ([0-9.]+)", out).group(1))
assert abs(rl - sum(r["rouge_l"] for r in rows) / len(rows)) < 1e-4, rl
sb = float(re.search(r"mean sentence BLEU ([0-9.]+)", out).group(1))
assert abs(sb - sum(r["bleu"] for r in rows) / len(rows)) < 1e-3, sb
PY
p1=$(python3 -c "import json,sys; print(json.loads(open(sys.argv[1]).readline())['prompt'], end='')" "$tmp/a/eval.jsonl")
o1=$(python3 -c "import json,sys; print(json.loads(open(sys.argv[1]).readline())['output'])" "$tmp/a/eval.jsonl")
g1=$($Q generate -m $M --adapter "$tmp/a" -p "$p1" -n 30 --temp 0 --no-prompt -t 2 2>/dev/null | sed 's/^ *//;s/ *$//')
[ "$o1" = "$g1" ] && ok || bad "eval output '$o1' != generate '$g1'"

# chat records: the reference is the last assistant turn, the prompt everything before it
printf '{"messages": [{"role": "user", "content": "Tell a story"}, {"role": "assistant", "content": " Once upon a time "}]}\n' > "$tmp/chat.jsonl"
$Q eval -m $M --data "$tmp/chat.jsonl" --generate -n 8 -t 2 -v 0 -o "$tmp/c.jsonl" > /dev/null 2>&1 || bad "chat generate"
grep -q '"prompt":"<s>\[INST\] Tell a story \[/INST\]","reference":"Once upon a time"' "$tmp/c.jsonl" && ok || bad "chat case: $(cat "$tmp/c.jsonl")"

# a text record cannot be scored; bad flags
$Q eval -m $M --data data/demo --generate -t 2 > /dev/null 2>"$tmp/err"; [ $? -eq 1 ] && grep -q "test.jsonl:1" "$tmp/err" && ok || bad "text records: $(cat "$tmp/err")"
$Q eval -m $M --data data/demo --batch-size 0 > /dev/null 2>&1; [ $? -eq 2 ] && ok || bad "--batch-size 0"

# "text" records with a response template: prompt up to "[/INST]", the reply (without </s>) the reference
S=${QT_SHARED_MODELS:-../shared/models}/datasets/shawgpt-qlora
if [ -f "$S/test.jsonl" ]; then
  $Q eval -m $M --data "$S" --generate --response-template "[/INST]" --parse-special --limit 3 -n 8 -t 2 -v 0 \
    -o "$tmp/t.jsonl" > "$tmp/t.out" 2>&1 || bad "text generate: $(tail -3 "$tmp/t.out")"
  python3 - "$S/test.jsonl" "$tmp/t.jsonl" <<'PY' && ok || bad "text records' prompt / reference"
import json, sys
src = [json.loads(l)["text"] for l in open(sys.argv[1])][:3]
out = [json.loads(l) for l in open(sys.argv[2])]
assert len(out) == 3
for t, o in zip(src, out):
    i = t.rindex("[/INST]") + len("[/INST]")
    assert o["prompt"] == t[:i], o["prompt"][-40:]
    assert o["reference"] == t[i:].strip().removesuffix("</s>").strip(), (o["reference"][-40:], t[-40:])
PY
else
  echo "skip: no $S"
fi

finish cli-eval
