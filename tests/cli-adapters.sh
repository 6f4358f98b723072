#!/bin/sh
# Adapter and run-folder papercuts: a fresh run refuses an output that holds a
# run (--resume continues, --overwrite replaces), temporary files of a killed
# save are removed, a save cut between the optimizer and the adapter is
# repaired on resume, --resume names the folder it looked in,
# base_model_name_or_path is the path given, every output form (PEFT folder,
# mlx-lm adapters.safetensors, lora.py adapters.npz, GGUF LoRA) gives the same
# text and converts to the others (convert --to), qtune info describes GGUF
# LoRA files, out-of-memory hints fit the model, adapter configs are
# range-checked, --epochs sets the steps, train.log holds the header and the
# test loss.
. tests/lib.sh
common="-m $M --data data/demo --batch-size 8 --learning-rate 2e-3 --targets all --steps-per-eval 0 -t 2 --seed 5"
gen() { $Q generate -m $M -p "Once upon a time" -n 24 --temp 0 --no-prompt "$@" 2>/dev/null; }

# ---- the run folder ----
$Q train $common --iters 6 --save-every 3 --test -o "$tmp/a" > "$tmp/a.out" 2>&1 || bad "train: $(tail -3 "$tmp/a.out")"
grep -q "^memory:" "$tmp/a/train.log" && grep -q "^test loss" "$tmp/a/train.log" && grep -q "^data: data/demo" "$tmp/a/train.log" \
  && ok || bad "train.log lacks the header or the test loss: $(cat "$tmp/a/train.log")"
grep -q '"base_model_name_or_path":[[:space:]]*"models/stories260K.gguf"' "$tmp/a/adapter_config.json" && ok \
  || bad "base_model_name_or_path: $(grep base_model "$tmp/a/adapter_config.json")"
cp "$tmp/a/adapter_model.safetensors" "$tmp/a6"
expect_err 1 "already holds files (a run at step 6): continue it with --resume" $Q train $common --iters 2 -o "$tmp/a"
cmp -s "$tmp/a6" "$tmp/a/adapter_model.safetensors" && ok || bad "a refused run changed the adapter"
$Q train $common --iters 2 --overwrite -o "$tmp/a" > /dev/null 2>&1 && grep -q '"step":[[:space:]]*2,' "$tmp/a/training_state.json" \
  && ok || bad "--overwrite"
expect_err 1 "$tmp/nope/optimizer.safetensors" $Q train $common --iters 2 --resume -o "$tmp/nope"
[ ! -e "$tmp/nope" ] && ok || bad "a failed --resume created its folder"
expect_err 1 "give one of them" $Q train $common --iters 2 --resume --overwrite -o "$tmp/a"
# a save killed after the optimizer was renamed: training_state.json and the
# adapter are a step behind; the resume says so, continues from the
# optimizer's step and ends where an uninterrupted run ends
$Q train $common --iters 8 --save-every 4 -o "$tmp/full" > /dev/null 2>&1
$Q train $common --iters 4 -o "$tmp/cut" > /dev/null 2>&1
cp "$tmp/cut/training_state.json" "$tmp/state4"; cp "$tmp/cut/adapter_model.safetensors" "$tmp/ad4"
sed -i 's/"iters": *4/"iters": 6/' "$tmp/cut/training_state.json"
$Q train $common --iters 6 --resume -o "$tmp/cut" > /dev/null 2>&1   # step 6 written
cp "$tmp/state4" "$tmp/cut/training_state.json"; cp "$tmp/ad4" "$tmp/cut/adapter_model.safetensors"   # as if cut after the optimizer
echo "partial" > "$tmp/cut/adapter_model.safetensors.tmp.999999"            # a killed writer's temporary file
$Q train $common --iters 8 --resume -o "$tmp/cut" > "$tmp/cut.out" 2>&1 || bad "resume of a cut save: $(tail -3 "$tmp/cut.out")"
grep -q "the last save was cut short: optimizer.safetensors is at step 6" "$tmp/cut.out" && grep -q "resumed from .* at step 6" "$tmp/cut.out" \
  && ok || bad "cut save not reported: $(head -5 "$tmp/cut.out")"
cmp -s "$tmp/full/adapter_model.safetensors" "$tmp/cut/adapter_model.safetensors" && ok || bad "after the cut save the run ends elsewhere"
[ ! -e "$tmp/cut/adapter_model.safetensors.tmp.999999" ] && grep -q "removed .*tmp.999999" "$tmp/cut.out" && ok \
  || bad "stale temporary file not removed"

# ---- output forms: the same adapter as PEFT, mlx-lm, lora.py .npz, GGUF LoRA ----
$Q train $common --iters 8 -o "$tmp/p" > /dev/null 2>&1
tuned=$(gen -a "$tmp/p")
$Q train $common --iters 8 -o "$tmp/m/adapters.safetensors" > /dev/null 2>&1
$Q train $common --iters 8 -o "$tmp/ad.npz" > "$tmp/npz.out" 2>&1
$Q train $common --iters 8 -o "$tmp/l.gguf" > /dev/null 2>&1
[ -s "$tmp/m/adapters.safetensors" ] && grep -q '"scale"' "$tmp/m/adapter_config.json" && [ -s "$tmp/m/optimizer.safetensors" ] \
  && ok || bad "mlx-lm output: $(ls "$tmp/m")"
[ -s "$tmp/ad.npz" ] && [ -s "$tmp/ad-run/optimizer.safetensors" ] && [ -s "$tmp/ad-run/train.log" ] \
  && grep -q "checkpoint, logs and report in $tmp/ad-run/" "$tmp/npz.out" && ok || bad "npz output: $(ls "$tmp" "$tmp/ad-run")"
[ -s "$tmp/l.gguf" ] && [ -s "$tmp/l-run/training_state.json" ] && ok || bad "GGUF LoRA output"
for a in "$tmp/m" "$tmp/m/adapters.safetensors" "$tmp/ad.npz" "$tmp/l.gguf"; do
  [ "$(gen -a "$a")" = "$tuned" ] && ok || bad "$a gives other text than the PEFT adapter"
done
for to in mlx npz gguf peft; do
  o="$tmp/conv-$to"; [ $to = gguf ] && o="$tmp/conv.gguf"
  $Q convert -m $M --adapter "$tmp/ad.npz" --to $to -o "$o" > /dev/null 2>&1 && [ "$(gen -a "$o")" = "$tuned" ] && ok \
    || bad "convert --to $to"
done
[ -s "$tmp/conv-mlx/adapters.safetensors" ] && [ -s "$tmp/conv-npz/adapters.npz" ] && ok || bad "--to mlx / npz file names"
expect_err 2 "--to must be" $Q convert -m $M --adapter "$tmp/p" --to safetensors -o "$tmp/x"
# qtune info on a GGUF LoRA file and on an adapter folder
$Q info "$tmp/conv.gguf" > "$tmp/i.out" 2>&1 && grep -q "llama.cpp GGUF LoRA" "$tmp/i.out" && grep -q "rank: *8" "$tmp/i.out" \
  && grep -q "layers: *0-4" "$tmp/i.out" && grep -q "attn_q" "$tmp/i.out" && ok || bad "info GGUF LoRA: $(cat "$tmp/i.out")"
$Q info "$tmp/p" > "$tmp/i2.out" 2>&1 && grep -q '"LORA"' "$tmp/i2.out" && grep -q "step *8" "$tmp/i2.out" && ok \
  || bad "info adapter folder: $(cat "$tmp/i2.out")"

# ---- adapter configs are checked ----
cp -r "$tmp/p" "$tmp/big"
sed -i 's/"lora_alpha":[^,]*/"lora_alpha": 1e300/' "$tmp/big/adapter_config.json"
expect_err 1 "lora_alpha" $Q generate -m $M -p hi -a "$tmp/big"
cp -r "$tmp/m" "$tmp/mbad"
sed -i 's/"scale":[^,]*/"scale": 1e30/' "$tmp/mbad/adapter_config.json"
expect_err 1 "scale" $Q generate -m $M -p hi -a "$tmp/mbad"

# ---- out-of-memory hints that fit the model ----
expect_err 1 "--quantize q4_0" $Q train -m $M --data data/demo --batch-size 65536 --iters 1 -o "$tmp/oom1"
$Q quantize $M "$tmp/q4.gguf" --type q4_0 > /dev/null 2>&1
$Q train -m "$tmp/q4.gguf" --data data/demo --batch-size 65536 --iters 1 --grad-checkpoint -o "$tmp/oom2" > /dev/null 2> "$tmp/e"
grep -q "this run needs" "$tmp/e" && ! grep -q -- "--quantize" "$tmp/e" && ! grep -q -- "--grad-checkpoint" "$tmp/e" && ok \
  || bad "hints for a Q4_0 model with checkpointing: $(cat "$tmp/e")"
[ ! -e "$tmp/oom2" ] && ok || bad "a run refused for memory left a folder"

# ---- epochs ----
$Q train $common --epochs 2 -o "$tmp/ep" > "$tmp/ep.out" 2>&1 && grep -q "steps: 16 of 8 records = 2.00 epochs" "$tmp/ep.out" \
  && grep -q "iter *16/16: .* epoch 2.00" "$tmp/ep.out" && grep -q '"epoch": 2' "$tmp/ep/metrics.jsonl" && ok \
  || bad "--epochs 2 (64 records, batch 8): $(grep -E 'steps|iter' "$tmp/ep.out" | tail -2)"

finish cli-adapters
