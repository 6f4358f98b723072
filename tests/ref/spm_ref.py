#!/usr/bin/env python3
# spm_ref.py: reference token ids for tests/test-tokenizer.c, from Google's
# SentencePiece library (python3-sentencepiece) and Meta's Llama 2
# tokenizer.model (../shared/models/llama2-tokenizer/, the same vocabulary as
# llama.cpp-vocab/ggml-vocab-llama-spm.gguf). Writes tests/data/spm-ref.txt:
#   line 1: "qtune-spm-ref 1" (magic, version; the C test checks it)
#   then one line per case: <input as lowercase hex of its UTF-8 bytes> TAB <ids separated by spaces>
# Ids are sp.encode(text) without BOS/EOS. Run from the repository root:
#   python3 tests/ref/spm_ref.py [path/to/tokenizer.model]
import sys
import sentencepiece as spm

CASES = [
    "Once upon a time",
    "Hello world",
    " Hello world",
    "Hello  world   with    runs of spaces",
    "line one\nline two\n\nline four\n",
    "tabs\tand\ttabs",
    "The quick brown fox jumps over the lazy dog.",
    "Emoji: 🦙🚀 and a family 👨‍👩‍👧‍👦 together",
    "中文分词测试，你好世界。",
    "日本語のテキストです",
    "한국어 문장을 토큰화합니다",
    "combining: e\u0301 a\u0308 n\u0303 (NFD) vs é ä ñ (NFC)",
    "Ünïcödé àccents and ß",
    "math: ∀x∈ℝ, x² ≥ 0; π ≈ 3.14159",
    "code: for (int i = 0; i < n; i++) { sum += a[i]; }",
    "   leading and trailing spaces   ",
    "numbers 1234567890 and 3.14 and -42",
    "Привет, мир! Как дела?",
    "مرحبا بالعالم",
    "שלום עולם",
    "<s> and </s> are plain text here",
    "[INST] What is LoRA? [/INST]",
    "a",
    "\n",
    "x\u200by zero width space",
    "Ω≈ç√∫˜µ≤≥÷ 𝕳𝖊𝖑𝖑𝖔 🏳️‍🌈",
]

def main():
    model = sys.argv[1] if len(sys.argv) > 1 else "../shared/models/llama2-tokenizer/tokenizer.model"
    sp = spm.SentencePieceProcessor(model_file=model)
    lines = ["qtune-spm-ref 1"]
    for s in CASES:
        ids = sp.encode(s)
        lines.append(s.encode("utf-8").hex() + "\t" + " ".join(str(i) for i in ids))
    with open("tests/data/spm-ref.txt", "w") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote tests/data/spm-ref.txt: %d cases" % len(CASES))

if __name__ == "__main__":
    main()
