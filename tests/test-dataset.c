// test-dataset.c: JSONL training data, the Llama-2 chat template, data folders
// and the length-bucketing batcher.
//  - the ShawGPT datasets in ../shared/models/datasets (mlx-lm folder with a
//    "text" form; an OpenAI-style "messages" file) with the llama-spm vocabulary:
//    record counts; tokens equal the tokenizer run on the record text rendered
//    independently here (the chat template written out by hand, special tokens
//    parsed, as llama.cpp tokenizes a rendered chat); masks mark exactly the
//    assistant / completion text (decoded trained tokens == expected strings);
//  - the rendered template of a 3-turn conversation against the exact string
//    of meta-llama/Llama-2-7b-chat-hf's chat template (content.strip() rules);
//  - truncation counts, find_splits on a folder, a file, and bad paths;
//  - bad data: every malformed line gives NULL and one error naming file:line
//    and the problem; skip_bad_lines continues and counts;
//  - batcher: determinism, each example once per epoch, padding efficiency,
//    seek(k) == k calls of next.
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "base/base.h"
#include "io/gguf.h"
#include "test.h"
#include "tokenizer/tokenizer.h"
#include "train/dataset.h"

// ---- log capture ------------------------------------------------------------

static char g_log[1 << 16];
static int g_n_err, g_n_warn;

static void sink(const char *line, void *ud) {
    (void)ud;
    if (strncmp(line, "error: ", 7) == 0) g_n_err++;
    if (strncmp(line, "warning: ", 9) == 0) g_n_warn++;
    size_t n = strlen(g_log), k = strlen(line);
    if (n + k + 2 < sizeof(g_log)) { memcpy(g_log + n, line, k); g_log[n + k] = '\n'; g_log[n + k + 1] = 0; }
}

static void capture(void) { g_log[0] = 0; g_n_err = g_n_warn = 0; qt_log_set_sink(sink, NULL); }
static void release(void) { qt_log_set_sink(NULL, NULL); }

// ---- helpers ------------------------------------------------------------------

static char g_dir[] = "/tmp/qt-dataset-XXXXXX";

static char *write_tmp(const char *name, const char *data, size_t n) {
    char *p = qt_malloc(strlen(g_dir) + strlen(name) + 2);
    sprintf(p, "%s/%s", g_dir, name);
    FILE *f = fopen(p, "wb");
    QT_ASSERT(f);
    QT_ASSERT(fwrite(data, 1, n, f) == n);
    fclose(f);
    return p;
}

static int32_t *encode(const qt_tokenizer *t, const char *s, size_t len, bool bos, bool special, int *n) {
    int need = qt_tokenize(t, s, len, bos, special, NULL, 0);
    QT_ASSERT(need >= 0);
    int32_t *ids = qt_malloc((size_t)need * sizeof(int32_t) + 4);
    QT_ASSERT(qt_tokenize(t, s, len, bos, special, ids, need) == need);
    *n = need;
    return ids;
}

// Raw concatenated pieces of ids[a, b) (no leading-space removal): the bytes the tokens stand for.
static char *pieces(const qt_tokenizer *t, const int32_t *ids, int a, int b) {
    size_t cap = 16, n = 0;
    char *out = qt_malloc(cap);
    for (int i = a; i < b; i++) {
        size_t k;
        const char *p = qt_token_to_piece(t, ids[i], false, &k);
        if (n + k + 1 > cap) { cap = 2 * (n + k + 1); out = qt_realloc(out, cap); }
        memcpy(out + n, p, k);
        n += k;
    }
    out[n] = 0;
    return out;
}

static bool same_ids(const int32_t *a, int na, const int32_t *b, int nb) {
    return na == nb && memcmp(a, b, (size_t)na * sizeof(int32_t)) == 0;
}

// The trained runs of an example: [start, end) pairs, at most cap.
static int trained_runs(const qt_example *e, int *runs, int cap) {
    int n = 0;
    for (int i = 0; i < e->len;) {
        if (!e->train[i]) { i++; continue; }
        int j = i;
        while (j < e->len && e->train[j]) j++;
        if (n < cap) { runs[2 * n] = i; runs[2 * n + 1] = j; }
        n++;
        i = j;
    }
    return n;
}

static char *path_in(const char *dir, const char *name) {
    char *p = qt_malloc(strlen(test_models_dir()) + strlen(dir) + strlen(name) + 3);
    sprintf(p, "%s/%s%s%s", test_models_dir(), dir, name[0] ? "/" : "", name);
    return p;
}

// ---- chat template --------------------------------------------------------------

static void test_chat_template(const qt_tokenizer *tok) {
    // meta-llama/Llama-2-7b-chat-hf: the system text goes inside the first user
    // turn; content.strip() applies to that whole turn (so the user text keeps
    // its leading space after the <<SYS>> block) and to each assistant turn.
    qt_chat_msg m[5] = {
        { "system", "You are a helpful assistant." },
        { "user", " Hello!\n" },
        { "assistant", "  Hi there. How can I help?\n" },
        { "user", "What is 2+2?" },
        { "assistant", "2+2 is 4." },
    };
    const char *want =
        "<s>[INST] <<SYS>>\nYou are a helpful assistant.\n<</SYS>>\n\n Hello! [/INST] Hi there. How can I help? </s>"
        "<s>[INST] What is 2+2? [/INST] 2+2 is 4. </s>";
    char *got = qt_chat_render(NULL, m, 5);
    CHECK(got && strcmp(got, want) == 0, "rendered:\n%s\nexpected:\n%s", got ? got : "(null)", want);
    char *got2 = qt_chat_render("llama2", m, 5);
    CHECK(got2 && got && strcmp(got, got2) == 0, "\"llama2\" names the same template");
    qt_free(got2);

    // tokens: as llama.cpp tokenizes the rendered string with special tokens parsed
    int32_t *ids = NULL;
    uint8_t *train = NULL;
    int n = qt_chat_encode(tok, NULL, m, 5, true, &ids, &train);
    int nref;
    int32_t *ref = encode(tok, want, strlen(want), false, true, &nref);
    CHECK(n > 0 && same_ids(ids, n, ref, nref), "chat tokens (%d) differ from tokenizing the rendered string (%d)", n, nref);
    // trained runs: exactly the two assistant texts, each closed by EOS
    qt_example e = { ids, train, n };
    int runs[8];
    int nr = trained_runs(&e, runs, 4);
    CHECK(nr == 2, "%d trained runs, expected 2", nr);
    const char *want_run[2] = { " Hi there. How can I help? ", " 2+2 is 4. " };
    for (int r = 0; r < 2 && r < nr; r++) {
        int a = runs[2 * r], b = runs[2 * r + 1];
        CHECK(ids[b - 1] == qt_tokenizer_eos(tok), "run %d ends with EOS", r);
        char *s = pieces(tok, ids, a, b - 1);
        CHECK(strcmp(s, want_run[r]) == 0, "run %d trains \"%s\", expected \"%s\"", r, s, want_run[r]);
        qt_free(s);
    }
    CHECK(train[0] == 0, "train[0] = 0");
    qt_free(ids); qt_free(train);
    // without mask_prompt: every token but the first
    n = qt_chat_encode(tok, NULL, m, 5, false, &ids, &train);
    int n_train = 0;
    for (int i = 0; i < n; i++) n_train += train[i];
    CHECK(n_train == n - 1 && train[0] == 0, "unmasked: %d of %d trained", n_train, n);
    qt_free(ids); qt_free(train);
    qt_free(ref);
    qt_free(got);

    // no system message; Python's strip() removes Unicode spaces too (U+00A0, U+3000, U+2028, U+0085) but not U+200B
    qt_chat_msg m2[2] = { { "user", "\t\xc2\xa0q\xe3\x80\x80" }, { "assistant", "\xe2\x80\xa8" "a\xe2\x80\x8b\xc2\x85\n" } };
    got = qt_chat_render(NULL, m2, 2);
    CHECK(got && strcmp(got, "<s>[INST] q [/INST] a\xe2\x80\x8b" " </s>") == 0, "no system: %s", got ? got : "(null)");
    qt_free(got);
    // a conversation may end on a user turn (nothing of it trained)
    got = qt_chat_render(NULL, m, 4);
    CHECK(got && strstr(got, "<s>[INST] What is 2+2? [/INST]") && got[strlen(got) - 1] == ']', "trailing user: %s",
          got ? got : "(null)");
    qt_free(got);

    // roles the template cannot take
    capture();
    qt_chat_msg bad1[2] = { { "assistant", "a" }, { "user", "b" } };
    qt_chat_msg bad2[3] = { { "user", "a" }, { "assistant", "b" }, { "system", "c" } };
    qt_chat_msg bad3[1] = { { "system", "s" } };
    qt_chat_msg bad4[1] = { { "bot", "s" } };
    CHECK(qt_chat_render(NULL, bad1, 2) == NULL && strstr(g_log, "messages[0]: role \"assistant\" where \"user\""),
          "assistant first: %s", g_log);
    CHECK(qt_chat_render(NULL, bad2, 3) == NULL && strstr(g_log, "messages[2]: role \"system\" where \"user\""),
          "system later: %s", g_log);
    CHECK(qt_chat_render(NULL, bad3, 1) == NULL && strstr(g_log, "no user message"), "system only: %s", g_log);
    CHECK(qt_chat_render(NULL, bad4, 1) == NULL && strstr(g_log, "unknown role \"bot\""), "unknown role: %s", g_log);
    CHECK(qt_chat_render("vicuna", m, 5) == NULL && strstr(g_log, "not supported"), "unknown template: %s", g_log);
    release();
}

// ---- the real datasets ------------------------------------------------------------

static void test_text_folder(const qt_tokenizer *tok) {
    char *dir = path_in("datasets/shawgpt-qlora", "");
    char *tr, *va, *te;
    CHECK(qt_data_find_splits(dir, &tr, &va, &te) == QT_OK, "find_splits on the folder");
    CHECK(tr && va && te && strstr(tr, "/train.jsonl") && strstr(va, "/valid.jsonl") && strstr(te, "/test.jsonl"),
          "three splits found");
    if (!tr || !va || !te) { qt_free(dir); qt_free(tr); qt_free(va); qt_free(te); return; }
    const int want_n[3] = { 50, 10, 10 };
    char *paths[3] = { tr, va, te };
    qt_data_opts o = qt_data_defaults();
    for (int s = 0; s < 3; s++) {
        capture();
        qt_dataset *d = qt_dataset_load(paths[s], tok, &o);
        release();
        CHECK(d != NULL, "load %s: %s", paths[s], g_log);
        if (!d) continue;
        // the literal "<s>" in the text is worth one warning per file
        CHECK(g_n_warn == 1 && strstr(g_log, "plain text"), "one warning about literal <s>: %s", g_log);
        CHECK(qt_dataset_n(d) == want_n[s], "%s: %d records, expected %d", paths[s], qt_dataset_n(d), want_n[s]);
        CHECK(qt_dataset_n_skipped(d) == 0 && qt_dataset_n_truncated(d) == 0, "nothing skipped or truncated");
        CHECK(qt_dataset_n_train_tokens(d) == qt_dataset_n_tokens(d) - qt_dataset_n(d),
              "text form: every token but the first trained");
        // the tokens: BOS + tokenize(text, plain) + EOS, the text read here with cJSON
        char *raw = qt_read_file(paths[s], NULL);
        int i = 0, n_bad = 0, worst = -1;
        for (char *line = strtok(raw, "\n"); line && i < qt_dataset_n(d); line = strtok(NULL, "\n"), i++) {
            cJSON *j = cJSON_Parse(line);
            const char *text = cJSON_GetObjectItem(j, "text")->valuestring;
            int nref;
            int32_t *ref = encode(tok, text, strlen(text), true, false, &nref);
            const qt_example *e = qt_dataset_get(d, i);
            bool ok = e->len == nref + 1 && memcmp(e->tokens, ref, (size_t)nref * 4) == 0 &&
                      e->tokens[nref] == qt_tokenizer_eos(tok) && e->tokens[0] == qt_tokenizer_bos(tok);
            if (!ok) { n_bad++; worst = i; }
            qt_free(ref);
            cJSON_Delete(j);
        }
        CHECK(n_bad == 0 && i == want_n[s], "%s: %d records differ from BOS+tokenize(text)+EOS (e.g. %d)", paths[s],
              n_bad, worst);
        qt_free(raw);
        qt_dataset_free(d);
    }

    // parse_special: "<s>" / "</s>" become BOS / EOS, with no second BOS or EOS added
    o.parse_special = true;
    capture();
    qt_dataset *d = qt_dataset_load(va, tok, &o);
    release();
    CHECK(d && g_n_warn == 0, "parse_special load: %s", g_log);
    if (d) {
        char *raw = qt_read_file(va, NULL);
        cJSON *j = cJSON_Parse(strtok(raw, "\n"));
        const char *text = cJSON_GetObjectItem(j, "text")->valuestring;
        int nref;
        int32_t *ref = encode(tok, text, strlen(text), false, true, &nref);
        const qt_example *e = qt_dataset_get(d, 0);
        CHECK(same_ids(e->tokens, e->len, ref, nref), "parse_special: tokens equal tokenize(text, special) (%d vs %d)",
              e->len, nref);
        CHECK(e->len > 2 && e->tokens[0] == qt_tokenizer_bos(tok) && e->tokens[1] != qt_tokenizer_bos(tok) &&
              e->tokens[e->len - 1] == qt_tokenizer_eos(tok) && e->tokens[e->len - 2] != qt_tokenizer_eos(tok),
              "one BOS, one EOS");
        qt_free(ref);
        cJSON_Delete(j);
        qt_free(raw);
        qt_dataset_free(d);
    }

    // truncation: counts and lengths against the untruncated load
    o = qt_data_defaults();
    enum { SMALL = 96 };
    qt_log_set_level(0);
    qt_dataset *full = qt_dataset_load(tr, tok, &o);
    o.max_seq_len = SMALL;
    qt_dataset *cut = qt_dataset_load(tr, tok, &o);
    qt_log_set_level(1);
    CHECK(full && cut, "loads");
    if (full && cut) {
        int n_long = 0;
        int64_t sum = 0;
        bool prefix_ok = true;
        for (int i = 0; i < qt_dataset_n(full); i++) {
            const qt_example *a = qt_dataset_get(full, i), *b = qt_dataset_get(cut, i);
            n_long += a->len > SMALL;
            sum += QT_MIN(a->len, SMALL);
            prefix_ok &= b->len == QT_MIN(a->len, SMALL) && memcmp(a->tokens, b->tokens, (size_t)b->len * 4) == 0;
        }
        CHECK(n_long > 0 && qt_dataset_n_truncated(cut) == n_long, "truncated %d, expected %d",
              qt_dataset_n_truncated(cut), n_long);
        CHECK(qt_dataset_n_truncated(full) == 0, "none truncated at 2048");
        CHECK(qt_dataset_n_tokens(cut) == sum && prefix_ok && qt_dataset_max_len(cut) == SMALL,
              "truncated examples are prefixes of max_seq_len tokens");
    }
    qt_dataset_free(full);
    qt_dataset_free(cut);

    // find_splits on one file, on a folder without train.jsonl, on nothing
    char *t2, *v2 = (char *)1, *e2 = (char *)1;
    CHECK(qt_data_find_splits(tr, &t2, &v2, &e2) == QT_OK && t2 && strcmp(t2, tr) == 0 && !v2 && !e2,
          "a file is the train split only");
    qt_free(t2);
    char *only_valid = qt_malloc(strlen(g_dir) + 16);
    sprintf(only_valid, "%s/nosplit", g_dir);
    mkdir(only_valid, 0700);
    char *vp = qt_malloc(strlen(only_valid) + 16);
    sprintf(vp, "%s/valid.jsonl", only_valid);
    FILE *f = fopen(vp, "w");
    fputs("{\"text\": \"a\"}\n", f);
    fclose(f);
    capture();
    CHECK(qt_data_find_splits(only_valid, &t2, &v2, &e2) == QT_ERR && !t2 && !v2 && !e2 && strstr(g_log, "no train.jsonl"),
          "folder without train.jsonl: %s", g_log);
    g_log[0] = 0;
    CHECK(qt_data_find_splits("/nonexistent/qt-data", &t2, NULL, NULL) == QT_ERR && strstr(g_log, "/nonexistent/qt-data"),
          "missing path: %s", g_log);
    release();
    unlink(vp);
    rmdir(only_valid);
    qt_free(vp);
    qt_free(only_valid);
    qt_free(tr); qt_free(va); qt_free(te); qt_free(dir);
}

static void test_chat_file(const qt_tokenizer *tok) {
    char *path = path_in("datasets/shawgpt-openai-chat", "training-data.jsonl");
    qt_data_opts o = qt_data_defaults();
    o.mask_prompt = true;
    capture();
    qt_dataset *d = qt_dataset_load(path, tok, &o);
    release();
    CHECK(d && g_n_warn == 0 && g_n_err == 0, "load %s: %s", path, g_log);
    if (!d) { qt_free(path); return; }
    CHECK(qt_dataset_n(d) == 50, "%d records, expected 50", qt_dataset_n(d));
    char *raw = qt_read_file(path, NULL);
    int i = 0, n_tok_bad = 0, n_mask_bad = 0;
    int64_t n_train_want = 0;
    for (char *line = strtok(raw, "\n"); line && i < qt_dataset_n(d); line = strtok(NULL, "\n"), i++) {
        // the Llama-2 template for (system, user, assistant), written out here
        cJSON *j = cJSON_Parse(line);
        const cJSON *ms = cJSON_GetObjectItem(j, "messages");
        const char *sys = cJSON_GetArrayItem(ms, 0)->child->next->valuestring;
        const char *usr = cJSON_GetArrayItem(ms, 1)->child->next->valuestring;
        const char *asst = cJSON_GetArrayItem(ms, 2)->child->next->valuestring;
        size_t cap = strlen(sys) + strlen(usr) + strlen(asst) + 64;
        char *want = qt_malloc(cap);
        snprintf(want, cap, "<s>[INST] <<SYS>>\n%s\n<</SYS>>\n\n%s [/INST] %s </s>", sys, usr, asst);
        int nref;
        int32_t *ref = encode(tok, want, strlen(want), false, true, &nref);
        const qt_example *e = qt_dataset_get(d, i);
        if (!same_ids(e->tokens, e->len, ref, nref)) {
            if (n_tok_bad++ == 0) fprintf(stderr, "  record %d: %d tokens, reference %d\n", i, e->len, nref);
        }
        // the mask: one run, " {assistant} " then EOS
        int runs[4];
        int nr = trained_runs(e, runs, 2);
        char *exp = qt_malloc(strlen(asst) + 3);
        sprintf(exp, " %s ", asst);
        bool ok = nr == 1 && runs[1] == e->len && e->tokens[e->len - 1] == qt_tokenizer_eos(tok);
        if (ok) {
            char *s = pieces(tok, e->tokens, runs[0], runs[1] - 1);
            ok = strcmp(s, exp) == 0;
            if (!ok && n_mask_bad == 0) fprintf(stderr, "  record %d trains \"%s\"\n  expected \"%s\"\n", i, s, exp);
            qt_free(s);
            n_train_want += runs[1] - runs[0];
        }
        n_mask_bad += !ok;
        qt_free(exp);
        qt_free(ref);
        qt_free(want);
        cJSON_Delete(j);
    }
    CHECK(i == 50 && n_tok_bad == 0, "%d records differ from tokenizing the rendered template", n_tok_bad);
    CHECK(n_mask_bad == 0, "%d records train something other than the assistant text + EOS", n_mask_bad);
    CHECK(qt_dataset_n_train_tokens(d) == n_train_want, "train tokens %lld, expected %lld",
          (long long)qt_dataset_n_train_tokens(d), (long long)n_train_want);
    qt_free(raw);
    qt_dataset_free(d);

    // without mask_prompt every token but the first is trained
    o.mask_prompt = false;
    d = qt_dataset_load(path, tok, &o);
    CHECK(d && qt_dataset_n_train_tokens(d) == qt_dataset_n_tokens(d) - qt_dataset_n(d), "unmasked chat");
    qt_dataset_free(d);
    qt_free(path);
}

static void test_completions(const qt_tokenizer *tok) {
    const char *data =
        "{\"prompt\": \"Question: what is the capital of France?\\nAnswer:\", \"completion\": \" Paris.\"}\n"
        "\r\n"
        "{\"prompt\": \"Translate to French: cat\\n\", \"completion\": \"chat\", \"id\": 7}\r\n";
    char *p = write_tmp("completions.jsonl", data, strlen(data));
    qt_data_opts o = qt_data_defaults();
    o.mask_prompt = true;
    capture();
    qt_dataset *d = qt_dataset_load(p, tok, &o);
    release();
    CHECK(d && qt_dataset_n(d) == 2, "load completions: %s", g_log);
    const char *want[2] = { " Paris.", "chat" };
    const char *whole[2] = { "Question: what is the capital of France?\nAnswer: Paris.", "Translate to French: cat\nchat" };
    for (int i = 0; d && i < 2; i++) {
        const qt_example *e = qt_dataset_get(d, i);
        int runs[4];
        int nr = trained_runs(e, runs, 2);
        CHECK(nr == 1 && runs[1] == e->len && e->tokens[e->len - 1] == qt_tokenizer_eos(tok), "record %d: one run to EOS",
              i);
        if (nr == 1) {
            char *s = pieces(tok, e->tokens, runs[0], runs[1] - 1);
            CHECK(strcmp(s, want[i]) == 0, "record %d trains \"%s\", expected \"%s\"", i, s, want[i]);
            qt_free(s);
        }
        int nref;
        int32_t *ref = encode(tok, whole[i], strlen(whole[i]), true, false, &nref);
        CHECK(e->len == nref + 1 && memcmp(e->tokens, ref, (size_t)nref * 4) == 0,
              "record %d: BOS + tokenize(prompt + completion) + EOS", i);
        qt_free(ref);
        CHECK(qt_dataset_line(d, i) == 1 + 2 * i, "record %d from line %d", i, qt_dataset_line(d, i));
    }
    qt_dataset_free(d);
    // add_eos = false
    o.add_eos = false;
    d = qt_dataset_load(p, tok, &o);
    CHECK(d && qt_dataset_get(d, 0)->tokens[qt_dataset_get(d, 0)->len - 1] != qt_tokenizer_eos(tok), "add_eos off");
    qt_dataset_free(d);
    unlink(p);
    qt_free(p);

    // lines of any length: a 1 MiB record, truncated and counted
    size_t big = 1 << 20;
    char *s = qt_malloc(big + 64);
    strcpy(s, "{\"text\": \"");
    size_t k = strlen(s);
    for (size_t i = 0; i < big; i++) s[k++] = "abcd efgh "[i % 10];
    strcpy(s + k, "\"}\n{\"text\": \"short\"}\n");
    p = write_tmp("big.jsonl", s, strlen(s));
    o = qt_data_defaults();
    capture();
    d = qt_dataset_load(p, tok, &o);
    release();
    CHECK(d && qt_dataset_n(d) == 2 && qt_dataset_n_truncated(d) == 1 && qt_dataset_get(d, 0)->len == 2048 &&
          strstr(g_log, "1 of 2 records were longer than max_seq_len 2048"), "1 MiB line: %s", g_log);
    qt_dataset_free(d);
    unlink(p);
    qt_free(p);
    qt_free(s);
}

// ---- bad data ------------------------------------------------------------------------

typedef struct {
    const char *name;
    const char *data;
    const char *want;   // expected in the error after "<path>"
    int mask_prompt, max_seq_len;
    const char *tmpl;
} bad_case;

#define GOOD_TEXT "{\"text\": \"fine\"}\n\n"
#define GOOD_CHAT "{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}, {\"role\": \"assistant\", \"content\": \"a\"}]}\n\n"

static const bad_case bad_cases[] = {
    { "empty", "", ": empty file (no records)", 0, 0, NULL },
    { "blank", "\n   \n\t\n", ": empty file (no records)", 0, 0, NULL },
    { "invalid-json", GOOD_TEXT "{\"text\": \"a\"\n", ":3: invalid JSON at column 13", 0, 0, NULL },
    { "trailing-garbage", GOOD_TEXT "{\"text\": \"a\"} x\n", ":3: invalid JSON", 0, 0, NULL },
    { "not-json", "hello\n", ":1: invalid JSON at column 1", 0, 0, NULL },
    { "lone-surrogate", "{\"text\": \"\\ud800\"}\n", ":1: invalid JSON", 0, 0, NULL },
    { "array", GOOD_TEXT "[{\"text\": \"a\"}]\n", ":3: expected a JSON object, got an array", 0, 0, NULL },
    { "number", "42\n", ":1: expected a JSON object, got a number", 0, 0, NULL },
    { "missing-keys", GOOD_TEXT "{\"txt\": \"a\"}\n", ":3: missing key: a record needs \"text\"", 0, 0, NULL },
    { "no-completion", "{\"prompt\": \"a\"}\n", ":1: missing key \"completion\"", 0, 0, NULL },
    { "no-prompt", "{\"completion\": \"a\"}\n", ":1: missing key \"prompt\"", 0, 0, NULL },
    { "text-type", GOOD_TEXT "{\"text\": 5}\n", ":3: \"text\" must be a string, got a number", 0, 0, NULL },
    { "completion-type", "{\"prompt\": \"a\", \"completion\": [\"b\"]}\n",
      ":1: \"completion\" must be a string, got an array", 0, 0, NULL },
    { "text-empty", "{\"text\": \"\"}\n", ":1: \"text\" is empty", 0, 0, NULL },
    { "messages-type", "{\"messages\": \"hi\"}\n", ":1: \"messages\" must be an array, got a string", 0, 0, NULL },
    { "messages-empty", GOOD_CHAT "{\"messages\": []}\n", ":3: \"messages\" is empty", 0, 0, NULL },
    { "message-type", "{\"messages\": [\"hi\"]}\n", ":1: messages[0]: must be an object, got a string", 0, 0, NULL },
    { "unknown-role", GOOD_CHAT "{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}, {\"role\": \"tool\", \"content\": \"b\"}]}\n",
      ":3: messages[1]: unknown role \"tool\"", 0, 0, NULL },
    { "no-role", "{\"messages\": [{\"content\": \"q\"}]}\n", ":1: messages[0]: missing key \"role\"", 0, 0, NULL },
    { "content-null", "{\"messages\": [{\"role\": \"user\", \"content\": null}]}\n",
      ":1: messages[0]: \"content\" must be a string, got null", 0, 0, NULL },
    { "roles-order", "{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}, {\"role\": \"user\", \"content\": \"q\"}]}\n",
      ":1: messages[1]: role \"user\" where \"assistant\" was expected", 0, 0, NULL },
    { "bad-utf8", GOOD_TEXT "{\"text\": \"ab\xff\"}\n", ":3: invalid UTF-8 at column 13 (byte 0xff)", 0, 0, NULL },
    { "overlong-utf8", "{\"text\": \"\xc0\xaf\"}\n", ":1: invalid UTF-8 at column 11", 0, 0, NULL },
    { "surrogate-utf8", "{\"text\": \"\xed\xa0\x80\"}\n", ":1: invalid UTF-8 at column 11", 0, 0, NULL },
    { "cut-utf8", "{\"text\": \"a\xe2\x82", ":1: invalid UTF-8 at column 12", 0, 0, NULL },
    { "nul", "{\"text\": \"a\0b\"}\n", ":1: NUL byte at column 12", 0, 0, NULL },
    { "mixed", GOOD_TEXT "{\"prompt\": \"p\", \"completion\": \"c\"}\n",
      ":3: a \"prompt\"/\"completion\" record, but line 1 is a \"text\" record", 0, 0, NULL },
    { "mixed-chat", GOOD_CHAT "{\"text\": \"t\"}\n", ":3: a \"text\" record, but line 1 is a \"messages\" record", 0, 0, NULL },
    { "two-forms", "{\"text\": \"a\", \"messages\": []}\n", ":1: a record with keys of more than one form", 0, 0, NULL },
    { "untrainable", "{\"messages\": [{\"role\": \"user\", \"content\": \"only a question\"}]}\n",
      ":1: a record with no trainable tokens", 1, 0, NULL },
    { "prompt-too-long", "{\"prompt\": \"one two three four five six seven eight nine ten\", \"completion\": \" eleven\"}\n",
      ":1: no trainable tokens in the first 8 (max_seq_len)", 1, 8, NULL },
    { "template", GOOD_CHAT, ":1: chat template \"vicuna\" is not supported yet", 0, 0, "vicuna" },
};

static void test_bad_data(const qt_tokenizer *tok) {
    for (size_t c = 0; c < QT_ARRAY_LEN(bad_cases); c++) {
        const bad_case *bc = &bad_cases[c];
        char name[64];
        snprintf(name, sizeof(name), "%s.jsonl", bc->name);
        size_t n = strlen(bc->data);
        if (strcmp(bc->name, "nul") == 0) n = 16;   // the data holds a NUL
        char *p = write_tmp(name, bc->data, n);
        qt_data_opts o = qt_data_defaults();
        o.mask_prompt = bc->mask_prompt;
        if (bc->max_seq_len) o.max_seq_len = bc->max_seq_len;
        o.chat_template = bc->tmpl;
        capture();
        qt_dataset *d = qt_dataset_load(p, tok, &o);
        release();
        char want[512];
        snprintf(want, sizeof(want), "error: %s%s", p, bc->want);
        CHECK(d == NULL && g_n_err == 1 && strstr(g_log, want), "%s: expected one error \"%s\", got:\n%s", bc->name, want,
              g_log);
        qt_dataset_free(d);
        unlink(p);
        qt_free(p);
    }
    capture();
    CHECK(qt_dataset_load("/nonexistent/x.jsonl", tok, NULL) == NULL && strstr(g_log, "/nonexistent/x.jsonl: cannot open"),
          "missing file: %s", g_log);
    release();

    // skip_bad_lines: continue past bad lines, count them, still fail on none left
    const char *mixed =
        "\xef\xbb\xbf{\"text\": \"one\"}\n"                  // 1 (with a UTF-8 byte order mark)
        "{\"text\": \"two\"\n"                              // 2 invalid JSON
        "{\"text\": \"three\"}\n"                           // 3
        "{\"text\": \"f\xc3\"}\n"                           // 4 bad UTF-8
        "\n"                                              // 5 blank
        "{\"prompt\": \"p\", \"completion\": \"c\"}\n"      // 6 mixed
        "{\"text\": \"six\"}\n"                             // 7
        "[]\n"                                            // 8 array
        "{\"text\": \"seven\"}";                            // 9, no final newline
    char *p = write_tmp("skip.jsonl", mixed, strlen(mixed));
    qt_data_opts o = qt_data_defaults();
    o.skip_bad_lines = true;
    capture();
    qt_dataset *d = qt_dataset_load(p, tok, &o);
    release();
    CHECK(d && qt_dataset_n(d) == 4 && qt_dataset_n_skipped(d) == 4, "skip: %d records, %d skipped\n%s",
          d ? qt_dataset_n(d) : -1, d ? qt_dataset_n_skipped(d) : -1, g_log);
    const int bad_lines[4] = { 2, 4, 6, 8 };
    for (int k = 0; k < 4; k++) {
        char want[512];
        snprintf(want, sizeof(want), "warning: %s:%d: ", p, bad_lines[k]);
        CHECK(strstr(g_log, want) != NULL, "warning for line %d", bad_lines[k]);
    }
    CHECK(g_n_err == 0 && g_n_warn == 5 && strstr(g_log, "skipped 4 bad lines"), "4 warnings and a summary:\n%s", g_log);
    if (d) {
        const int lines[4] = { 1, 3, 7, 9 };
        for (int k = 0; k < 4; k++) CHECK(qt_dataset_line(d, k) == lines[k], "record %d from line %d", k, lines[k]);
        char *s = pieces(tok, qt_dataset_get(d, 0)->tokens, 1, 2);
        CHECK(strcmp(s, " one") == 0, "the byte order mark is not part of the text: \"%s\"", s);
        qt_free(s);
    }
    qt_dataset_free(d);
    unlink(p);
    qt_free(p);
    p = write_tmp("allbad.jsonl", "x\n[]\n", 5);
    capture();
    d = qt_dataset_load(p, tok, &o);
    release();
    CHECK(!d && strstr(g_log, "no usable records (2 bad lines skipped)"), "all bad: %s", g_log);
    unlink(p);
    qt_free(p);
    // an unsupported template is not a bad line to skip
    p = write_tmp("tmpl.jsonl", GOOD_CHAT GOOD_CHAT, strlen(GOOD_CHAT GOOD_CHAT));
    o.chat_template = "vicuna";
    capture();
    d = qt_dataset_load(p, tok, &o);
    release();
    CHECK(!d && g_n_err == 1, "template error stops even with skip_bad_lines: %s", g_log);
    unlink(p);
    qt_free(p);
}

// ---- batcher --------------------------------------------------------------------

enum { N_EX = 237, BATCH = 4, N_EPOCHS = 3 };
// Bucketed batches of similar lengths: padding stays under 10% of the tokens
// (lengths are spread over ~1..300 tokens; windows hold 200 examples).
#define MIN_PAD_EFFICIENCY 0.90
// The first quarter of unshuffled batches: ~15 random batches of 4 similar
// lengths (uniform in ~1..300), whose mean is within ~13% of the whole (1 sigma;
// the seeds are fixed, so this does not flake). The shortest quarter of the
// records, which a length-sorted order would give, is ~60% below.
#define MAX_PREFIX_BIAS 0.35

static double efficiency(const qt_dataset *d, const int *idx, const int *cnt, int nb) {
    int64_t used = 0, padded = 0;
    for (int b = 0; b < nb; b++) {
        int mx = 0;
        for (int k = 0; k < cnt[b]; k++) {
            int len = qt_dataset_get(d, idx[b * BATCH + k])->len;
            used += len;
            mx = QT_MAX(mx, len);
        }
        padded += (int64_t)mx * cnt[b];
    }
    return (double)used / (double)padded;
}

// Runs n_steps batches; idx (n_steps * BATCH), cnt (n_steps).
static void run(qt_batcher *b, int n_steps, int *idx, int *cnt) {
    for (int s = 0; s < n_steps; s++) {
        for (int k = 0; k < BATCH; k++) idx[s * BATCH + k] = -1;
        cnt[s] = qt_batcher_next(b, idx + s * BATCH);
    }
}

static void test_batcher(const qt_tokenizer *tok) {
    // records of random lengths
    qt_rng r;
    qt_rng_seed(&r, 42);
    size_t cap = 1 << 20, n = 0;
    char *s = qt_malloc(cap);
    for (int i = 0; i < N_EX; i++) {
        int words = 1 + (int)(qt_rng_u64(&r) % 300);
        n += (size_t)sprintf(s + n, "{\"text\": \"");
        for (int w = 0; w < words; w++) n += (size_t)sprintf(s + n, "%s", w ? " the" : "the");
        n += (size_t)sprintf(s + n, "\"}\n");
    }
    char *p = write_tmp("lengths.jsonl", s, n);
    qt_free(s);
    qt_dataset *d = qt_dataset_load(p, tok, NULL);
    CHECK(d && qt_dataset_n(d) == N_EX, "synthetic dataset");
    unlink(p);
    qt_free(p);
    if (!d) return;

    qt_batcher *b1 = qt_batcher_init(d, BATCH, 1234, true);
    int nb = qt_batcher_n_per_epoch(b1);
    CHECK(nb == (N_EX + BATCH - 1) / BATCH, "%d batches per epoch", nb);
    int steps = N_EPOCHS * nb;
    int *i1 = qt_malloc((size_t)steps * BATCH * sizeof(int)), *c1 = qt_malloc((size_t)steps * sizeof(int));
    int *i2 = qt_malloc((size_t)steps * BATCH * sizeof(int)), *c2 = qt_malloc((size_t)steps * sizeof(int));
    run(b1, steps, i1, c1);
    CHECK(qt_batcher_step(b1) == steps, "step counter");

    // same seed, same batches; another seed, other batches
    qt_batcher *b2 = qt_batcher_init(d, BATCH, 1234, true);
    run(b2, steps, i2, c2);
    CHECK(memcmp(i1, i2, (size_t)steps * BATCH * sizeof(int)) == 0 && memcmp(c1, c2, (size_t)steps * sizeof(int)) == 0,
          "same seed, same batches");
    qt_batcher_free(b2);
    b2 = qt_batcher_init(d, BATCH, 1235, true);
    run(b2, steps, i2, c2);
    CHECK(memcmp(i1, i2, (size_t)steps * BATCH * sizeof(int)) != 0, "another seed, other batches");
    qt_batcher_free(b2);

    // every example once per epoch; all batches full but one; epochs differ
    int *seen = qt_calloc(N_EX, sizeof(int));
    for (int e = 0; e < N_EPOCHS; e++) {
        memset(seen, 0, N_EX * sizeof(int));
        int n_small = 0, n_bad = 0;
        for (int bi = e * nb; bi < (e + 1) * nb; bi++) {
            n_small += c1[bi] < BATCH;
            for (int k = 0; k < c1[bi]; k++) {
                int ix = i1[bi * BATCH + k];
                if (ix < 0 || ix >= N_EX) n_bad++;
                else seen[ix]++;
            }
        }
        int n_once = 0;
        for (int i = 0; i < N_EX; i++) n_once += seen[i] == 1;
        CHECK(n_bad == 0 && n_once == N_EX, "epoch %d: %d of %d examples seen exactly once", e, n_once, N_EX);
        CHECK(n_small == (N_EX % BATCH != 0), "epoch %d: %d short batches", e, n_small);
        double eff = efficiency(d, i1 + e * nb * BATCH, c1 + e * nb, nb);
        CHECK(eff >= MIN_PAD_EFFICIENCY, "epoch %d: padding efficiency %.3f < %.2f", e, eff, MIN_PAD_EFFICIENCY);
        if (e == 0) printf("bucketed padding efficiency %.3f\n", eff);
    }
    CHECK(memcmp(i1, i1 + nb * BATCH, (size_t)nb * BATCH * sizeof(int)) != 0, "epochs are shuffled differently");
    // reference: batches of randomly chosen examples pad far more
    {
        int *ri = qt_malloc((size_t)nb * BATCH * sizeof(int)), *rc = qt_malloc((size_t)nb * sizeof(int));
        int *perm = qt_malloc(N_EX * sizeof(int));
        for (int i = 0; i < N_EX; i++) perm[i] = i;
        for (int i = N_EX - 1; i > 0; i--) {
            int k = (int)(qt_rng_u64(&r) % (uint64_t)(i + 1)), t = perm[i];
            perm[i] = perm[k]; perm[k] = t;
        }
        for (int bi = 0; bi < nb; bi++) {
            rc[bi] = QT_MIN(BATCH, N_EX - bi * BATCH);
            for (int k = 0; k < rc[bi]; k++) ri[bi * BATCH + k] = perm[bi * BATCH + k];
        }
        double eff_rand = efficiency(d, ri, rc, nb), eff = efficiency(d, i1, c1, nb);
        printf("random-batch padding efficiency %.3f\n", eff_rand);
        CHECK(eff > eff_rand + 0.1, "bucketing (%.3f) beats random batches (%.3f)", eff, eff_rand);
        qt_free(ri); qt_free(rc); qt_free(perm);
    }

    // seek(k) == k calls of next, also across epochs and backwards
    const int64_t ks[] = { 0, 1, 17, nb - 1, nb, nb + 5, 2 * nb + 3, 1 };
    int idx[BATCH];
    qt_batcher *b3 = qt_batcher_init(d, BATCH, 1234, true);
    int n_bad_seek = 0;
    for (size_t t = 0; t < QT_ARRAY_LEN(ks); t++) {
        qt_batcher_seek(b3, ks[t]);
        CHECK(qt_batcher_step(b3) == ks[t], "step after seek");
        for (int rep = 0; rep < 3 && ks[t] + rep < steps; rep++) {
            int64_t k = ks[t] + rep;
            int c = qt_batcher_next(b3, idx);
            if (c != c1[k] || memcmp(idx, i1 + k * BATCH, (size_t)c * sizeof(int)) != 0) n_bad_seek++;
        }
    }
    CHECK(n_bad_seek == 0, "%d batches after seek differ from an uninterrupted run", n_bad_seek);
    qt_batcher_free(b3);

    // unshuffled: every example once, the last batch the short one, the same
    // every epoch, and its first quarter of batches samples the whole file
    // (mean length within MAX_PREFIX_BIAS of the dataset's, where the shortest
    // quarter would be far below)
    qt_batcher *u1 = qt_batcher_init(d, BATCH, 0, false), *u2 = qt_batcher_init(d, BATCH, 0, false);
    qt_batcher_seek(u2, nb);   // the second epoch
    memset(seen, 0, N_EX * sizeof(int));
    int n_diff = 0, n_short_early = 0, last = 0, n_prefix = 0;
    int64_t len_prefix = 0;
    for (int bi = 0; bi < nb; bi++) {
        int a[BATCH], bb[BATCH];
        int ca = qt_batcher_next(u1, a), cb = qt_batcher_next(u2, bb);
        n_diff += ca != cb || memcmp(a, bb, (size_t)ca * sizeof(int)) != 0;
        for (int k = 0; k < ca; k++) seen[a[k]]++;
        if (bi < nb - 1) n_short_early += ca < BATCH;
        else last = ca;
        for (int k = 0; k < ca && bi < nb / 4; k++, n_prefix++) len_prefix += qt_dataset_get(d, a[k])->len;
    }
    int n_once = 0;
    for (int i = 0; i < N_EX; i++) n_once += seen[i] == 1;
    CHECK(n_diff == 0 && n_once == N_EX && n_short_early == 0 && last == N_EX % BATCH, "unshuffled pass");
    double mean_all = (double)qt_dataset_n_tokens(d) / N_EX, mean_prefix = (double)len_prefix / n_prefix;
    printf("unshuffled: first quarter of batches mean length %.1f, all %.1f\n", mean_prefix, mean_all);
    CHECK(fabs(mean_prefix / mean_all - 1) < MAX_PREFIX_BIAS, "unshuffled: first batches' mean length %.1f vs %.1f",
          mean_prefix, mean_all);
    qt_batcher_free(u1);
    qt_batcher_free(u2);

    // batch larger than the dataset
    qt_batcher *bb = qt_batcher_init(d, 1000, 7, true);
    int *big = qt_malloc(1000 * sizeof(int));
    CHECK(qt_batcher_n_per_epoch(bb) == 1 && qt_batcher_next(bb, big) == N_EX, "one batch of all");
    qt_free(big);
    qt_batcher_free(bb);

    qt_free(seen);
    qt_free(i1); qt_free(c1); qt_free(i2); qt_free(c2);
    qt_batcher_free(b1);
    qt_dataset_free(d);
}

int main(void) {
    if (!mkdtemp(g_dir)) { perror("mkdtemp"); return 1; }
    char *vocab = path_in("llama.cpp-vocab", "ggml-vocab-llama-spm.gguf");
    qt_gguf *g = qt_gguf_open(vocab);
    CHECK(g != NULL, "open %s", vocab);
    if (!g) { qt_free(vocab); rmdir(g_dir); TEST_END(); }
    qt_tokenizer *tok = qt_tokenizer_from_gguf(g);
    qt_gguf_close(g);
    CHECK(tok && qt_tokenizer_add_bos(tok) && qt_tokenizer_bos(tok) == 1 && qt_tokenizer_eos(tok) == 2, "llama-spm tokenizer");
    if (tok) {
        test_chat_template(tok);
        test_text_folder(tok);
        test_chat_file(tok);
        test_completions(tok);
        test_bad_data(tok);
        test_batcher(tok);
    }
    qt_tokenizer_free(tok);
    qt_free(vocab);
    rmdir(g_dir);
    TEST_END();
}
