// common.h: pieces several commands share (loading a model with an optional
// separate vocabulary, thread-count defaults).
#ifndef QT_TOOLS_COMMON_H
#define QT_TOOLS_COMMON_H

#include "model/lora.h"
#include "model/model.h"

// Loads MODEL; when tokenizer_path (a .gguf holding tokenizer.ggml.*) is given
// it replaces/provides the vocabulary (HF folders without tokenizer.json).
// need_tokenizer: fail with a hint when the model ends up without one.
qt_model *qt_cli_load_model(const char *path, const char *tokenizer_path, bool need_tokenizer);
// --adapter PATH[:SCALE]: a PEFT adapter folder for model m. NULL on error.
qt_lora *qt_cli_load_adapter(const qt_model *m, const char *spec, float *scale);

// --threads: <= 0 means all online CPUs.
int qt_cli_threads(int requested);

#endif
