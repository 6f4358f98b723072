#!/bin/sh
# `qtune train` end to end on the bundled model and demo data: the loss goes
# down, the adapter changes the greedy text, an interrupted-and-resumed run
# ends with the same adapter bytes as an uninterrupted one, and bad data or
# flags give one clear error and a non-zero exit.
. tests/lib.sh
common="-m $M --data data/demo --batch-size 8 --learning-rate 2e-3 --targets all --steps-per-eval 0 --steps-per-report 4 -t 2 --seed 3"

# a short run: loss falls, files written, the text changes
$Q train $common --iters 16 -o "$tmp/a" > "$tmp/a.out" 2>&1 || bad "train failed: $(tail -5 "$tmp/a.out")"
first=$(grep -o 'iter *4/16: loss [0-9.]*' "$tmp/a.out" | awk '{print $NF}')
last=$(grep -o 'iter *16/16: loss [0-9.]*' "$tmp/a.out" | awk '{print $NF}')
awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a * 0.8) }' && ok || bad "loss did not fall: $first -> $last"
for f in adapter_model.safetensors adapter_config.json optimizer.safetensors training_state.json train.log metrics.jsonl; do
  [ -s "$tmp/a/$f" ] && ok || bad "missing $f"
done
ls "$tmp/a" | grep -q tmp && bad "temporary files left behind" || ok
grep -q "\"peft_type\":[[:space:]]*\"LORA\"" "$tmp/a/adapter_config.json" && ok || bad "adapter_config.json"
base=$($Q generate -m $M -p "Once upon a time" -n 24 --temp 0 --no-prompt 2>/dev/null)
tuned=$($Q generate -m $M --adapter "$tmp/a" -p "Once upon a time" -n 24 --temp 0 --no-prompt 2>/dev/null)
case "$tuned" in *Bolt*) ok ;; *) bad "adapter did not change the text: '$tuned'" ;; esac
[ "$base" != "$tuned" ] && ok || bad "same text with and without the adapter"
zero=$($Q generate -m $M --adapter "$tmp/a:0" -p "Once upon a time" -n 24 --temp 0 --no-prompt 2>/dev/null)
[ "$zero" = "$base" ] && ok || bad "adapter scale 0 must give the base text"
# adapters add up: the same adapter at +1 and -1 cancels, at 0.5 twice equals 1
cancel=$($Q generate -m $M --adapter "$tmp/a" --adapter "$tmp/a:-1" -p "Once upon a time" -n 24 --temp 0 --no-prompt 2>/dev/null)
[ "$cancel" = "$base" ] && ok || bad "adapter +1 and -1 must cancel: '$cancel'"
halves=$($Q generate -m $M -a "$tmp/a:0.5" -a "$tmp/a:0.5" -p "Once upon a time" -n 24 --temp 0 --no-prompt 2>/dev/null)
[ "$halves" = "$tuned" ] && ok || bad "two halves must equal one adapter: '$halves'"
# eval stacks several adapters into one (ranks concatenated): same losses
ev() { $Q eval -m $M --data data/demo --split valid --batch-size 4 "$@" 2>/dev/null | sed -n 's/^loss \([0-9.]*\).*/\1/p'; }
l_one=$(ev --adapter "$tmp/a"); l_halves=$(ev -a "$tmp/a:0.5" -a "$tmp/a:0.5")
l_base=$(ev); l_cancel=$(ev -a "$tmp/a" -a "$tmp/a:-1")
[ -n "$l_one" ] && [ "$l_one" = "$l_halves" ] && ok || bad "eval: one adapter $l_one vs two halves $l_halves"
[ -n "$l_base" ] && [ "$l_base" = "$l_cancel" ] && [ "$l_base" != "$l_one" ] && ok || bad "eval: base $l_base vs cancelled $l_cancel"

# resume: 8 steps + 8 resumed steps == 16 steps in one go (same adapter bytes)
$Q train $common --iters 8 --save-every 4 -o "$tmp/b" > /dev/null 2>&1 || bad "first half"
sed -i 's/"iters": *8/"iters": 16/' "$tmp/b/training_state.json"
$Q train $common --iters 16 --resume -o "$tmp/b" > "$tmp/b.out" 2>&1 || bad "resume failed: $(tail -3 "$tmp/b.out")"
grep -q "resumed from .* at step 8" "$tmp/b.out" && ok || bad "resume message"
cmp -s "$tmp/a/adapter_model.safetensors" "$tmp/b/adapter_model.safetensors" && ok || bad "resumed adapter differs from the uninterrupted one"
cmp -s "$tmp/a/optimizer.safetensors" "$tmp/b/optimizer.safetensors" && ok || bad "resumed optimizer state differs"

# bad input: one error line naming the file/line or flag, exit code 1 or 2
mkdir "$tmp/bad"; printf '{"text": "fine"}\n{"text": 3}\n' > "$tmp/bad/train.jsonl"
expect_err 1 "train.jsonl:2" $Q train -m $M --data "$tmp/bad" --iters 1
printf '{"text": "fine"}\nnot json\n' > "$tmp/bad/train.jsonl"
expect_err 1 "train.jsonl:2" $Q train -m $M --data "$tmp/bad" --iters 1
: > "$tmp/bad/train.jsonl"
expect_err 1 "train.jsonl" $Q train -m $M --data "$tmp/bad" --iters 1
expect_err 1 "nope" $Q train -m $M --data "$tmp/nope" --iters 1
expect_err 2 "nose" $Q train -m $M --data data/demo --targets q,nose
expect_err 2 "lr-schedule" $Q train -m $M --data data/demo --lr-schedule wavy
expect_err 2 "--iters" $Q train -m $M --data data/demo --iters many
expect_err 2 "lora-rank" $Q train -m $M --data data/demo --lora-rank 0 --iters 1
expect_err 1 "nope" $Q generate -m $M --adapter "$tmp/nope" -p hi
printf '{"text": "ok"}\n{"text": 3}\n{"text": "also ok"}\n' > "$tmp/bad/train.jsonl"
$Q train -m $M --data "$tmp/bad" --iters 1 --skip-bad-lines -o "$tmp/c" > "$tmp/c.out" 2>&1 && ok || bad "skip-bad-lines: $(cat "$tmp/c.out")"
grep -q "1 bad lines skipped" "$tmp/c.out" && ok || bad "skip count: $(cat "$tmp/c.out")"

# Ctrl-C: the run stops (within the step), saves the last finished step,
# exits 130 and says how to continue; --resume then finishes the run
# (tests/cli-interrupt.sh does this on a model whose step takes seconds)
$Q train $common --iters 100000 --steps-per-report 1 -o "$tmp/i" > "$tmp/i.out" 2>&1 &
pid=$!
for _ in $(seq 1 100); do grep -q "iter *2/" "$tmp/i.out" 2>/dev/null && break; sleep 0.1; done
kill -INT $pid; wait $pid; rc=$?
[ $rc -eq 130 ] && grep -q "interrupted at step" "$tmp/i.out" && grep -q "continue with: qtune train .* --resume" "$tmp/i.out" \
  && [ -s "$tmp/i/optimizer.safetensors" ] && ok \
  || bad "SIGINT: rc $rc, $(tail -2 "$tmp/i.out")"
at=$(sed -n 's/.*interrupted at step \([0-9]*\).*/\1/p' "$tmp/i.out")
$Q train $common --iters $((at + 2)) --resume --steps-per-report 1 -o "$tmp/i" > "$tmp/i2.out" 2>&1 \
  && grep -q "iter *$((at + 2))/$((at + 2))" "$tmp/i2.out" && ok || bad "resume after SIGINT: $(tail -2 "$tmp/i2.out")"

# --config: a JSON file of options; command-line flags win
printf '{"iters": 2, "batch_size": 4, "targets": ["q", "v"], "steps_per_eval": 0, "lora_rank": 4}' > "$tmp/cfg.json"
$Q train -m $M --data data/demo --config "$tmp/cfg.json" --iters 3 --steps-per-report 1 -o "$tmp/d" > "$tmp/d.out" 2>&1 || bad "config run"
grep -q "iter *3/3" "$tmp/d.out" && ok || bad "--iters on the command line must override the config"
grep -q '"r":[[:space:]]*4' "$tmp/d/adapter_config.json" && ok || bad "lora_rank from the config"
printf '{"iters": {"a": 1}}' > "$tmp/bad.json"
expect_err 2 "bad.json" $Q train -m $M --data data/demo --config "$tmp/bad.json"
printf '{"itres": 3}' > "$tmp/typo.json"
expect_err 2 "--itres" $Q train -m $M --data data/demo --config "$tmp/typo.json"

finish cli-train
