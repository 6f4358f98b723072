// jinja-impl.h: what the parts of the Jinja engine share: the syntax tree
// (jinja-parse.c builds it), values and the render state (jinja.c), the
// built-in filters, tests and methods (jinja-builtins.c).
#ifndef QT_JINJA_IMPL_H
#define QT_JINJA_IMPL_H

#include <setjmp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "template/jinja.h"

// ---- values ----------------------------------------------------------------
// Values live in the render's arena and are never freed one by one: a render
// allocates, then drops the whole arena. Lists and dicts are immutable once
// built, except a namespace() object's attributes.

typedef enum {
    JV_UNDEF, JV_NONE, JV_BOOL, JV_INT, JV_FLOAT, JV_STR, JV_LIST, JV_DICT,
    JV_NS,      // namespace(): a dict whose items can be set
    JV_FUNC,    // a built-in global function (range, namespace, ...)
    JV_METHOD,  // a bound method of a str, dict or list ('abc'.upper)
    JV_MACRO,   // a {% macro %} with the frame it was defined in
    JV_LOOP,    // the loop variable of a for loop
} jv_type;

typedef struct jv jv;
typedef struct jnode jnode;
typedef struct jframe jframe;

typedef struct {
    const char *s;   // UTF-8, not NUL-terminated
    size_t n;
} jstr;

typedef struct {
    int n, cap;
    jv **k, **v;
} jdict;

struct jloop;

struct jv {
    uint8_t t;        // jv_type
    bool tuple;       // JV_LIST: a Python tuple (prints with parentheses)
    bool safe;        // JV_STR: markupsafe.Markup (|safe, |escape): + escapes the other operand
    bool gen;         // JV_LIST: a generator (map, select, ...): always true, no len(), no [i]
    union {
        bool b;
        int64_t i;
        double f;
        jstr s;                                        // JV_STR; JV_UNDEF: the name, for messages
        struct { jv **a; int n; } l;                   // JV_LIST
        jdict *d;                                      // JV_DICT, JV_NS
        int fn;                                        // JV_FUNC
        struct { jv *self; const char *name; } m;      // JV_METHOD
        struct { const jnode *node; jframe *frame; } mac;  // JV_MACRO
        struct jloop *loop;                            // JV_LOOP
    } u;
};

struct jloop {
    int index0, length;
    jv **items;      // the iterated values (previtem / nextitem)
};

// ---- syntax tree --------------------------------------------------------------

typedef enum {
    // expressions
    JN_LIT, JN_NAME, JN_ATTR, JN_ITEM, JN_SLICE, JN_CALL, JN_FILTER, JN_TEST, JN_BIN, JN_NEG, JN_POS, JN_NOT,
    JN_AND, JN_OR, JN_COND, JN_LIST, JN_TUPLE, JN_DICT, JN_CMP,
    // statements
    JN_TEXT, JN_OUT, JN_IF, JN_FOR, JN_SET, JN_SETBLOCK, JN_MACRO, JN_BREAK, JN_CONTINUE, JN_BODY, JN_WITH,
    JN_FILTERBLOCK,
} jnode_kind;

typedef enum {
    OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_FLOORDIV, OP_MOD, OP_POW, OP_CONCAT,
    OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE, OP_IN, OP_NOTIN,
} jop;

// Expression and statement node. Children are in kids (n_kids); the meaning
// of each slot is per kind, noted where the parser builds it.
struct jnode {
    uint8_t kind;      // jnode_kind
    uint8_t op;        // JN_BIN: jop; JN_TEST: negated; JN_FOR: has an else body
    int line;
    jstr name;         // JN_NAME, JN_ATTR, JN_FILTER, JN_TEST, JN_MACRO, JN_SET (ns attribute), keyword of a call arg
    jv *lit;           // JN_LIT; JN_TEXT: the text as a str value
    int builtin;       // JN_FILTER / JN_TEST: index in the built-in table
    jnode **kids;
    int n_kids;
    jstr *names;       // JN_CALL / JN_FILTER / JN_TEST: keyword names of kids (empty = positional);
                       // JN_MACRO: parameter names; JN_FOR / JN_SET: target names
    int n_names;
    jop *cmp_ops;      // JN_CMP: n_kids - 1 operators
};

// ---- render state ------------------------------------------------------------------

// A bump allocator: chunks freed all at once.
typedef struct jchunk jchunk;
typedef struct {
    jchunk *chunks;
    size_t used, max;      // bytes handed out, the cap (ja_alloc returns NULL past it)
} jarena;
void *ja_alloc(jarena *a, size_t n);   // zeroed, 16-byte aligned; NULL past the cap
void ja_free(jarena *a);

typedef struct {
    char *s;
    size_t n, cap;
} jbuf;

// A variable scope: the template root, one for-loop iteration, a macro call.
struct jframe {
    jframe *parent;
    jdict vars;
};

typedef struct {
    jmp_buf fail;          // errors longjmp here (jinja.c's render entry)
    char *err;
    size_t err_cap;
    jarena mem;            // values of this render
    size_t max_output;
    int depth;             // nesting of evaluation (macro recursion, deep expressions)
    int macro_depth;       // macro calls in progress
    jv *placeholder;       // the value a filter chain of {% filter %} / {% set x | f %} applies to
    int64_t now;
    jbuf *out;             // where output goes now (a macro call swaps it)
} jrender;

// jinja.c
_Noreturn void jx_fail(jrender *r, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void *jx_alloc(jrender *r, size_t n);
jv *jx_new(jrender *r, jv_type t);
jv *jx_str(jrender *r, const char *s, size_t n);
jv *jx_cstr(jrender *r, const char *s);
jv *jx_int(jrender *r, int64_t i);
jv *jx_float(jrender *r, double f);
jv *jx_bool(bool b);
jv *jx_none(void);
jv *jx_undef(jrender *r, const char *name, size_t n);
jv *jx_list(jrender *r, int n, bool tuple);   // n slots to fill
jv *jx_dict(jrender *r);
void jx_dict_set(jrender *r, jdict *d, jv *k, jv *v);
jv *jx_dict_get(const jdict *d, const char *k, size_t n);   // NULL if absent
jv *jx_dict_find(const jdict *d, const jv *k);               // NULL if absent
bool jx_truthy(const jv *v);
bool jx_equal(const jv *a, const jv *b);
int jx_compare(jrender *r, int line, const jv *a, const jv *b);   // <0, 0, >0; fails on mismatched types
jstr jx_to_str(jrender *r, const jv *v);                     // Python's str()
void jx_repr(jrender *r, jbuf *b, const jv *v);              // Python's repr()
void jx_buf_put(jrender *r, jbuf *b, const char *s, size_t n);
jv *jx_iter_list(jrender *r, int line, jv *v);               // list(v): items of a list, keys of a dict, chars of a str
jv *jx_getattr(jrender *r, int line, jv *obj, const char *name, size_t n);
jv *jx_getitem(jrender *r, int line, jv *obj, jv *key);
jv *jx_call_macro(jrender *r, int line, jv *mac, jv **args, int n_args, jstr *kw, jv **kwv, int n_kw);
const char *jx_type_name(const jv *v);
size_t jx_utf8_len(const char *s, size_t n);                   // code points
size_t jx_utf8_offset(const char *s, size_t n, size_t cp);     // byte offset of code point cp (n if past the end)

// jinja-builtins.c: filters, tests, global functions, methods. Arguments:
// positional args[0..n_args) and keyword kw[i] = kwv[i].
typedef struct {
    jv **args;
    int n_args;
    jstr *kw;
    jv **kwv;
    int n_kw;
} jargs;

int jx_filter_find(const char *name, size_t n);   // -1 if unknown
int jx_test_find(const char *name, size_t n);
int jx_func_find(const char *name, size_t n);
jv *jx_filter_call(jrender *r, int line, int filter, jv *v, const jargs *a);
bool jx_test_call(jrender *r, int line, int test, jv *v, const jargs *a);
jv *jx_func_call(jrender *r, int line, int fn, const jargs *a);
jv *jx_method_call(jrender *r, int line, jv *self, const char *name, const jargs *a);
bool jx_has_method(const jv *self, const char *name, size_t n);
// json.dumps: indent NULL for one line, else the text of one indentation level.
void jx_tojson(jrender *r, jbuf *b, const jv *v, const char *indent, const char *item_sep, const char *key_sep,
               bool sort_keys, bool ensure_ascii, int level);
void jx_float_repr(char *buf, size_t cap, double f);
jv *jx_percent_format(jrender *r, int line, jstr fmt, jv *args);   // str % args
jv *jx_escape_html(jrender *r, jstr s);   // markupsafe.escape (not marked safe)

// jinja-parse.c
size_t jx_space_len(const char *s, size_t n);    // bytes of the Unicode whitespace character at s, 0 if none
size_t jx_rstrip_len(const char *s, size_t n);   // length of s without trailing whitespace (Python's rstrip)
struct qt_jinja {
    jnode *root;            // JN_BODY
    jarena mem;             // the nodes and literals
};

#endif
