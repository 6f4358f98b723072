// common.h: pieces several commands share (loading a model with an optional
// separate vocabulary, thread-count defaults).
#ifndef QT_TOOLS_COMMON_H
#define QT_TOOLS_COMMON_H

#include <stdatomic.h>

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
// Entry i of a QT_CLI_ADAPTER_OPTS list (PATH[:SCALE], or --lora-scaled PATH SCALE).
qt_lora *qt_cli_load_adapter_at(const qt_model *m, const qt_opt_strs *specs, int i, float *scale);

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
    { "temp", 0, QT_OPT_FLOAT, &(sp).temp, "T", "temperature; 0 = greedy (default 0.8)", "--temperature", "[0,100]" }, \
    { "top-k", 0, QT_OPT_INT, &(sp).top_k, "K", "keep the K most likely tokens; 0 = off (default 40)", NULL, "[0,inf)" }, \
    { "top-p", 0, QT_OPT_FLOAT, &(sp).top_p, "P", "nucleus sampling; 1 = off (default 0.95)", NULL, "(0,1]" },  \
    { "min-p", 0, QT_OPT_FLOAT, &(sp).min_p, "P", "drop tokens below P x the top probability (default 0.05)", NULL, "[0,1]" }, \
    { "repeat-penalty", 0, QT_OPT_FLOAT, &(sp).repeat_penalty, "X", "penalise repeated tokens; 1 = off (default 1.0)", NULL, "(0,100]" }, \
    { "repeat-last-n", 0, QT_OPT_INT, &(sp).repeat_last_n, "N", "window of the repeat penalty (default 64)", NULL, "[0,inf)" }, \
    { "seed", 's', QT_OPT_U64, &(seed), "S", "random seed (default: from the clock, printed)" }

// The adapter options every command that applies adapters shares (one name
// per meaning: mlx-lm's --adapter-path / --adapter-file and llama.cpp's
// --lora are the same option); specs is a qt_opt_strs.
#define QT_CLI_ADAPTER_OPTS(specs)                                                                                \
    { "adapter", 'a', QT_OPT_STRS, &(specs), "PATH[:SCALE]",                                                      \
      "apply a LoRA adapter: PEFT or mlx-lm folder, adapters.safetensors, lora.py adapters.npz, GGUF LoRA; "      \
      "optionally scaled; repeatable", "--adapter-path --adapter-file --lora" },                                  \
    { "lora-scaled", 0, QT_OPT_STRS2, &(specs), "PATH SCALE", "llama.cpp's spelling of --adapter PATH:SCALE" }

// --no-mmap (llama.cpp's spelling): the weights copied into the process's
// own huge-page memory after loading (qt_model_copy_weights); b is a bool.
#define QT_CLI_NO_MMAP_OPT(b)                                                                                     \
    { "no-mmap", 0, QT_OPT_FLAG, &(b), NULL,                                                                      \
      "copy the weights into the process's memory instead of reading the mapped file: slower start, "            \
      "up to 1.3x faster decode of big models" }

// Threads and log level, with their ranges.
#define QT_CLI_THREADS_OPT(n) { "threads", 't', QT_OPT_INT, &(n), "N", "threads; 0 = all cores (default)", NULL, "[0,4096]" }
#define QT_CLI_VERBOSE_OPT(v) { "verbose", 'v', QT_OPT_INT, &(v), "N", "log level 0..2 (default 1)", NULL, "[0,2]" }

// Ctrl-C. install: the first SIGINT (and SIGUSR1, which mpirun forwards)
// raises the returned flag that long work polls; with exit_on_second a
// second one ends the process at once with status 130. Without SA_RESTART,
// so a blocking read returns EINTR. restore: the previous handlers back.
const atomic_int *qt_cli_interrupt_install(bool exit_on_second);
void qt_cli_interrupt_restore(void);
int qt_cli_interrupt_count(void);    // signals since install / clear
void qt_cli_interrupt_clear(void);
#define QT_EXIT_INTERRUPTED 130      // 128 + SIGINT, as a shell reports a Ctrl-C

// The whole of a file, or of standard input for "-" (llama.cpp's -f -),
// NUL-terminated, malloc'd. NULL on a read error (logged).
char *qt_cli_read_text(const char *path);

// llama.cpp's -ngl: accepted (its command lines work), noted, ignored.
#define QT_CLI_GPU_LAYERS_OPT(s)                                                                                  \
    { "n-gpu-layers", 0, QT_OPT_STR, &(s), "N", "accepted for llama.cpp command lines; qtune runs on the CPU",       \
      "-ngl --gpu-layers" }
void qt_cli_note_gpu_layers(const char *value);   // NULL: nothing

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
