// jinja.h: a Jinja2 template engine for the subset Hugging Face chat
// templates use, rendering as transformers' apply_chat_template does:
// jinja2's ImmutableSandboxedEnvironment with trim_blocks and lstrip_blocks,
// the loopcontrols extension (break, continue), {% generation %}, and the
// globals raise_exception(msg), strftime_now(fmt) plus transformers' tojson
// (json.dumps with ensure_ascii=False).
//
// Values follow Python's semantics (str of a float is its shortest repr,
// None prints "None", lists print as Python lists, strings index by code
// point). Variables come in as one JSON object (cJSON); a JSON number is an
// int when it is integral and fits 64 bits, else a float.
#ifndef QT_JINJA_H
#define QT_JINJA_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

typedef struct qt_jinja qt_jinja;

// Parse (compile) a template. NULL on a syntax error, with "line N: what" in
// err (err_cap bytes). Unknown filters and tests are syntax errors, as in
// jinja2. The source is not borrowed.
qt_jinja *qt_jinja_parse(const char *src, size_t len, char *err, size_t err_cap);
void qt_jinja_free(qt_jinja *t);   // NULL is a no-op

typedef struct {
    int64_t now;          // seconds since the epoch for strftime_now (local time); 0: the clock
    size_t max_output;    // bytes; 0: 16 MiB
    size_t max_memory;    // bytes of working memory (values, strings); 0: 256 MiB
} qt_jinja_opts;

// Render with the members of vars (a JSON object; NULL: none) as variables.
// Returns the malloc'd text (*len its length, may be NULL), or NULL with the
// reason in err: raise_exception's message ("template raised: ..."), an
// undefined value used where Python would fail, a type error, a limit.
// Thread-safe: a parsed template may be rendered by several threads at once.
char *qt_jinja_render(const qt_jinja *t, const cJSON *vars, const qt_jinja_opts *o, size_t *len, char *err,
                      size_t err_cap);

#endif
