#!/usr/bin/env python3
"""Reference word splits for qtune's pre-tokenizers (src/tokenizer/pretok.c).

Runs llama.cpp's regex lists (src/llama-vocab.cpp, llm_tokenizer_bpe) with
Python's `regex` module, applied as llama.cpp's unicode_regex_split does: each
regex splits every piece the previous ones produced into its matches and the
gaps between them. Output: tests/data/pretok-ref.txt,
  line 1: "qtune-pretok-ref 1"
  then one line per (family, text): family TAB hex(utf8 text) TAB byte end offsets, comma separated
Corpus: the strings below plus the 46 llama.cpp test-tokenizer-0 inputs.
Run from the repository root: python3 tests/ref/pretok_ref.py
"""
import os
import regex

GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
LLAMA3 = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
QWEN2 = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
# deepseek-llm's letter class as code point ranges (the C++ source spells the
# characters; some of them, e.g. U+2126 OHM SIGN, change under Unicode
# normalization, so they are written as numbers here and in pretok.c)
DS_RANGES = [(0x41, 0x5A), (0x61, 0x7A), (0xB5, 0xB5), (0xC0, 0xD6), (0xD8, 0xF6), (0xF8, 0x1BA), (0x1BC, 0x1BF),
    (0x1C4, 0x293), (0x295, 0x2AF), (0x370, 0x373), (0x376, 0x377), (0x37B, 0x37D), (0x37F, 0x37F),
    (0x386, 0x386), (0x388, 0x38A), (0x38C, 0x38C), (0x38E, 0x3A1), (0x3A3, 0x3F5), (0x3F7, 0x481),
    (0x48A, 0x52F), (0x531, 0x556), (0x10A0, 0x10C5), (0x13A0, 0x13F5), (0x13F8, 0x13FD), (0x1C90, 0x1CBA),
    (0x1CBD, 0x1CBF), (0x1D00, 0x1D2B), (0x1D6B, 0x1D77), (0x1D79, 0x1D9A), (0x1E00, 0x1F15), (0x1F18, 0x1F1D),
    (0x1F20, 0x1F45), (0x1F48, 0x1F4D), (0x1F50, 0x1F57), (0x1F59, 0x1F59), (0x1F5B, 0x1F5B), (0x1F5D, 0x1F5D),
    (0x1F5F, 0x1F7D), (0x1F80, 0x1FB4), (0x1FB6, 0x1FBC), (0x1FBE, 0x1FBE), (0x1FC2, 0x1FC4), (0x1FC6, 0x1FCC),
    (0x1FD0, 0x1FD3), (0x1FD6, 0x1FDB), (0x1FE0, 0x1FEC), (0x1FF2, 0x1FF4), (0x1FF6, 0x1FFC), (0x2102, 0x2102),
    (0x2107, 0x2107), (0x210A, 0x2113), (0x2115, 0x2115), (0x2119, 0x211D), (0x2124, 0x2124), (0x2126, 0x2126),
    (0x2128, 0x2128), (0x212A, 0x212D), (0x212F, 0x2134), (0x2139, 0x2139), (0x213C, 0x213F), (0x2145, 0x2149),
    (0x214E, 0x214E), (0x2183, 0x2184), (0x2C00, 0x2C7B), (0x2C7E, 0x2CE4), (0x2CEB, 0x2CEE), (0x2CF2, 0x2CF3),
    (0xA640, 0xA66D), (0xA680, 0xA69B), (0xA722, 0xA76F), (0xA771, 0xA787), (0xA78B, 0xA78E), (0xAB70, 0xABBF),
    (0xFB00, 0xFB06), (0xFB13, 0xFB17), (0xFF21, 0xFF3A), (0xFF41, 0xFF5A), (0x10400, 0x1044F),
    (0x104B0, 0x104D3), (0x104D8, 0x104FB), (0x10C80, 0x10CB2), (0x10CC0, 0x10CF2), (0x118A0, 0x118DF),
    (0x1E900, 0x1E943)]
DS_CLASS = "".join("\\U%08X-\\U%08X" % r for r in DS_RANGES)
CJK = r"[\u4E00-\u9FA5\u0800-\u4E00\uAC00-\uD7FF]+"
FAMILIES = {
    "default": [r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", r"[0-9][0-9][0-9]"],
    "gpt2": [GPT2],
    "llama3": [LLAMA3],
    "qwen2": [QWEN2],
    "deepseek-llm": [r"[\r\n]", r"\s?[" + DS_CLASS + r"]+",
                     r"\s?[!-/:-~\uFF01-\uFF0F\uFF1A-\uFF5E\u2018-\u201F\u3000-\u3002]+",
                     r"\s+$", CJK, r"\p{N}+"],
    "deepseek-coder": [r"[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", CJK, r"\p{N}"],
    "falcon": [r"[\p{P}\$\+<=>\^~\|`]+", GPT2, r"[0-9][0-9][0-9]"],
    "starcoder": [r"\p{N}", GPT2],
}

CORPUS = [
    "Hello world", " Hello world", "Hello World's and I'M 'Ll 'VE 'd", "it's can't they'll we've I'd",
    "1234567 12 3.14159 ١٢٣٤ ⅫⅩ ²³", "$100+200<=300>=4^5~6|7`8", "a\tb\n\nc\r\nd  \n  e   ", "   ",
    "\n", " \n", "\n \n  x", "x  \t\n", "trailing spaces   ", "\u00a0nbsp\u00a0 x\u3000ideo\u3000",
    "中文分词测试 日本語のテキスト 한국어 문장", "Emoji 🦙🚀 👨‍👩‍👧 ok", "combining e\u0301 a\u0308 é",
    "Ελληνικά Кириллица Ωmega Kelvin ῐΐ ώ", "𝕳𝖊𝖑 math ∀x∈ℝ", "!!!??? ... --- ,,, “quotes” «fr» ！？。",
    "tab\tbefore\tletters .word ,x", "   leading", "a  b   c    d", "x\r\n\r\n\r\ny", "don't DON'T Don'T",
    "code: def f(x):\n    return x**2  # comment\n", "<|endoftext|> <s> [INST]", "٣٤٥ arabic العربية",
    "ﬁ ﬂ ＡＢＣ ａｂｃ", "\u2028line\u2029para\u0085nel", "\u0301\u0301start with marks",
]


def split(regexes, text):
    pieces = [(0, len(text))]
    for r in regexes:
        rx = regex.compile(r)
        out = []
        for b, e in pieces:
            sub = text[b:e]
            pos = 0
            for m in rx.finditer(sub):
                if m.start() == m.end():
                    continue
                if m.start() > pos:
                    out.append((b + pos, b + m.start()))
                out.append((b + m.start(), b + m.end()))
                pos = m.end()
            if pos < len(sub):
                out.append((b + pos, e))
        pieces = out
    return pieces


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.join(here, "..", "..")
    corpus = list(CORPUS)
    inp = os.path.join(root, "..", "shared", "models", "llama.cpp-vocab", "ggml-vocab-gpt-2.gguf.inp")
    if os.path.exists(inp):
        cases = open(inp, encoding="utf-8", newline="").read().split("\n__ggml_vocab_test__\n")
        corpus += [c for c in cases[:-1] if c]
    lines = ["qtune-pretok-ref 1"]
    for fam, rx in FAMILIES.items():
        for text in corpus:
            ends = []
            for b, e in split(rx, text):
                ends.append(len(text[:e].encode("utf-8")))
            lines.append("%s\t%s\t%s" % (fam, text.encode("utf-8").hex(), ",".join(map(str, ends))))
    with open(os.path.join(root, "tests", "data", "pretok-ref.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote %d lines" % (len(lines) - 1))


if __name__ == "__main__":
    main()
