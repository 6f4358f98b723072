// common.h: pieces several commands share (loading a model with an optional
// separate vocabulary, thread-count defaults).
#ifndef QT_TOOLS_COMMON_H
#define QT_TOOLS_COMMON_H

#include "model/model.h"

// Loads MODEL; when tokenizer_path (a .gguf holding tokenizer.ggml.*) is given
// it replaces/provides the vocabulary (HF folders without tokenizer.json).
// need_tokenizer: fail with a hint when the model ends up without one.
qt_model *qt_cli_load_model(const char *path, const char *tokenizer_path, bool need_tokenizer);
// --threads: <= 0 means all online CPUs.
int qt_cli_threads(int requested);

#endif
