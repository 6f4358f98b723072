// common.h: pieces several commands share (loading a model with an optional
// separate vocabulary, thread-count defaults).
#ifndef QT_TOOLS_COMMON_H
#define QT_TOOLS_COMMON_H

#include "cli.h"
#include "backend/backend.h"
#include "base/pool.h"
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

// The sampling options of generate and chat, as rows of a qt_opt table:
// sp is a qt_sampler_params, seed a uint64_t.
#define QT_CLI_SAMPLING_OPTS(sp, seed)                                                                            \
    { "temp", 0, QT_OPT_FLOAT, &(sp).temp, "T", "temperature; 0 = greedy (default 0.8)" },                      \
    { "top-k", 0, QT_OPT_INT, &(sp).top_k, "K", "keep the K most likely tokens; 0 = off (default 40)" },         \
    { "top-p", 0, QT_OPT_FLOAT, &(sp).top_p, "P", "nucleus sampling; 1 = off (default 0.95)" },                  \
    { "min-p", 0, QT_OPT_FLOAT, &(sp).min_p, "P", "drop tokens below P x the top probability (default 0.05)" },  \
    { "repeat-penalty", 0, QT_OPT_FLOAT, &(sp).repeat_penalty, "X", "penalise repeated tokens; 1 = off (default 1.0)" }, \
    { "repeat-last-n", 0, QT_OPT_INT, &(sp).repeat_last_n, "N", "window of the repeat penalty (default 64)" },   \
    { "seed", 's', QT_OPT_U64, &(seed), "S", "random seed (default: from the clock, printed)" }

// --threads: <= 0 means all online CPUs.
int qt_cli_threads(int requested);

// --device NAME (cpu, cuda, cuda:N, auto; NULL = auto) on a pool of
// `threads` CPU threads, with m's tensors bound to it. NULL (logged) on
// failure; free with qt_cli_backend_free (unbinds m).
typedef struct {
    qt_pool *pool;
    qt_backend *be;
    qt_model *m;
} qt_cli_backend;
int qt_cli_backend_init(qt_cli_backend *b, qt_model *m, const char *device, int threads);
void qt_cli_backend_free(qt_cli_backend *b);
#define QT_CLI_DEVICE_OPT(var) \
    { "device", 0, QT_OPT_STR, &(var), "NAME", "cpu, cuda, cuda:N or auto (default auto: the GPU when built with CUDA=1)" }

#endif
