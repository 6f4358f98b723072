// chat-template.c: chat templates of chat-template.h. A model's own template
// is compiled and rendered by the Jinja engine (template/jinja.c) with the
// variables transformers' apply_chat_template passes (messages, tools,
// documents, add_generation_prompt, bos_token, eos_token). The built-in
// families are rendered by hand as their Hugging Face Jinja templates render
// them (the templates are quoted above each renderer; tests/ref/make_chat_refs.py
// renders them with jinja2 and tests/test-chat-template.c compares); they
// serve --chat-template NAME, training records, and templates the engine
// cannot compile. The families do not render tool calls, tools or documents.
#include "tokenizer/chat-template.h"

#include <stdio.h>
#include <string.h>

#include "base/base.h"

static const char *const family_names[QT_CHAT_COUNT] = {
    "llama2", "mistral", "chatml", "llama3", "zephyr", "phi3", "gemma", "alpaca", "dialogpt",
};

static const struct { const char *alias; int family; } aliases[] = {
    { "llama-2", QT_CHAT_LLAMA2 }, { "qwen2", QT_CHAT_CHATML }, { "qwen", QT_CHAT_CHATML },
    { "smollm", QT_CHAT_CHATML }, { "smollm2", QT_CHAT_CHATML }, { "llama-3", QT_CHAT_LLAMA3 },
    { "phi-3", QT_CHAT_PHI3 }, { "tinyllama", QT_CHAT_ZEPHYR }, { "mixtral", QT_CHAT_MISTRAL },
    { "gpt2", QT_CHAT_DIALOGPT },
};

// Default system prompts of the real templates we know by name.
static const char QWEN2_SYSTEM[] = "You are a helpful assistant.";
static const char SMOLLM2_SYSTEM[] = "You are a helpful AI assistant named SmolLM, trained by Hugging Face";
static const char ALPACA_SYSTEM[] =
    "Below are some instructions that describe some tasks. Write responses that appropriately complete each request.";

int qt_chat_family_from_name(const char *name) {
    if (!name) return -1;
    for (int i = 0; i < QT_CHAT_COUNT; i++)
        if (strcmp(name, family_names[i]) == 0) return i;
    for (size_t i = 0; i < sizeof(aliases) / sizeof(aliases[0]); i++)
        if (strcmp(name, aliases[i].alias) == 0) return aliases[i].family;
    return -1;
}

const char *qt_chat_family_name(int family) {
    return family >= 0 && family < QT_CHAT_COUNT ? family_names[family] : "?";
}

const char *qt_chat_family_list(void) {
    return "llama2, mistral, chatml (qwen2, smollm2), llama3, zephyr, phi3, gemma, alpaca, dialogpt";
}

// ChatML templates that insert a system turn when the conversation has none
// write it as a literal: '<|im_start|>system\nTEXT<|im_end|>\n'. The newline
// is an escape (backslash n) in the Jinja source or, rarely, a real newline.
static char *chatml_default_system(const char *jinja) {
    static const char head[] = "<|im_start|>system";
    for (const char *p = strstr(jinja, head); p; p = strstr(p + 1, head)) {
        const char *q = p + sizeof(head) - 1;
        if (q[0] == '\\' && q[1] == 'n') q += 2;
        else if (q[0] == '\n') q += 1;
        else continue;
        const char *end = strstr(q, "<|im_end|>");
        if (!end || end == q) continue;
        // the text must stay inside one literal: no quote or expression in between
        size_t n = (size_t)(end - q);
        bool literal = true;
        for (size_t i = 0; i < n && literal; i++) {
            if ((q[i] == '\'' || q[i] == '"') && (i == 0 || q[i - 1] != '\\')) literal = false;
            if (q[i] == '{' || q[i] == '}') literal = false;
        }
        if (!literal) continue;
        char *out = qt_malloc(n + 1), *o = out;
        for (size_t i = 0; i < n; i++) {
            if (q[i] == '\\' && i + 1 < n) {
                char c = q[++i];
                *o++ = c == 'n' ? '\n' : c == 't' ? '\t' : c;
            } else {
                *o++ = q[i];
            }
        }
        *o = 0;
        return out;
    }
    return NULL;
}

int qt_chat_family_detect(const char *jinja, char **default_system) {
    if (default_system) *default_system = NULL;
    if (!jinja) return -1;
    int f = -1;
    if (strstr(jinja, "<start_of_turn>")) f = QT_CHAT_GEMMA;
    else if (strstr(jinja, "<|start_header_id|>")) {
        // Llama 3.1 and later add a dated system header and tools: another format
        if (strstr(jinja, "Cutting Knowledge Date")) return -1;
        f = QT_CHAT_LLAMA3;
    } else if (strstr(jinja, "<|im_start|>")) f = QT_CHAT_CHATML;
    else if (strstr(jinja, "<|user|>") && strstr(jinja, "<|end|>")) f = QT_CHAT_PHI3;
    else if (strstr(jinja, "<|user|>") && strstr(jinja, "<|assistant|>")) f = QT_CHAT_ZEPHYR;
    else if (strstr(jinja, "[INST]")) f = strstr(jinja, "<<SYS>>") ? QT_CHAT_LLAMA2 : QT_CHAT_MISTRAL;
    else if (strstr(jinja, "### Instruction") && strstr(jinja, "### Response")) f = QT_CHAT_ALPACA;
    else if (strstr(jinja, "{{ message.content }}{{ eos_token }}") ||
             strstr(jinja, "{{ message['content'] }}{{ eos_token }}"))
        f = QT_CHAT_DIALOGPT;
    if (default_system) {
        if (f == QT_CHAT_CHATML) *default_system = chatml_default_system(jinja);
        if (f == QT_CHAT_ALPACA && strstr(jinja, ALPACA_SYSTEM)) *default_system = qt_strdup(ALPACA_SYSTEM);
    }
    return f;
}

// The family whose end-of-turn marker a template writes (stop strings only).
static int family_by_marker(const char *jinja) {
    if (strstr(jinja, "<|im_end|>")) return QT_CHAT_CHATML;
    if (strstr(jinja, "<|eot_id|>")) return QT_CHAT_LLAMA3;
    if (strstr(jinja, "<end_of_turn>")) return QT_CHAT_GEMMA;
    if (strstr(jinja, "<|end|>")) return QT_CHAT_PHI3;
    if (strstr(jinja, "[INST]")) return QT_CHAT_MISTRAL;
    return -1;
}

static int init_jinja(qt_chat_template *t, const char *jinja, const char *origin) {
    char err[512];
    t->jinja = qt_jinja_parse(jinja, strlen(jinja), err, sizeof(err));
    t->origin = qt_strdup(origin);
    int fam = qt_chat_family_detect(jinja, &t->default_system);
    if (t->jinja) {
        t->family = fam >= 0 ? fam : family_by_marker(jinja);
        t->text = qt_strdup(jinja);
        return QT_OK;
    }
    if (fam < 0) {
        qt_log_error("%s chat template: %s (and it is none of the built-in families: choose one with --chat-template NAME, "
                     "%s)", origin, err, qt_chat_family_list());
        return QT_ERR;
    }
    qt_log_warn("%s chat template: %s; rendering it as the built-in %s family instead", origin, err, qt_chat_family_name(fam));
    t->family = fam;
    return QT_OK;
}

int qt_chat_template_init_file(qt_chat_template *t, const char *path) {
    memset(t, 0, sizeof(*t));
    t->family = -1;
    size_t n = 0;
    char *text = qt_read_file(path, &n);
    if (!text) return QT_ERR;
    if (strlen(text) != n) {
        qt_log_error("%s: a chat template is text; this file holds a NUL byte", path);
        qt_free(text);
        return QT_ERR;
    }
    // a tokenizer_config.json: its "chat_template" (a string, or the "default" of a list)
    char *tmpl = NULL;
    size_t i = 0;
    while (text[i] == ' ' || text[i] == '\n' || text[i] == '\t' || text[i] == '\r') i++;
    if (text[i] == '{' && text[i + 1] != '{' && text[i + 1] != '%' && text[i + 1] != '#') {
        cJSON *j = cJSON_Parse(text);
        const cJSON *ct = cJSON_GetObjectItemCaseSensitive(j, "chat_template");
        if (cJSON_IsString(ct)) tmpl = qt_strdup(ct->valuestring);
        else if (cJSON_IsArray(ct)) {
            const cJSON *e;
            cJSON_ArrayForEach(e, ct) {
                const cJSON *nm = cJSON_GetObjectItemCaseSensitive(e, "name"), *tp = cJSON_GetObjectItemCaseSensitive(e, "template");
                if (cJSON_IsString(nm) && !strcmp(nm->valuestring, "default") && cJSON_IsString(tp)) tmpl = qt_strdup(tp->valuestring);
            }
        }
        cJSON_Delete(j);
        if (!tmpl) {
            qt_log_error("%s: a JSON file without a \"chat_template\" string (give a Jinja template or a tokenizer_config.json)", path);
            qt_free(text);
            return QT_ERR;
        }
    }
    int rc = init_jinja(t, tmpl ? tmpl : text, path);
    qt_free(tmpl);
    qt_free(text);
    if (rc != QT_OK) qt_chat_template_free(t);
    return rc;
}

int qt_chat_template_init(qt_chat_template *t, const char *jinja, const char *override_name) {
    memset(t, 0, sizeof(*t));
    t->family = -1;
    if (override_name) {
        int f = qt_chat_family_from_name(override_name);
        if (f < 0) {
            qt_log_error("unknown chat template \"%s\" (known: %s)", override_name, qt_chat_family_list());
            return QT_ERR;
        }
        t->family = f;
        if (strcmp(override_name, "qwen2") == 0 || strcmp(override_name, "qwen") == 0)
            t->default_system = qt_strdup(QWEN2_SYSTEM);
        else if (strncmp(override_name, "smollm", 6) == 0)
            t->default_system = qt_strdup(SMOLLM2_SYSTEM);
        else if (f == QT_CHAT_ALPACA)
            t->default_system = qt_strdup(ALPACA_SYSTEM);
        return QT_OK;
    }
    if (!jinja) {
        qt_log_error("the model has no chat template (tokenizer.chat_template): choose one with --chat-template NAME (%s) "
                     "or --chat-template-file FILE", qt_chat_family_list());
        return QT_ERR;
    }
    int rc = init_jinja(t, jinja, "the model's");
    if (rc != QT_OK) qt_chat_template_free(t);
    return rc;
}

void qt_chat_template_free(qt_chat_template *t) {
    if (!t) return;
    qt_free(t->default_system);
    qt_jinja_free(t->jinja);
    qt_free(t->origin);
    qt_free(t->text);
    qt_jinja_free(t->jinja_tools);
    qt_free(t->text_tools);
    t->jinja_tools = NULL;
    t->text_tools = NULL;
    t->default_system = NULL;
    t->jinja = NULL;
    t->origin = NULL;
    t->text = NULL;
}

void qt_chat_template_add_tool_use(qt_chat_template *t, const char *jinja) {
    char err[512];
    qt_jinja *j = qt_jinja_parse(jinja, strlen(jinja), err, sizeof(err));
    if (!j) {
        qt_log_warn("%s tool_use chat template: %s; requests with tools use the default template", t->origin ? t->origin : "the", err);
        return;
    }
    qt_jinja_free(t->jinja_tools);
    qt_free(t->text_tools);
    t->jinja_tools = j;
    t->text_tools = qt_strdup(jinja);
}

const char *qt_chat_template_describe(const qt_chat_template *t, char *buf, size_t cap) {
    if (t->jinja) snprintf(buf, cap, "jinja (%s)", t->origin ? t->origin : "given");
    else snprintf(buf, cap, "%s (built-in)", qt_chat_family_name(t->family));
    return buf;
}

const char *const *qt_chat_template_stops(const qt_chat_template *t) { return qt_chat_family_stops(t->family); }

// Messages for a family renderer: role and string content only.
static qt_chat_msg *family_msgs(const cJSON *messages, int *n_out, char *err, size_t err_cap) {
    int n = cJSON_GetArraySize(messages);
    qt_chat_msg *m = qt_calloc((size_t)(n ? n : 1), sizeof(qt_chat_msg));
    for (int i = 0; i < n; i++) {
        const cJSON *e = cJSON_GetArrayItem(messages, i);
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(e, "role"), *content = cJSON_GetObjectItemCaseSensitive(e, "content");
        const cJSON *calls = cJSON_GetObjectItemCaseSensitive(e, "tool_calls");
        if (!cJSON_IsString(role) || (!cJSON_IsString(content) && !(cJSON_IsArray(calls) && cJSON_GetArraySize(calls)))) {
            snprintf(err, err_cap, "messages[%d]: needs a string role and string content", i);
            qt_free(m);
            return NULL;
        }
        if ((cJSON_IsArray(calls) && cJSON_GetArraySize(calls)) || !strcmp(role->valuestring, "tool")) {
            snprintf(err, err_cap, "messages[%d]: the built-in chat templates do not render tool calls or tool results "
                     "(use a model with its own chat template, or --chat-template-file)", i);
            qt_free(m);
            return NULL;
        }
        m[i] = (qt_chat_msg){ role->valuestring, content->valuestring };
    }
    *n_out = n;
    return m;
}

char *qt_chat_template_render(const qt_chat_template *t, const cJSON *messages, const cJSON *tools,
                              const cJSON *documents, const char *bos, const char *eos, bool gen, size_t *len_out,
                              char *err, size_t err_cap) {
    if (!cJSON_IsArray(messages)) {
        snprintf(err, err_cap, "messages must be an array");
        return NULL;
    }
    if (t->jinja) {
        const qt_jinja *tpl = tools && cJSON_GetArraySize(tools) && t->jinja_tools ? t->jinja_tools : t->jinja;
        cJSON *vars = cJSON_CreateObject();
        cJSON_AddItemReferenceToObject(vars, "messages", (cJSON *)messages);
        if (tools) cJSON_AddItemReferenceToObject(vars, "tools", (cJSON *)tools);
        else cJSON_AddNullToObject(vars, "tools");
        if (documents) cJSON_AddItemReferenceToObject(vars, "documents", (cJSON *)documents);
        else cJSON_AddNullToObject(vars, "documents");
        cJSON_AddBoolToObject(vars, "add_generation_prompt", gen);
        cJSON_AddStringToObject(vars, "bos_token", bos ? bos : "");
        cJSON_AddStringToObject(vars, "eos_token", eos ? eos : "");
        char *out = qt_jinja_render(tpl, vars, NULL, len_out, err, err_cap);
        cJSON_Delete(vars);
        return out;
    }
    if ((tools && cJSON_GetArraySize(tools)) || (documents && cJSON_GetArraySize(documents))) {
        snprintf(err, err_cap, "the built-in %s chat template does not render %s (use a model with its own chat template, "
                 "or --chat-template-file)", qt_chat_family_name(t->family), tools ? "tools" : "documents");
        return NULL;
    }
    int n = 0;
    qt_chat_msg *m = family_msgs(messages, &n, err, err_cap);
    if (!m) return NULL;
    char *out = qt_chat_render_family(t, m, n, bos, eos, gen, len_out, NULL, NULL, err, err_cap);
    qt_free(m);
    return out;
}

// ---- rendering ---------------------------------------------------------------

typedef struct {
    char *s;
    size_t n, cap;
    qt_chat_span *spans;
    int n_spans, cap_spans;
    size_t span_start;
} out;

static void put(out *o, const char *s, size_t n) {
    if (o->n + n + 1 > o->cap) {
        o->cap = QT_MAX(2 * o->cap, o->n + n + 64);
        o->s = qt_realloc(o->s, o->cap);
    }
    memcpy(o->s + o->n, s, n);
    o->n += n;
    o->s[o->n] = 0;
}

static void puts_(out *o, const char *s) { if (s) put(o, s, strlen(s)); }

static void span_begin(out *o) { o->span_start = o->n; }

static void span_end(out *o) {
    if (o->n_spans == o->cap_spans) {
        o->cap_spans = o->cap_spans ? 2 * o->cap_spans : 8;
        o->spans = qt_realloc(o->spans, (size_t)o->cap_spans * sizeof(qt_chat_span));
    }
    o->spans[o->n_spans++] = (qt_chat_span){ o->span_start, o->n - o->span_start };
}

// Python's str.strip() / Jinja's trim for ASCII whitespace.
static void put_trimmed(out *o, const char *s) {
    size_t n = strlen(s);
    while (n && (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r' || *s == '\v' || *s == '\f')) s++, n--;
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == '\v' ||
                 s[n - 1] == '\f'))
        n--;
    put(o, s, n);
}

static bool is(const char *role, const char *want) { return strcmp(role, want) == 0; }

#define FAIL(...) do { snprintf(err, err_cap, __VA_ARGS__); return QT_ERR; } while (0)
#define ALTERNATE_MSG "conversation roles must alternate user/assistant/user/assistant/..."

// {% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}
// {% else %}...{% set system_message = false %}{% endif %}{% for message in loop_messages %}
// {% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception(...) }}{% endif %}
// {% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\n' + system_message + '\n<</SYS>>\n\n' + message['content'] %}
// {% else %}{% set content = message['content'] %}{% endif %}
// {% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}
// {% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}
static int render_llama2(out *o, const qt_chat_msg *m, int n, const char *bos, const char *eos, char *err, size_t err_cap) {
    int i0 = is(m[0].role, "system") ? 1 : 0;
    const char *sys = i0 ? m[0].content : NULL;
    for (int i = i0; i < n; i++) {
        int k = i - i0;
        if (is(m[i].role, "user") != (k % 2 == 0)) FAIL("messages[%d]: " ALTERNATE_MSG " (after an optional system message)", i);
        const char *content = m[i].content;
        char *tmp = NULL;
        if (k == 0 && sys) {
            size_t need = strlen(sys) + strlen(content) + 32;
            tmp = qt_malloc(need);
            snprintf(tmp, need, "<<SYS>>\n%s\n<</SYS>>\n\n%s", sys, content);
            content = tmp;
        }
        if (is(m[i].role, "user")) {
            puts_(o, bos);
            puts_(o, "[INST] ");
            put_trimmed(o, content);
            puts_(o, " [/INST]");
        } else if (is(m[i].role, "assistant")) {
            puts_(o, " ");
            span_begin(o);
            put_trimmed(o, content);
            puts_(o, " ");
            puts_(o, eos);
            span_end(o);
        }
        qt_free(tmp);
    }
    return QT_OK;
}

// {{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception(...) }}{% endif %}
// {% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}
// {% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}
// {% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}
static int render_mistral(out *o, const qt_chat_msg *m, int n, const char *bos, const char *eos, char *err, size_t err_cap) {
    puts_(o, bos);
    for (int i = 0; i < n; i++) {
        if (is(m[i].role, "user") != (i % 2 == 0)) FAIL("messages[%d]: " ALTERNATE_MSG " (the Mistral template has no system role)", i);
        if (is(m[i].role, "user")) {
            puts_(o, "[INST] ");
            puts_(o, m[i].content);
            puts_(o, " [/INST]");
        } else if (is(m[i].role, "assistant")) {
            span_begin(o);
            puts_(o, m[i].content);
            puts_(o, eos);
            span_end(o);
        } else {
            FAIL("messages[%d]: role \"%s\": only user and assistant roles are supported by the Mistral template", i, m[i].role);
        }
    }
    return QT_OK;
}

// Qwen2 / SmolLM2 (plain ChatML without the default system turn):
// {% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}
// {{ '<|im_start|>system\nDEFAULT<|im_end|>\n' }}{% endif %}
// {{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}
// {% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}
static int render_chatml(out *o, const qt_chat_template *t, const qt_chat_msg *m, int n, bool gen) {
    for (int i = 0; i < n; i++) {
        if (i == 0 && t->default_system && !is(m[0].role, "system")) {
            puts_(o, "<|im_start|>system\n");
            puts_(o, t->default_system);
            puts_(o, "<|im_end|>\n");
        }
        puts_(o, "<|im_start|>");
        puts_(o, m[i].role);
        puts_(o, "\n");
        bool a = is(m[i].role, "assistant");
        if (a) span_begin(o);
        puts_(o, m[i].content);
        puts_(o, "<|im_end|>");
        if (a) span_end(o);
        puts_(o, "\n");
    }
    if (gen) puts_(o, "<|im_start|>assistant\n");
    return QT_OK;
}

// {% set loop_messages = messages %}{% for message in loop_messages %}
// {% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}
// {% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}
// {% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}
static int render_llama3(out *o, const qt_chat_msg *m, int n, const char *bos, bool gen) {
    for (int i = 0; i < n; i++) {
        if (i == 0) puts_(o, bos);
        puts_(o, "<|start_header_id|>");
        puts_(o, m[i].role);
        puts_(o, "<|end_header_id|>\n\n");
        bool a = is(m[i].role, "assistant");
        if (a) span_begin(o);
        put_trimmed(o, m[i].content);
        puts_(o, "<|eot_id|>");
        if (a) span_end(o);
    }
    if (gen) puts_(o, "<|start_header_id|>assistant<|end_header_id|>\n\n");
    return QT_OK;
}

// {% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + eos_token }}\n
// {% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}\n
// {% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n
// {% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}
// (trim_blocks drops the newline after each {% %} tag; the one after each {{ }} stays)
static int render_zephyr(out *o, const qt_chat_msg *m, int n, const char *eos, bool gen) {
    for (int i = 0; i < n; i++) {
        const char *head = is(m[i].role, "user") ? "<|user|>\n" : is(m[i].role, "system") ? "<|system|>\n"
                         : is(m[i].role, "assistant") ? "<|assistant|>\n" : NULL;
        if (head) {
            bool a = is(m[i].role, "assistant");
            puts_(o, head);
            if (a) span_begin(o);
            puts_(o, m[i].content);
            puts_(o, eos);
            if (a) span_end(o);
            puts_(o, "\n");
        }
        if (i == n - 1 && gen) puts_(o, "<|assistant|>\n");
    }
    return QT_OK;
}

// {% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\n' + message['content'] + '<|end|>\n'}}
// {% elif message['role'] == 'user' %}{{'<|user|>\n' + message['content'] + '<|end|>\n'}}
// {% elif message['role'] == 'assistant' %}{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}{% endif %}{% endfor %}
// {% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}
static int render_phi3(out *o, const qt_chat_msg *m, int n, const char *eos, bool gen) {
    for (int i = 0; i < n; i++) {
        const char *head = is(m[i].role, "system") ? "<|system|>\n" : is(m[i].role, "user") ? "<|user|>\n"
                         : is(m[i].role, "assistant") ? "<|assistant|>\n" : NULL;
        if (!head) continue;
        bool a = is(m[i].role, "assistant");
        puts_(o, head);
        if (a) span_begin(o);
        puts_(o, m[i].content);
        puts_(o, "<|end|>");
        if (a) span_end(o);
        puts_(o, "\n");
    }
    puts_(o, gen ? "<|assistant|>\n" : eos);
    return QT_OK;
}

// {{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}
// {% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception(...) }}{% endif %}
// {% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}
// {{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}
// {% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}
static int render_gemma(out *o, const qt_chat_msg *m, int n, const char *bos, bool gen, char *err, size_t err_cap) {
    if (is(m[0].role, "system")) FAIL("the Gemma template does not support a system message");
    puts_(o, bos);
    for (int i = 0; i < n; i++) {
        if (is(m[i].role, "user") != (i % 2 == 0)) FAIL("messages[%d]: " ALTERNATE_MSG, i);
        bool a = is(m[i].role, "assistant");
        puts_(o, "<start_of_turn>");
        puts_(o, a ? "model" : m[i].role);
        puts_(o, "\n");
        if (a) span_begin(o);
        put_trimmed(o, m[i].content);
        puts_(o, "<end_of_turn>");
        if (a) span_end(o);
        puts_(o, "\n");
    }
    if (gen) puts_(o, "<start_of_turn>model\n");
    return QT_OK;
}

// unsloth's alpaca template (chat_templates.py, "Alpaca multi turn"):
// {{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ messages[0]['content'] + '\n\n' }}{% set loop_messages = messages[1:] %}
// {% else %}{{ 'DEFAULT' + '\n\n' }}{% set loop_messages = messages %}{% endif %}{% for message in loop_messages %}
// {% if message['role'] == 'user' %}{{ '### Instruction:\n' + message['content'] + '\n\n' }}
// {% elif message['role'] == 'assistant' %}{{ '### Response:\n' + message['content'] + eos_token + '\n\n' }}
// {% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}
// {% if add_generation_prompt %}{{ '### Response:\n' }}{% endif %}
// Without a default system prompt the opening block is left out.
static int render_alpaca(out *o, const qt_chat_template *t, const qt_chat_msg *m, int n, const char *bos, const char *eos,
                         bool gen, char *err, size_t err_cap) {
    puts_(o, bos);
    int i0 = 0;
    if (is(m[0].role, "system")) {
        puts_(o, m[0].content);
        puts_(o, "\n\n");
        i0 = 1;
    } else if (t->default_system) {
        puts_(o, t->default_system);
        puts_(o, "\n\n");
    }
    for (int i = i0; i < n; i++) {
        if (is(m[i].role, "user")) {
            puts_(o, "### Instruction:\n");
            puts_(o, m[i].content);
            puts_(o, "\n\n");
        } else if (is(m[i].role, "assistant")) {
            puts_(o, "### Response:\n");
            span_begin(o);
            puts_(o, m[i].content);
            puts_(o, eos);
            span_end(o);
            puts_(o, "\n\n");
        } else {
            FAIL("messages[%d]: role \"%s\": only user and assistant roles are supported by the Alpaca template", i, m[i].role);
        }
    }
    if (gen) puts_(o, "### Response:\n");
    return QT_OK;
}

// GPT-2's default template (transformers' GPT2Tokenizer.default_chat_template,
// what DialoGPT was trained on: turns separated by EOS; roles are not written):
// {% for message in messages %}{{ message.content }}{{ eos_token }}{% endfor %}
// The generation prompt is empty: the model answers after the last EOS.
static int render_dialogpt(out *o, const qt_chat_msg *m, int n, const char *eos) {
    for (int i = 0; i < n; i++) {
        bool a = is(m[i].role, "assistant");
        if (a) span_begin(o);
        puts_(o, m[i].content);
        puts_(o, eos);
        if (a) span_end(o);
    }
    return QT_OK;
}

char *qt_chat_render_family(const qt_chat_template *t, const qt_chat_msg *msgs, int n, const char *bos,
                            const char *eos, bool gen, size_t *len_out, qt_chat_span **spans, int *n_spans,
                            char *err, size_t err_cap) {
    if (spans) *spans = NULL;
    if (n_spans) *n_spans = 0;
    if (n <= 0) { snprintf(err, err_cap, "no messages"); return NULL; }
    for (int i = 0; i < n; i++)
        if (!msgs[i].role || !msgs[i].content) { snprintf(err, err_cap, "messages[%d]: missing role or content", i); return NULL; }
    if (!bos) bos = "";
    if (!eos) eos = "";
    out o = {0};
    put(&o, "", 0);
    int rc;
    switch (t->family) {
    case QT_CHAT_LLAMA2: rc = render_llama2(&o, msgs, n, bos, eos, err, err_cap); break;
    case QT_CHAT_MISTRAL: rc = render_mistral(&o, msgs, n, bos, eos, err, err_cap); break;
    case QT_CHAT_CHATML: rc = render_chatml(&o, t, msgs, n, gen); break;
    case QT_CHAT_LLAMA3: rc = render_llama3(&o, msgs, n, bos, gen); break;
    case QT_CHAT_ZEPHYR: rc = render_zephyr(&o, msgs, n, eos, gen); break;
    case QT_CHAT_PHI3: rc = render_phi3(&o, msgs, n, eos, gen); break;
    case QT_CHAT_GEMMA: rc = render_gemma(&o, msgs, n, bos, gen, err, err_cap); break;
    case QT_CHAT_ALPACA: rc = render_alpaca(&o, t, msgs, n, bos, eos, gen, err, err_cap); break;
    case QT_CHAT_DIALOGPT: rc = render_dialogpt(&o, msgs, n, eos); break;
    default: snprintf(err, err_cap, "no chat template chosen"); rc = QT_ERR; break;
    }
    if (rc != QT_OK) {
        qt_free(o.s);
        qt_free(o.spans);
        return NULL;
    }
    if (len_out) *len_out = o.n;
    if (spans) {
        *spans = o.spans;
        *n_spans = o.n_spans;
    } else {
        qt_free(o.spans);
    }
    return o.s;
}

const char *const *qt_chat_family_stops(int family) {
    static const char *const llama2[] = { "</s>", NULL };
    static const char *const chatml[] = { "<|im_end|>", "<|endoftext|>", "<|im_start|>", NULL };
    static const char *const llama3[] = { "<|eot_id|>", "<|end_of_text|>", "<|start_header_id|>", NULL };
    static const char *const zephyr[] = { "</s>", "<|user|>", "<|system|>", NULL };
    static const char *const phi3[] = { "<|end|>", "<|endoftext|>", "<|user|>", NULL };
    static const char *const gemma[] = { "<end_of_turn>", "<eos>", "<start_of_turn>", NULL };
    static const char *const alpaca[] = { "### Instruction:", "</s>", NULL };
    static const char *const dialogpt[] = { "<|endoftext|>", NULL };
    static const char *const none[] = { NULL };
    switch (family) {
    case QT_CHAT_LLAMA2: case QT_CHAT_MISTRAL: return llama2;
    case QT_CHAT_CHATML: return chatml;
    case QT_CHAT_LLAMA3: return llama3;
    case QT_CHAT_ZEPHYR: return zephyr;
    case QT_CHAT_PHI3: return phi3;
    case QT_CHAT_GEMMA: return gemma;
    case QT_CHAT_ALPACA: return alpaca;
    case QT_CHAT_DIALOGPT: return dialogpt;
    default: return none;
    }
}
