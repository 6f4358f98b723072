#!/usr/bin/env python3
"""Independent PyTorch reference for /v1/embeddings of `qtune serve`.

Runs make_ref_logits.py's transformers-style fp32 forward of stories260K with
an identity output head (so it returns the final-norm hidden states), mean-
pools them over the tokens and L2-normalises the result (llama-server's
--pooling mean with normalisation), for a few token lists. Writes
tests/data/stories260K-embed-ref.json, read by tests/serve/features.mjs.

Run: /usr/bin/python3 tests/ref/make_ref_embed.py  (QT_SHARED_MODELS overrides ../shared/models)
"""
import json
import os

import torch

import make_ref_logits as R

MAGIC = "qtune-embed-refs"
VERSION = 1
INPUTS = [[1, 403, 407, 261, 378], R.TOKENS[:10], [1, 300], R.TOKENS]


def main():
    cfg = json.load(open(os.path.join(R.HF, "config.json")))
    W = R.load_safetensors(os.path.join(R.HF, "model.safetensors"))
    W["lm_head.weight"] = torch.eye(cfg["hidden_size"])
    cases = []
    with torch.no_grad():
        for toks in INPUTS:
            h = R.forward(W, cfg, toks)          # (T, C) final-norm hidden states
            e = h.mean(0)
            e = e / e.norm()
            cases.append({"tokens": toks, "embedding": [float(x) for x in e]})
    out = os.path.join(R.HERE, "..", "data", "stories260K-embed-ref.json")
    with open(out, "w") as f:
        json.dump({"magic": MAGIC, "version": VERSION, "cases": cases}, f)
        f.write("\n")
    print(f"wrote {out}: {len(cases)} embeddings of {cfg['hidden_size']} dims")


if __name__ == "__main__":
    main()
