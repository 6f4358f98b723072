// bench-tokenizer.c: encoding speed (tokens/s, MB/s) on ~10 MB of mixed text
// for each vocabulary: SPM (ggml-vocab-llama-spm.gguf), byte-level BPE
// (ggml-vocab-gpt-2.gguf) and the char-level BPE of TinyLlama's tokenizer.json;
// and decoding speed of the streaming detokenizer.
// The text cycles through English prose (the ShawGPT dataset), code, CJK,
// Korean, emoji and whitespace runs, so every path is exercised.
// Usage: bench-tokenizer [MODELS_DIR=../shared/models] [MB=10]
// Not a test: no checks, numbers only.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "io/gguf.h"
#include "tokenizer/tokenizer.h"

static const char *const EXTRA[] = {
    "def forward(self, x):\n    return self.w2(F.silu(self.w1(x)) * self.w3(x))  # SwiGLU\n\n",
    "\xe4\xb8\xad\xe6\x96\x87\xe5\x88\x86\xe8\xaf\x8d\xe6\xb5\x8b\xe8\xaf\x95\xef\xbc\x8c\xe6\x97\xa5\xe6\x9c\xac"
    "\xe8\xaa\x9e\xe3\x81\xae\xe3\x83\x86\xe3\x82\xad\xe3\x82\xb9\xe3\x83\x88\xe3\x80\x82\n",
    "\xed\x95\x9c\xea\xb5\xad\xec\x96\xb4 \xeb\xac\xb8\xec\x9e\xa5\xec\x9e\x85\xeb\x8b\x88\xeb\x8b\xa4. ",
    "Emoji \xf0\x9f\xa6\x99\xf0\x9f\x9a\x80 \xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x91\xa7 ok! ",
    "   \t  \n\n\n    indented 1234567890 $3.14 don't stop\r\n",
};

static char *make_text(const char *models, size_t target, size_t *len) {
    char path[1024];
    snprintf(path, sizeof(path), "%s/datasets/shawgpt-qlora/train.jsonl", models);
    size_t dl = 0;
    char *prose = qt_read_file(path, &dl);
    if (!prose) { prose = qt_strdup("The quick brown fox jumps over the lazy dog. "); dl = strlen(prose); }
    char *s = qt_malloc(target + 4096);
    size_t n = 0, k = 0, off = 0;
    while (n < target) {
        // ~2 KB of prose, then one extra snippet
        size_t take = QT_MIN((size_t)2048, dl - off);
        memcpy(s + n, prose + off, take);
        n += take;
        off = (off + take) % dl;
        const char *e = EXTRA[k++ % QT_ARRAY_LEN(EXTRA)];
        size_t el = strlen(e);
        memcpy(s + n, e, el);
        n += el;
    }
    qt_free(prose);
    *len = n;
    return s;
}

static void bench(const char *name, const qt_tokenizer *t, const char *text, size_t len) {
    if (!t) { printf("%-36s (not loaded)\n", name); return; }
    double t0 = qt_time_s();
    int n = qt_tokenize(t, text, len, false, false, NULL, 0);
    double t1 = qt_time_s();
    int32_t *ids = qt_malloc(((size_t)n + 1) * sizeof(int32_t));
    qt_tokenize(t, text, len, false, false, ids, n);
    // decode everything through the streaming detokenizer
    char buf[256];
    size_t out = 0;
    qt_detok d;
    qt_detok_init(&d);
    double t2 = qt_time_s();
    for (int i = 0; i < n; i++) out += qt_detok_push(&d, t, ids[i], buf, sizeof(buf));
    out += qt_detok_flush(&d, buf, sizeof(buf));
    double t3 = qt_time_s();
    printf("%-36s %9d tokens  encode %6.2f s %10.0f tok/s %6.2f MB/s   decode %10.0f tok/s%s\n", name, n, t1 - t0,
           n / (t1 - t0), len / 1e6 / (t1 - t0), n / (t3 - t2), out == len ? "" : "  (round trip differs in length)");
    qt_free(ids);
}

static qt_tokenizer *gguf_tok(const char *models, const char *rel) {
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", models, rel);
    qt_gguf *g = qt_gguf_open(path);
    qt_tokenizer *t = g ? qt_tokenizer_from_gguf(g) : NULL;
    qt_gguf_close(g);
    return t;
}

int main(int argc, char **argv) {
    const char *models = argc > 1 ? argv[1] : "../shared/models";
    double mb = argc > 2 ? atof(argv[2]) : 10.0;
    size_t len;
    char *text = make_text(models, (size_t)(mb * 1e6), &len);
    printf("text: %.2f MB of mixed prose, code, CJK, Korean, emoji, whitespace\n", len / 1e6);
    qt_tokenizer *spm = gguf_tok(models, "llama.cpp-vocab/ggml-vocab-llama-spm.gguf");
    bench("spm (ggml-vocab-llama-spm.gguf)", spm, text, len);
    qt_tokenizer_free(spm);
    qt_tokenizer *gpt2 = gguf_tok(models, "llama.cpp-vocab/ggml-vocab-gpt-2.gguf");
    bench("bpe gpt2 (ggml-vocab-gpt-2.gguf)", gpt2, text, len);
    qt_tokenizer_free(gpt2);
    char path[1024];
    snprintf(path, sizeof(path), "%s/hf-tinyllama-1.1b-chat-v0.1", models);
    qt_tokenizer *hf = qt_tokenizer_from_hf(path);
    bench("bpe-spm (TinyLlama tokenizer.json)", hf, text, len);
    qt_tokenizer_free(hf);
    qt_free(text);
    return 0;
}
