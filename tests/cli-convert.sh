#!/bin/sh
# `qtune convert` keeps the tokenizer: a small random-weight Llama with
# TinyLlama-1.1B-Chat's 32001-token vocabulary, in three Hugging Face folders
# (tokenizer.json only, tokenizer.model only, both), converted to GGUF. Every
# GGUF tokenizes llama.cpp's tokenizer test strings and the ShawGPT records
# exactly as the tokenizer.json folder does (itself checked against HF
# tokenizers and llama.cpp's vectors by test-tokenizer-bpe); with
# llama.cpp's llama-tokenize on PATH or in $LLAMA_TOKENIZE, llama.cpp reads
# the same ids from our files. The converted model's eval loss equals the
# folder's (F32: the same numbers; the tokenizer.json-only case once moved
# it by 0.8%).
S=${QT_SHARED_MODELS:-../shared/models}
TL=$S/hf-tinyllama-1.1b-chat-v0.1
. tests/lib.sh
if [ ! -f "$TL/tokenizer.json" ] || [ ! -f "$TL/tokenizer.model" ]; then
  echo "cli-convert: skipped (no $TL)"; exit 0
fi
LT=${LLAMA_TOKENIZE:-$(command -v llama-tokenize)}

# the weights: hidden 32, 1 layer, untied output; pure Python (no numpy)
mkdir "$tmp/both"
python3 - "$tmp/both" <<'PY' || { echo "FAIL: making the model"; exit 1; }
import json, random, struct, sys
from array import array
d = sys.argv[1]
V, C, F, KV = 32001, 32, 64, 16
cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": V, "hidden_size": C,
       "intermediate_size": F, "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 2,
       "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 2048, "tie_word_embeddings": False,
       "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "float32"}
json.dump(cfg, open(d + "/config.json", "w"))
rnd = random.Random(7)
def mat(r, c): return array("f", (rnd.uniform(-0.05, 0.05) for _ in range(r * c))), [r, c]
def ones(n): return array("f", [1.0] * n), [n]
t = {"model.embed_tokens.weight": mat(V, C), "lm_head.weight": mat(V, C), "model.norm.weight": ones(C)}
p = "model.layers.0."
for n, r, c in [("self_attn.q_proj", C, C), ("self_attn.k_proj", KV, C), ("self_attn.v_proj", KV, C),
                ("self_attn.o_proj", C, C), ("mlp.gate_proj", F, C), ("mlp.up_proj", F, C), ("mlp.down_proj", C, F)]:
    t[p + n + ".weight"] = mat(r, c)
t[p + "input_layernorm.weight"] = ones(C)
t[p + "post_attention_layernorm.weight"] = ones(C)
hdr, blobs, off = {}, [], 0
for k, (a, shape) in t.items():
    b = a.tobytes()
    hdr[k] = {"dtype": "F32", "shape": shape, "data_offsets": [off, off + len(b)]}
    off += len(b)
    blobs.append(b)
h = json.dumps(hdr).encode()
h += b" " * ((8 - len(h) % 8) % 8)
with open(d + "/model.safetensors", "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h)
    for b in blobs:
        f.write(b)
PY
for f in tokenizer.json tokenizer.model tokenizer_config.json special_tokens_map.json added_tokens.json; do
  cp "$TL/$f" "$tmp/both/"
done
for v in json model; do mkdir "$tmp/$v" && cp "$tmp/both"/* "$tmp/$v/"; done
rm "$tmp/json/tokenizer.model" "$tmp/model/tokenizer.json"
for v in json model both; do
  $Q convert "$tmp/$v" -o "$tmp/$v.gguf" --type f32 > /dev/null 2> "$tmp/c.err" && ok || bad "convert $v: $(cat "$tmp/c.err")"
done

# the strings: llama.cpp's tokenizer tests for this vocabulary, the issue's sentence, the ShawGPT records
python3 - "$S" "$tmp/strings.jsonl" <<'PY'
import json, sys
s, out = sys.argv[1], sys.argv[2]
texts = open(s + "/llama.cpp-vocab/ggml-vocab-llama-spm.gguf.inp", encoding="utf-8").read().split("\n__ggml_vocab_test__\n")
texts = [t for t in texts if t != ""]
texts.append("The old lighthouse keeper counted languages")
for split in ("train", "valid", "test"):
    for line in open(f"{s}/datasets/shawgpt-qlora/{split}.jsonl", encoding="utf-8"):
        texts.append(json.loads(line)["text"])
with open(out, "w", encoding="utf-8") as f:
    for t in texts:
        f.write(json.dumps(t) + "\n")
PY
n=$(wc -l < "$tmp/strings.jsonl")
$Q tokenize -m "$tmp/json" --jsonl -f "$tmp/strings.jsonl" > "$tmp/ref.ids" 2>/dev/null
[ "$(wc -l < "$tmp/ref.ids")" -eq "$n" ] && ok || bad "the tokenizer.json folder tokenized $(wc -l < "$tmp/ref.ids") of $n strings"
grep -qx "1 450 2030 301 18919 1709 1589 11356 29115 10276" "$tmp/ref.ids" && ok || bad "the issue's sentence: $(sed -n 37p "$tmp/ref.ids")"
for v in json model both; do
  $Q tokenize -m "$tmp/$v.gguf" --jsonl -f "$tmp/strings.jsonl" > "$tmp/$v.ids" 2>/dev/null
  if cmp -s "$tmp/ref.ids" "$tmp/$v.ids"; then ok
  else bad "$v.gguf tokenizes $(diff "$tmp/ref.ids" "$tmp/$v.ids" | grep -c '^>') of $n strings differently"; fi
done

# llama.cpp reading our files (outside CI: needs llama-tokenize)
if [ -n "$LT" ] && [ -x "$LT" ]; then
  python3 - "$tmp/strings.jsonl" "$tmp/str" <<'PY'
import json, os, sys
os.mkdir(sys.argv[2])
for i, line in enumerate(open(sys.argv[1], encoding="utf-8")):
    open(f"{sys.argv[2]}/{i:03d}.txt", "w", encoding="utf-8").write(json.loads(line))
PY
  for v in json model; do
    : > "$tmp/lt-$v.ids"
    for f in "$tmp"/str/*.txt; do
      "$LT" -m "$tmp/$v.gguf" -f "$f" --ids --no-parse-special --log-disable 2>/dev/null | tail -n 1 | tr -d '[],' >> "$tmp/lt-$v.ids"
    done
    if cmp -s "$tmp/ref.ids" "$tmp/lt-$v.ids"; then ok
    else bad "llama-tokenize on $v.gguf: $(diff "$tmp/ref.ids" "$tmp/lt-$v.ids" | grep -c '^>') of $n strings differ"; fi
  done
else
  echo "llama-tokenize not found: llama.cpp's side skipped (set LLAMA_TOKENIZE)"
fi

# the same loss: the folder and its conversions on the ShawGPT test records
loss() { $Q eval -m "$1" --data "$S/datasets/shawgpt-qlora" --split test --max-seq-len 512 -t 2 2>/dev/null | sed -n 's/^loss \([0-9.]*\).*/\1/p'; }
l_hf=$(loss "$tmp/json")
for v in json model both; do
  l=$(loss "$tmp/$v.gguf")
  awk -v a="$l_hf" -v b="$l" 'BEGIN { d = a - b; exit !(a != "" && d < 1e-5 && d > -1e-5) }' && ok \
    || bad "eval loss of $v.gguf $l vs the folder's $l_hf"
done

finish cli-convert
