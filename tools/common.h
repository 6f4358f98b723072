// common.h: pieces several commands share (loading a model with an optional
// separate vocabulary, thread-count defaults).
#ifndef QT_TOOLS_COMMON_H
#define QT_TOOLS_COMMON_H

#include "cli.h"
#include "model/context.h"
#include "model/lora.h"
#include "model/model.h"

// Loads MODEL; when tokenizer_path (a .gguf holding tokenizer.ggml.*) is given
// it replaces/provides the vocabulary (HF folders without tokenizer.json).
// need_tokenizer: fail with a hint when the model ends up without one.
qt_model *qt_cli_load_model(const char *path, const char *tokenizer_path, bool need_tokenizer);
// --adapter PATH[:SCALE]: a PEFT adapter folder for model m. NULL on error.
qt_lora *qt_cli_load_adapter(const qt_model *m, const char *spec, float *scale);

// Every --adapter of a command, loaded and attached to a context.
typedef struct {
    qt_lora *l[8];
    float scale[8];
    int n;
} qt_cli_adapters;
// Loads each --adapter PATH[:SCALE] for m and adds it to ctx. QT_ERR (logged)
// on the first failure; what was loaded is freed by qt_cli_adapters_free.
int qt_cli_attach_adapters(qt_cli_adapters *a, const qt_model *m, qt_ctx *ctx, const qt_opt_strs *specs);
void qt_cli_adapters_free(qt_cli_adapters *a);

// --threads: <= 0 means all online CPUs.
int qt_cli_threads(int requested);

#endif
