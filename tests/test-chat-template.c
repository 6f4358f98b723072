// test-chat-template.c: chat-template families against the real Jinja
// templates rendered by jinja2 (tests/ref/make_chat_refs.py ->
// tests/data/chat-templates/refs.json): family recognition from the template
// text, byte-exact renders, the same refusals; plus names, overrides, the
// unknown-template error and the assistant spans used for training masks.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "base/base.h"
#include "test.h"
#include "io/gguf.h"
#include "model/model.h"
#include "server/gen.h"
#include "tokenizer/chat-template.h"
#include "tokenizer/tokenizer.h"
#include "train/dataset.h"

#define REFS "tests/data/chat-templates/refs.json"
#define REFS_MAGIC "qtune-chat-refs"
#define REFS_VERSION 1
#define MIN_CASES_PER_FAMILY 3   // the issue asks for at least 3 conversations per family

static void test_refs(void) {
    char *text = qt_read_file(REFS, NULL);
    CHECK(text != NULL, "read %s", REFS);
    if (!text) return;
    cJSON *doc = cJSON_Parse(text);
    const cJSON *magic = cJSON_GetObjectItem(doc, "magic"), *version = cJSON_GetObjectItem(doc, "version");
    CHECK(cJSON_IsString(magic) && strcmp(magic->valuestring, REFS_MAGIC) == 0 && cJSON_IsNumber(version) &&
          version->valueint == REFS_VERSION, "%s: magic %s, version %d", REFS, REFS_MAGIC, REFS_VERSION);
    cJSON *root = cJSON_GetObjectItem(doc, "cases");
    CHECK(cJSON_IsArray(root), "%s: cases array", REFS);
    int per_family[QT_CHAT_COUNT] = {0};
    const cJSON *c;
    cJSON_ArrayForEach(c, root) {
        const char *family = cJSON_GetObjectItem(c, "family")->valuestring;
        const char *model = cJSON_GetObjectItem(c, "model")->valuestring;
        const char *jinja = cJSON_GetObjectItem(c, "template")->valuestring;
        const char *bos = cJSON_GetObjectItem(c, "bos")->valuestring;
        const char *eos = cJSON_GetObjectItem(c, "eos")->valuestring;
        bool gen = cJSON_IsTrue(cJSON_GetObjectItem(c, "add_generation_prompt"));
        bool want_err = cJSON_IsTrue(cJSON_GetObjectItem(c, "error"));
        const cJSON *exp = cJSON_GetObjectItem(c, "expected");
        const cJSON *msgs = cJSON_GetObjectItem(c, "messages");
        int n = cJSON_GetArraySize(msgs);
        qt_chat_msg m[16];
        for (int i = 0; i < n && i < 16; i++) {
            const cJSON *mi = cJSON_GetArrayItem(msgs, i);
            m[i].role = cJSON_GetObjectItem(mi, "role")->valuestring;
            m[i].content = cJSON_GetObjectItem(mi, "content")->valuestring;
        }
        int want_family = qt_chat_family_from_name(family);
        CHECK(qt_chat_family_detect(jinja, NULL) == want_family, "%s: template recognised as %s", model, family);
        qt_chat_template t;
        CHECK(qt_chat_template_init(&t, jinja, NULL) == QT_OK, "%s: init from template", model);
        char err[256] = "";
        size_t len = 0;
        qt_chat_span *spans = NULL;
        int n_spans = 0;
        char *got = qt_chat_render_family(&t, m, n, bos, eos, gen, &len, &spans, &n_spans, err, sizeof(err));
        if (want_err) {
            CHECK(got == NULL && err[0], "%s: conversation refused as by Jinja (%s)", model, err);
        } else {
            CHECK(got != NULL, "%s: renders (%s)", model, err);
            if (got) {
                bool same = strcmp(got, exp->valuestring) == 0 && len == strlen(exp->valuestring);
                CHECK(same, "%s (gen=%d): render equals jinja2's\n got: %s\nwant: %s", model, gen, got, exp->valuestring);
                if (same && want_family >= 0) per_family[want_family]++;
                // every assistant message has one span, inside the text, holding its content
                int n_assist = 0;
                for (int i = 0; i < n; i++) n_assist += strcmp(m[i].role, "assistant") == 0;
                CHECK(n_spans == n_assist, "%s: %d assistant spans for %d answers", model, n_spans, n_assist);
                for (int s = 0; s < n_spans; s++)
                    CHECK(spans[s].off + spans[s].len <= len && spans[s].len > 0, "%s: span %d inside the render", model, s);
            }
        }
        qt_free(got);
        qt_free(spans);
        qt_chat_template_free(&t);
    }
    for (int f = 0; f < QT_CHAT_COUNT; f++)
        CHECK(per_family[f] >= MIN_CASES_PER_FAMILY, "family %s: %d conversations match jinja2 (>= %d)",
              qt_chat_family_name(f), per_family[f], MIN_CASES_PER_FAMILY);
    cJSON_Delete(doc);
    qt_free(text);
}

static void test_names_and_errors(void) {
    for (int f = 0; f < QT_CHAT_COUNT; f++)
        CHECK(qt_chat_family_from_name(qt_chat_family_name(f)) == f, "name round trip %d", f);
    CHECK(qt_chat_family_from_name("qwen2") == QT_CHAT_CHATML, "alias qwen2");
    CHECK(qt_chat_family_from_name("nonsense") == -1, "unknown name");
    qt_chat_template t;
    qt_log_set_level(-1);
    CHECK(qt_chat_template_init(&t, NULL, NULL) == QT_ERR, "no template, no override: error");
    CHECK(qt_chat_template_init(&t, "{% for %}", NULL) == QT_ERR, "a template that neither compiles nor is a family: error");
    CHECK(qt_chat_template_init(&t, "{{ messages }}", NULL) == QT_OK && t.jinja, "an unknown family compiles with the Jinja engine");
    qt_chat_template_free(&t);
    CHECK(qt_chat_template_init(&t, NULL, "vicuna") == QT_ERR, "unknown override: error");
    // Llama 3.1's dated system header is another format: refused, not misrendered
    CHECK(qt_chat_family_detect("<|start_header_id|>system ... Cutting Knowledge Date: December 2023", NULL) == -1,
          "llama 3.1 refused");
    qt_log_set_level(1);
    // the override wins over the model's template
    CHECK(qt_chat_template_init(&t, "{{ '<|im_start|>' }}", "llama3") == QT_OK && t.family == QT_CHAT_LLAMA3,
          "override wins");
    qt_chat_template_free(&t);
    // qwen2 alias brings Qwen2's default system prompt
    CHECK(qt_chat_template_init(&t, NULL, "qwen2") == QT_OK, "qwen2 override");
    qt_chat_msg m[1] = { { "user", "hi" } };
    char err[128];
    char *s = qt_chat_render_family(&t, m, 1, "", "", true, NULL, NULL, NULL, err, sizeof(err));
    CHECK(s && strcmp(s, "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
                         "<|im_start|>assistant\n") == 0, "qwen2 default system: %s", s ? s : err);
    qt_free(s);
    qt_chat_template_free(&t);
    // spans cover the answer and its end-of-turn marker
    CHECK(qt_chat_template_init(&t, NULL, "chatml") == QT_OK, "chatml override");
    qt_chat_msg m2[2] = { { "user", "a" }, { "assistant", "bc" } };
    qt_chat_span *sp = NULL;
    int nsp = 0;
    s = qt_chat_render_family(&t, m2, 2, "", "", false, NULL, &sp, &nsp, err, sizeof(err));
    CHECK(s && nsp == 1 && strncmp(s + sp[0].off, "bc<|im_end|>", sp[0].len) == 0 && sp[0].len == 12, "chatml span");
    qt_free(s);
    qt_free(sp);
    qt_chat_template_free(&t);
}


// Training records in another template: qt_chat_encode tokenizes the family's
// render (stories260K's SPM vocabulary) and trains exactly the answers.
static void test_dataset_encode(void) {
    qt_gguf *g = qt_gguf_open("models/stories260K.gguf");
    CHECK(g != NULL, "open models/stories260K.gguf");
    if (!g) return;
    qt_tokenizer *tok = qt_tokenizer_from_gguf(g);
    qt_gguf_close(g);
    CHECK(tok != NULL, "tokenizer");
    if (!tok) return;
    qt_chat_msg m[4] = { { "system", "Be kind." }, { "user", "Hello there" }, { "assistant", "Hi Lily" },
                         { "user", "Bye" } };
    const char *families[] = { "chatml", "zephyr", "llama3", "phi3", "alpaca" };
    for (size_t f = 0; f < sizeof(families) / sizeof(families[0]); f++) {
        int32_t *t = NULL;
        uint8_t *tr = NULL;
        int n = qt_chat_encode(tok, families[f], m, 3, true, &t, &tr);
        CHECK(n > 0, "%s: encode", families[f]);
        // the trained tokens decode to the answer (plus at most a boundary byte), the rest to the prompt
        char ans[256] = "", rest[1024] = "";
        size_t na = 0, nr = 0;
        for (int i = 0; i < n; i++) {
            size_t k;
            const char *p = qt_token_to_piece(tok, t[i], true, &k);
            char *dst = tr[i] ? ans : rest;
            size_t *len = tr[i] ? &na : &nr, cap = tr[i] ? sizeof(ans) : sizeof(rest);
            if (*len + k < cap) { memcpy(dst + *len, p, k); *len += k; dst[*len] = 0; }
        }
        CHECK(strstr(ans, "Hi Lily") != NULL && strstr(ans, "Hello") == NULL, "%s: trained text '%s'", families[f], ans);
        CHECK(strstr(rest, "Hello there") != NULL && strstr(rest, "Lily") == NULL, "%s: prompt text '%s'", families[f], rest);
        // without mask_prompt every token but the first is trained
        int32_t *t2 = NULL;
        uint8_t *tr2 = NULL;
        int n2 = qt_chat_encode(tok, families[f], m, 3, false, &t2, &tr2);
        int trained = 0;
        for (int i = 0; i < n2; i++) trained += tr2[i];
        CHECK(n2 == n && trained == n - 1, "%s: unmasked", families[f]);
        free(t); free(tr); free(t2); free(tr2);
    }
    // refusals come through: Gemma has no system role; unknown names fail
    int32_t *t = NULL;
    uint8_t *tr = NULL;
    CHECK(qt_chat_encode(tok, "gemma", m, 3, true, &t, &tr) < 0, "gemma refuses a system message");
    CHECK(qt_chat_encode(tok, "vicuna", m, 3, true, &t, &tr) < 0, "unknown template");
    qt_tokenizer_free(tok);
}

// Where the template comes from: tokenizer.chat_template in a GGUF, or
// "chat_template" in tokenizer_config.json (a string, or a list of named ones).
static void test_template_sources(void) {
    static const char QWEN2[] = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
        "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + "
        "message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
        "{{ '<|im_start|>assistant\\n' }}{% endif %}";
    char dir[] = "/tmp/qt-chat-tmpl-XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    char path[256];
    snprintf(path, sizeof(path), "%s/t.gguf", dir);
    qt_gguf_writer *w = qt_gguf_writer_init();
    qt_gguf_set_str(w, "tokenizer.chat_template", QWEN2);
    CHECK(qt_gguf_write(w, path) == QT_OK, "write gguf");
    qt_gguf_writer_free(w);
    qt_model fake;
    memset(&fake, 0, sizeof(fake));
    fake.gguf = qt_gguf_open(path);
    char *t = qt_model_chat_template(&fake);
    CHECK(t && strcmp(t, QWEN2) == 0, "template from GGUF");
    qt_chat_template ct;
    CHECK(qt_model_template_init(&ct, &fake, NULL, NULL) == QT_OK && ct.family == QT_CHAT_CHATML && ct.default_system &&
          strcmp(ct.default_system, "You are a helpful assistant.") == 0, "GGUF template: chatml with Qwen2's system prompt");
    qt_chat_template_free(&ct);
    qt_free(t);
    qt_gguf_close(fake.gguf);
    unlink(path);

    memset(&fake, 0, sizeof(fake));
    fake.path = dir;
    snprintf(path, sizeof(path), "%s/tokenizer_config.json", dir);
    CHECK(qt_model_chat_template(&fake) == NULL, "no tokenizer_config.json: no template");
    static const char CFG[] = "{\"chat_template\": [{\"name\": \"tool_use\", \"template\": \"x\"},"
                              " {\"name\": \"default\", \"template\": \"{{ '<start_of_turn>' }}\"}]}";
    CHECK(qt_write_file_atomic(path, CFG, strlen(CFG)) == QT_OK, "write config");
    t = qt_model_chat_template(&fake);
    CHECK(t && strcmp(t, "{{ '<start_of_turn>' }}") == 0, "named templates: the default one (%s)", t ? t : "NULL");
    qt_free(t);
    t = qt_model_chat_template_named(&fake, "tool_use");
    CHECK(t && strcmp(t, "x") == 0, "named templates: tool_use (%s)", t ? t : "NULL");
    // a request with tools renders with the tool_use variant, one without with the default
    CHECK(qt_chat_template_init(&ct, "{{ 'default' }}", NULL) == QT_OK, "default template");
    qt_chat_template_add_tool_use(&ct, "{{ 'tools: ' ~ tools|length }}");
    cJSON *msgs = cJSON_Parse("[{\"role\": \"user\", \"content\": \"hi\"}]"), *tl = cJSON_Parse("[{\"type\": \"function\"}]");
    char terr[128];
    char *r1 = qt_chat_template_render(&ct, msgs, tl, NULL, "", "", true, NULL, terr, sizeof(terr));
    char *r2 = qt_chat_template_render(&ct, msgs, NULL, NULL, "", "", true, NULL, terr, sizeof(terr));
    CHECK(r1 && !strcmp(r1, "tools: 1") && r2 && !strcmp(r2, "default"), "tool_use variant: %s / %s", r1 ? r1 : terr, r2 ? r2 : terr);
    qt_free(r1);
    qt_free(r2);
    cJSON_Delete(msgs);
    cJSON_Delete(tl);
    qt_chat_template_free(&ct);
    qt_free(t);
    unlink(path);
    rmdir(dir);
}

int main(void) {
    test_refs();
    test_names_and_errors();
    test_dataset_encode();
    test_template_sources();
    TEST_END();
}
