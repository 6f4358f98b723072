// grammar.h: grammar-constrained sampling. A context-free grammar in
// llama.cpp's GBNF notation is compiled to rules over bytes; a matcher keeps
// the set of parse stacks the text so far allows (llama.cpp's
// llama-grammar.cpp design) and masks, before each draw, every token whose
// bytes the grammar cannot take next. End-of-generation tokens are allowed
// exactly when the text so far is a complete sentence of the grammar.
// JSON-schema -> GBNF (json-schema.c) builds the grammars of OpenAI's
// response_format (json_object, json_schema).
#ifndef QT_GRAMMAR_H
#define QT_GRAMMAR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

typedef struct qt_grammar qt_grammar;

// Compile GBNF text: rules "name ::= alternatives", alternatives separated by
// "|", items "literal" (escapes \n \t \r \\ \" \xHH \uXXXX), [byte classes]
// with ranges and ^ negation (ASCII, or negated), "." (any byte), names,
// ( groups ), and the repetitions * + ? {m} {m,} {m,n}; # comments. The
// start rule is "root". Classes match bytes: non-ASCII text passes through
// negated classes and ".". NULL with "line N: what" in err.
qt_grammar *qt_grammar_parse(const char *gbnf, char *err, size_t err_cap);
void qt_grammar_free(qt_grammar *g);   // NULL is a no-op

// GBNF of any JSON object (response_format json_object). Static text.
const char *qt_grammar_json_object_gbnf(void);
// GBNF of the JSON values a JSON schema allows (response_format json_schema):
// type (and type lists), properties / required / additionalProperties,
// items / prefixItems / minItems / maxItems, enum, const, anyOf / oneOf,
// $ref into #/$defs or #/definitions, string minLength / maxLength;
// annotations (title, description, examples, default, format, $schema) are
// ignored. Object members come in the schema's order. Anything else (pattern,
// minimum, ...) is refused: NULL with the schema path in err. malloc'd.
char *qt_json_schema_to_gbnf(const cJSON *schema, char *err, size_t err_cap);

// The token texts a matcher masks: the bytes each token decodes to (control
// tokens: none) and which ids end generation. Built once per vocabulary.
typedef struct {
    int n_vocab;
    const char **piece;   // (n_vocab) borrowed texts
    uint32_t *len;        // (n_vocab)
    bool *eog;            // (n_vocab)
} qt_grammar_vocab;

typedef struct qt_grammar_state qt_grammar_state;
qt_grammar_state *qt_grammar_state_init(const qt_grammar *g);   // the start of "root"
void qt_grammar_state_free(qt_grammar_state *st);              // NULL is a no-op
// Set logits[id] = -inf for every token the grammar does not allow next.
void qt_grammar_mask(qt_grammar_state *st, const qt_grammar_vocab *v, float *logits);
// Whether the grammar takes token id next (the state is not changed): the
// cheap check llama.cpp makes on a token sampled without the mask, masking
// and resampling only when it fails.
bool qt_grammar_allows(qt_grammar_state *st, const qt_grammar_vocab *v, int id);
// Advance by the bytes of a chosen token. QT_ERR if the grammar refuses them.
int qt_grammar_accept(qt_grammar_state *st, const char *bytes, size_t n);
// The text so far is a complete sentence (end of generation allowed).
bool qt_grammar_complete(const qt_grammar_state *st);
// Complete and nothing more can follow.
bool qt_grammar_finished(const qt_grammar_state *st);

#endif
