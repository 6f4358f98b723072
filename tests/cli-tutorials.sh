#!/bin/sh
# The tutorials qtune replaces (../shared/seeds), their commands as they are
# written there, on the bundled stories260K model and the ShawGPT data:
#   000 (mlx-examples lora.py on an M1 Mac): `python scripts/lora.py ...` is
#       `qtune lora ...`: training with the tutorial's flags (on the bundled
#       data/demo: ShawGPT's long records make 100 steps too slow for CI;
#       the prompt is ShawGPT's), then generation
#       with --adapter-file adapters.npz; generation without the adapter in
#       mlx_lm.generate's names; the adapters.npz is what lora.py writes
#       (read back with Python's zipfile, no numpy).
#   001 (the one-command run.sh): ./run.sh with the tutorial's MAX_STEPS,
#       OUTPUT_DIR, BATCH_SIZE (and LORA_R, LEARNING_RATE, a relative DATA),
#       training_log_*.log where it was called, ./run.sh --help.
#   004 (Mistral with llama.cpp on an M1): the `main` command line, on a
#       Q6_K file in ./weights, answering typed lines.
. tests/lib.sh
# absolute paths: the tutorials run in folders of their own
Q=$(cd "$(dirname "$Q")" && pwd)/$(basename "$Q")
repo=$(pwd)
M=$repo/models/stories260K.gguf
qtune() { "$Q" "$@"; }

# ---- 000: lora.py ----
mkdir -p "$tmp/mac/data" && cp "$repo"/data/demo/*.jsonl "$tmp/mac/data/"
cd "$tmp/mac"
model_path=$M
qtune lora --model $model_path \
           --train \
           --iters 100 \
           --steps-per-eval 10 \
           --val-batches -1 \
           --learning-rate 1e-5 \
           --lora-layers 16 \
           --test > train.out 2>&1 && ok || bad "lora.py training: $(tail -5 train.out)"
[ -s adapters.npz ] && ok || bad "no adapters.npz"
[ "$(grep -c 'val loss' train.out)" -eq 11 ] && grep -q "iter *100/100" train.out && grep -q "test loss" train.out && ok \
  || bad "lora.py's reports (validation every 10 steps, test loss): $(grep -c 'val loss' train.out)"
python3 - adapters.npz <<'PY' && ok || bad "adapters.npz is not lora.py's layout"
import ast, struct, sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
names = sorted(z.namelist())
# lora.py: q_proj and v_proj of the last 16 layers (all 5 here), lora_a (in, r=8), lora_b (r, out)
want = sorted(f"model.layers.{i}.self_attn.{p}_proj.lora_{ab}.npy" for i in range(5) for p in "qv" for ab in "ab")
assert names == want, names
for n in names:
  raw = z.read(n)
  assert raw[:6] == b"\x93NUMPY"
  hl = struct.unpack("<H", raw[8:10])[0]
  h = ast.literal_eval(raw[10:10 + hl].decode())
  assert h["descr"] == "<f4" and not h["fortran_order"], h
  shape = h["shape"]
  assert shape == ((64, 8) if n.endswith("lora_a.npy") else (8, 64 if ".q_" in n else 32)), (n, shape)
  assert len(raw) - 10 - hl == 4 * shape[0] * shape[1]
PY
intstructions_string="ShawGPT, functioning as a virtual data science consultant on YouTube, communicates in clear, accessible language, escalating to technical depth upon request. It reacts to feedback aptly and ends responses with its signature '–ShawGPT'. ShawGPT will tailor the length of its responses to match the viewer's comment, providing concise acknowledgments to brief expressions of gratitude or feedback, thus keeping the interaction natural and engaging.

Please respond to the following comment.
"
prompt="<s>[INST] $intstructions_string 
Great content, thank you! 
[/INST]
"
adapter_path="adapters.npz"
max_tokens_str="140"
qtune lora --model $model_path --adapter-file $adapter_path --max-tokens $max_tokens_str --prompt "$prompt" > gen.out 2> gen.err \
  && ok || bad "lora.py generation: $(tail -3 gen.err)"
head -c 10 gen.out | grep -q "<s>\[INST\]" && [ "$(wc -c < gen.out)" -gt "$(printf '%s' "$prompt" | wc -c)" ] && ok \
  || bad "lora.py prints the prompt, then the text: $(head -c 200 gen.out)"
# the same prompt without the adapter (mlx_lm.generate's names)
qtune generate --model $model_path --prompt "$prompt" --max-tokens 140 --temp 0 > base.out 2>/dev/null && [ -s base.out ] && ok \
  || bad "mlx_lm.generate without adapter"
qtune info adapters.npz > /dev/null 2>&1; qtune eval -m $model_path --adapter-file adapters.npz --data data > eval.out 2>&1 \
  && grep -q "^loss" eval.out && ok || bad "the adapters.npz loads in eval: $(tail -2 eval.out)"
# lora.py --test alone: the test loss of the saved adapter, as at the end of training
qtune lora --model $model_path --adapter-file adapters.npz --test > test.out 2>&1 && ok || bad "lora.py --test: $(tail -2 test.out)"
t_train=$(sed -n 's/^test loss \([0-9.]*\).*/\1/p' train.out); t_eval=$(sed -n 's/^loss \([0-9.]*\).*/\1/p' test.out)
awk -v a="$t_train" -v b="$t_eval" 'BEGIN { d = a - b; exit !(a != "" && d < 2e-3 && d > -2e-3) }' && ok \
  || bad "test loss after training $t_train vs lora.py --test $t_eval"
# running it again does not silently replace the adapter
qtune lora --model $model_path --train --iters 2 > again.out 2>&1; rc=$?
[ $rc -ne 0 ] && grep -q "already holds an adapter" again.out && ok || bad "a second --train must not overwrite adapters.npz"
cd "$repo"

# ---- 001: run.sh ----
mkdir -p "$tmp/oc" && cd "$tmp/oc"
ln -s "$repo/run.sh" run.sh
export QTUNE="$Q"
./run.sh --help > help.out 2>&1 && grep -q MAX_STEPS help.out && grep -q OUTPUT_DIR help.out && grep -q LORA_R help.out \
  && grep -q LEARNING_RATE help.out && grep -q BATCH_SIZE help.out && ! ls training_log_* > /dev/null 2>&1 && ok \
  || bad "./run.sh --help: $(head -3 help.out)"
(
  export MAX_STEPS=50
  export OUTPUT_DIR="./quick_test"
  ./run.sh > run1.out 2>&1
) && ok || bad "MAX_STEPS=50 OUTPUT_DIR=./quick_test ./run.sh: $(tail -5 run1.out)"
[ -s quick_test/adapter_model.safetensors ] && [ -s quick_test/adapter_config.json ] && grep -q "iter *50/50" quick_test/train.log \
  && ok || bad "./quick_test: $(ls quick_test 2>&1)"
ls training_log_*.log > /dev/null 2>&1 && grep -q "iter *50/50" training_log_*.log && ok || bad "no training_log_*.log here"
grep -q "adapter: $tmp/oc/quick_test" run1.out && ok || bad "run.sh names the adapter it wrote: $(tail -4 run1.out)"
rm -f training_log_*.log
mkdir data && cp "$repo"/data/demo/*.jsonl data/
(
  export BATCH_SIZE=1
  MAX_STEPS=3 OUTPUT_DIR=bs1 DATA=data LORA_R=16 LEARNING_RATE=5e-4 ./run.sh > run2.out 2>&1
) && grep -q -- "--batch-size 1" run2.out && grep -q '"r":[[:space:]]*16' bs1/adapter_config.json \
  && grep -q "lr 0.0005" bs1/train.log && grep -q "data: $tmp/oc/data" bs1/train.log && ok \
  || bad "BATCH_SIZE=1 DATA=data LORA_R=16 LEARNING_RATE: $(tail -5 run2.out)"
MAX_STEPS=3 OUTPUT_DIR=bs1 ./run.sh > run3.out 2>&1; rc=$?
[ $rc -ne 0 ] && grep -q "already holds" run3.out && ok || bad "run.sh into a used OUTPUT_DIR must refuse"
unset QTUNE
cd "$repo"

# ---- 004: llama.cpp's main on a Q6_K file ----
mkdir -p "$tmp/m1/weights" && cd "$tmp/m1"
qtune quantize "$M" ./weights/stories260K.Q6_K.gguf --type q6_k > /dev/null 2>&1 || bad "quantize q6_k"
printf 'hi!\nWhat is your name?\n' | qtune generate --color --model "./weights/stories260K.Q6_K.gguf" -t 7 -b 24 -n -1 --temp 0 -ngl 1 -ins \
  > chat.out 2> chat.err && ok || bad "llama.cpp's main -ins line: $(tail -3 chat.err)"
grep -q "turn 2" chat.err && [ -s chat.out ] && ok || bad "two turns answered: $(tail -3 chat.err)"
cd "$repo"

finish cli-tutorials
