#!/bin/sh
# `qtune data prepare` on CSV edge cases (BOM, CRLF, quoted commas and line
# breaks, "" escapes), TSV, JSON and JSONL; the output is what `qtune train`
# reads; empty and duplicate records are reported; malformed input gives one
# error naming file:line. `qtune data stats` over the ShawGPT data matches an
# independent per-record count made with `qtune tokenize`.
. tests/lib.sh

# 10 records (the quoted CRLF makes record 2 span lines 3-4): BOM, CRLF, a quoted comma, a quoted CRLF, "" escapes, one empty and one duplicate record
printf '\357\273\277question,answer\r\n' > "$tmp/in.csv"
printf '"Hi, who are you?","I am Bolt, a robot."\r\n' >> "$tmp/in.csv"
printf '"Two\r\nlines","say ""yes"""\r\n' >> "$tmp/in.csv"
for i in 1 2 3 4 5 6 7; do printf 'q%d,a%d\r\n' $i $i >> "$tmp/in.csv"; done
printf 'q1,a1\r\n' >> "$tmp/in.csv"      # duplicate
printf ',\r\n' >> "$tmp/in.csv"           # empty
printf 'q8,a8' >> "$tmp/in.csv"           # no final line break
$Q data prepare "$tmp/in.csv" -o "$tmp/out" --prompt-col question --completion-col answer --split 0.8,0.1,0.1 --seed 1 \
  > "$tmp/p.out" 2>&1 || bad "prepare: $(cat "$tmp/p.out")"
grep -q "10 records (1 empty and 1 duplicate records skipped)" "$tmp/p.out" && ok || bad "counts: $(cat "$tmp/p.out")"
grep -q "in.csv:13: empty record" "$tmp/p.out" && grep -q "in.csv:12: duplicate of the record at line 5" "$tmp/p.out" && ok \
  || bad "empty/duplicate lines named: $(cat "$tmp/p.out")"
n=$(cat "$tmp/out/train.jsonl" "$tmp/out/valid.jsonl" "$tmp/out/test.jsonl" | wc -l)
[ "$n" -eq 10 ] && [ "$(wc -l < "$tmp/out/train.jsonl")" -eq 8 ] && ok || bad "split sizes: $n"
python3 - "$tmp/out" <<'PY' && ok || bad "record contents"
import json, sys
recs = [json.loads(l) for s in ("train", "valid", "test") for l in open(f"{sys.argv[1]}/{s}.jsonl")]
d = {r["prompt"]: r["completion"] for r in recs}
assert d["Hi, who are you?"] == "I am Bolt, a robot.", d
assert d["Two\r\nlines"] == 'say "yes"', d
assert d["q8"] == "a8" and len(d) == 10
PY
# same seed, same files; another seed, another order
$Q data prepare "$tmp/in.csv" -o "$tmp/out2" --prompt-col question --completion-col answer --seed 1 -v 0 > /dev/null 2>&1
cmp -s "$tmp/out/train.jsonl" "$tmp/out2/train.jsonl" && ok || bad "not deterministic"
# qtune train reads the result
$Q train -m $M --data "$tmp/out" --iters 2 --batch-size 2 --steps-per-eval 0 -t 2 -o "$tmp/ad" > "$tmp/t.out" 2>&1 \
  && grep -q "train 8 records" "$tmp/t.out" && ok || bad "train on prepared data: $(tail -3 "$tmp/t.out")"

# chat with a system message, from JSONL; text from TSV; a JSON array
printf '{"prompt": "hello", "completion": "hi there"}\n\n{"prompt": "bye", "completion": "see you"}\n' > "$tmp/in.jsonl"
$Q data prepare "$tmp/in.jsonl" -o "$tmp/chat" --format chat --system "Be brief." --split 1,0,0 -v 0 > /dev/null 2>&1 || bad "chat"
python3 -c "
import json,sys
r=[json.loads(l) for l in open('$tmp/chat/train.jsonl')]
assert len(r)==2 and all([m['role'] for m in x['messages']]==['system','user','assistant'] for x in r), r
assert r[0]['messages'][0]['content']=='Be brief.'
" && ok || bad "chat records"
[ ! -e "$tmp/chat/valid.jsonl" ] && ok || bad "an empty split must not be written"
$Q train -m $M --data "$tmp/chat" --iters 1 --batch-size 2 --steps-per-eval 0 --mask-prompt -t 2 -o "$tmp/ad2" > /dev/null 2>&1 && ok || bad "train on chat"
printf 'id\ttext\n1\t"tab\tinside"\n2\tplain text\n' > "$tmp/in.tsv"
$Q data prepare "$tmp/in.tsv" -o "$tmp/txt" --format text --split 1,0,0 -v 0 > /dev/null 2>&1 || bad "tsv"
grep -q '"text":"tab\\tinside"' "$tmp/txt/train.jsonl" && ok || bad "tsv quoted tab: $(cat "$tmp/txt/train.jsonl")"
printf '[{"prompt": "a", "completion": "b"}, {"prompt": "c", "completion": "d"}]' > "$tmp/in.json"
$Q data prepare "$tmp/in.json" -o "$tmp/js" --split 1,0,0 -v 0 > /dev/null 2>&1 && [ "$(wc -l < "$tmp/js/train.jsonl")" -eq 2 ] && ok || bad "json array"

# malformed input: one error with file:line, exit 1; bad flags: exit 2
printf 'prompt,completion\na,b\nc,d,e\n' > "$tmp/rag.csv"
expect_err 1 "rag.csv:3: 3 fields, but the header has 2" $Q data prepare "$tmp/rag.csv" -o "$tmp/x"
printf 'prompt,completion\na,b\n"c,d\n' > "$tmp/q.csv"
expect_err 1 "q.csv:3: unterminated" $Q data prepare "$tmp/q.csv" -o "$tmp/x"
printf 'prompt,completion\na,b\nc,\377\n' > "$tmp/u.csv"
expect_err 1 "u.csv:3: invalid UTF-8" $Q data prepare "$tmp/u.csv" -o "$tmp/x"
printf 'p,c\na,b\n' > "$tmp/col.csv"
expect_err 1 "no column 'prompt'" $Q data prepare "$tmp/col.csv" -o "$tmp/x"
printf '{"prompt": "a", "completion": "b"}\n{"prompt": 1, "completion": "b"}\n' > "$tmp/t.jsonl"
expect_err 1 "t.jsonl:2" $Q data prepare "$tmp/t.jsonl" -o "$tmp/x"
printf '{"prompt": "a", "completion": "b"}\n{oops\n' > "$tmp/t.jsonl"
expect_err 1 "t.jsonl:2: invalid JSON" $Q data prepare "$tmp/t.jsonl" -o "$tmp/x"
printf '[{"prompt": "a", "completion": "b"}, {"prompt": 3, "completion": "b"}]' > "$tmp/arr.json"
expect_err 1 "arr.json: record 2" $Q data prepare "$tmp/arr.json" -o "$tmp/x"
expect_err 2 "split" $Q data prepare "$tmp/in.csv" -o "$tmp/x" --split 0.5,0.1
expect_err 2 "format" $Q data prepare "$tmp/in.csv" -o "$tmp/x" --format poem

# stats over the ShawGPT data vs an independent count per record: the text
# tokenized alone (special tokens parsed, no BOS added), plus the BOS and EOS
# the dataset adds when the text does not already start / end with them
S=${QT_SHARED_MODELS:-../shared/models}
V=$S/llama.cpp-vocab/ggml-vocab-llama-spm.gguf
D=$S/datasets/shawgpt-qlora
if [ -f "$V" ] && [ -d "$D" ]; then
  $Q data stats -m "$V" "$D" --parse-special --lengths --max-seq-len 300 > "$tmp/s.out" 2>&1 || bad "stats: $(tail -3 "$tmp/s.out")"
  for split in train valid test; do
    i=0; : > "$tmp/ref.$split"
    python3 -c "
import json, sys
for i, l in enumerate(open('$D/$split.jsonl')):
    open('$tmp/rec.%d' % i, 'w').write(json.loads(l)['text'])
print(i + 1)" > "$tmp/n"
    n=$(cat "$tmp/n")
    while [ $i -lt "$n" ]; do
      ids=$($Q tokenize -m "$V" --special --no-bos --ids --file "$tmp/rec.$i")
      echo "$ids" | awk -v s=$split -v line=$((i + 1)) '{ n = NF + ($1 != 1) + ($NF != 2); print s, line, n }' >> "$tmp/ref.$split"
      i=$((i + 1))
    done
    grep "^$split " "$tmp/s.out" > "$tmp/got.$split"
    cmp -s "$tmp/ref.$split" "$tmp/got.$split" && ok || bad "$split lengths differ: $(diff "$tmp/ref.$split" "$tmp/got.$split" | head -5)"
  done
  # percentiles and truncation count from the same lengths
  python3 - "$tmp" "$tmp/s.out" <<'PY' && ok || bad "stats summary: $(head -5 "$tmp/s.out")"
import math, re, sys
out = open(sys.argv[2]).read()
for split in ("train", "valid", "test"):
    v = sorted(int(l.split()[2]) for l in open(f"{sys.argv[1]}/ref.{split}"))
    pct = lambda p: v[max(math.ceil(p / 100 * len(v)), 1) - 1]
    want = "min %d, p50 %d, p90 %d, p99 %d, max %d" % (v[0], pct(50), pct(90), pct(99), v[-1])
    block = out[out.index(f"{split}.jsonl:"):]
    assert want in block.split("\n")[1], (want, block.split("\n")[1])
    over = sum(x > 300 for x in v)
    assert f"(would be truncated): {over}" in block.split("\n")[2], (over, block.split("\n")[2])
    assert f"{split}.jsonl: {len(v)} records, {sum(v)} tokens" in out
PY
  grep -q "suggested --max-seq-len 448" "$tmp/s.out" && ok || bad "suggestion: $(tail -1 "$tmp/s.out")"
else
  echo "skip: no $V or $D"
fi

# several columns make the prompt: --prompt-template (dolly's instruction + context), --prompt-col A,B
printf 'instruction,context,response,category\nWhat is X?,X is a letter.,A letter.,qa\nName a color.,,Blue.,brainstorm\n' > "$tmp/dolly.csv"
$Q data prepare "$tmp/dolly.csv" -o "$tmp/dolly" --prompt-template '{instruction}\n\nContext: {context}' --completion-col response \
  --split 1,0,0 -v 0 > /dev/null 2>&1 || bad "prompt template"
grep -q '"prompt":"What is X?\\n\\nContext: X is a letter.","completion":"A letter."' "$tmp/dolly/train.jsonl" \
  && grep -q '"prompt":"Name a color.\\n\\nContext:"' "$tmp/dolly/train.jsonl" && ok || bad "template records: $(cat "$tmp/dolly/train.jsonl")"
$Q data prepare "$tmp/dolly.csv" -o "$tmp/dolly2" --prompt-col instruction,context --completion-col response --split 1,0,0 -v 0 \
  > /dev/null 2>&1 && grep -q '"prompt":"What is X?\\n\\nX is a letter."' "$tmp/dolly2/train.jsonl" \
  && grep -q '"prompt":"Name a color."' "$tmp/dolly2/train.jsonl" && ok || bad "--prompt-col A,B: $(cat "$tmp/dolly2/train.jsonl")"
# a column or key that is not there: the error lists those that are
$Q data prepare "$tmp/dolly.csv" -o "$tmp/d3" --prompt-col instrution --completion-col response > /dev/null 2> "$tmp/e"; rc=$?
[ $rc -eq 1 ] && grep -q "no column 'instrution'.*the columns are: instruction, context, response, category" "$tmp/e" && ok \
  || bad "unknown column: $(cat "$tmp/e")"
$Q data prepare "$tmp/dolly.csv" -o "$tmp/d3" --prompt-template '{instruction} {ctx}' --completion-col response > /dev/null 2> "$tmp/e"
grep -q "no column 'ctx'" "$tmp/e" && ok || bad "unknown template column: $(cat "$tmp/e")"
$Q data prepare "$tmp/in.jsonl" -o "$tmp/d4" --prompt-col question -v 0 > /dev/null 2> "$tmp/e"; rc=$?
[ $rc -eq 1 ] && grep -q 'no record has the key "question".*the keys are: prompt,completion' "$tmp/e" && ok || bad "unknown key: $(cat "$tmp/e")"
# a flood of empty records: a few named, then counted
i=0; { echo "prompt,completion"; while [ $i -lt 30 ]; do echo ",x$i"; i=$((i + 1)); done; echo "q,a"; } > "$tmp/empty.csv"
$Q data prepare "$tmp/empty.csv" -o "$tmp/d5" --split 1,0,0 > "$tmp/o" 2>&1
[ "$(grep -c 'empty record skipped' "$tmp/o")" -le 5 ] && grep -q "30 empty" "$tmp/o" && ok || bad "empty-record warnings: $(head -8 "$tmp/o")"

# --mask-prompt on "text" records: a response template, or an error that says which
printf '{"text": "<s>[INST] Say hi [/INST] Hi there!</s>"}\n{"text": "<s>[INST] Say bye [/INST] Bye now!</s>"}\n' > "$tmp/t.jsonl"
$Q train -m $M --data "$tmp/t.jsonl" --mask-prompt --iters 1 -o "$tmp/mt" > /dev/null 2> "$tmp/e"; rc=$?
[ $rc -eq 1 ] && grep -q 't.jsonl:1: .*--response-template "\[/INST\]"' "$tmp/e" && [ "$(grep -c '^error' "$tmp/e")" -eq 1 ] && ok \
  || bad "--mask-prompt on text without a template: $(cat "$tmp/e")"
all=$($Q data stats -m $M "$tmp/t.jsonl" | sed -n 's/.* tokens (\([0-9]*\) trained.*/\1/p')
masked=$($Q data stats -m $M "$tmp/t.jsonl" --response-template "[/INST]" | sed -n 's/.* tokens (\([0-9]*\) trained.*/\1/p')
answers=$(printf '{"prompt": "<s>[INST] Say hi [/INST]", "completion": " Hi there!</s>"}\n{"prompt": "<s>[INST] Say bye [/INST]", "completion": " Bye now!</s>"}\n' > "$tmp/pc.jsonl"; \
  $Q data stats -m $M "$tmp/pc.jsonl" --mask-prompt | sed -n 's/.* tokens (\([0-9]*\) trained.*/\1/p')
[ -n "$masked" ] && [ "$masked" -lt "$all" ] && [ "$masked" = "$answers" ] && ok \
  || bad "response template: $masked trained of $all (prompt/completion form: $answers)"
$Q train -m $M --data "$tmp/t.jsonl" --response-template "[/INST]" --iters 1 -t 2 -o "$tmp/mt2" > "$tmp/o" 2>&1 \
  && grep -q "trained)" "$tmp/o" && ok || bad "train with --response-template: $(tail -3 "$tmp/o")"
printf '{"text": "no marker here"}\n' > "$tmp/t2.jsonl"
$Q train -m $M --data "$tmp/t2.jsonl" --response-template "[/INST]" --iters 1 -o "$tmp/mt3" > /dev/null 2> "$tmp/e"
grep -q 't2.jsonl:1: the response template "\[/INST\]" does not occur' "$tmp/e" && ok || bad "no marker: $(cat "$tmp/e")"

finish cli-data
