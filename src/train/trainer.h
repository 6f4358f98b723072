// trainer.h: the `qtune train` loop (mlx_lm.lora's shape): LoRA/QLoRA on a
// frozen base, AdamW, schedules, accumulation, clipping, validation every N
// steps, test loss at the end, logs, atomic checkpoints and exact resume.
#ifndef QT_TRAINER_H
#define QT_TRAINER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "model/lora.h"
#include "train/dataset.h"
#include "train/optim.h"

typedef struct {
    const char *model;          // -m
    const char *tokenizer;      // vocabulary .gguf for HF folders without one
    const char *data;           // folder (train/valid/test.jsonl) or a .jsonl
    const char *adapter_path;   // output (default "adapters"): a folder (PEFT), or a file whose name picks the
                                // form (lora-io.h qt_lora_format_of): x/adapters.safetensors (mlx-lm; the run's
                                // files in x/), adapters.npz (lora.py) or lora.gguf (the run's files in
                                // adapters-run/ or lora-run/)
    bool resume;                // continue from adapter_path's checkpoint
    bool overwrite;             // start afresh even where adapter_path holds a run (default: refuse)
    const char *init_adapter;   // --resume-adapter-file: start from these adapter weights (fresh optimizer)
    int iters;                  // optimizer steps (default 1000)
    float epochs;               // > 0: iters = epochs x the optimizer steps of one pass over the training data
    int batch_size;             // sequences per micro-batch (default 4)
    int grad_accum;             // micro-batches per step (default 1)
    int steps_per_report;       // default 10
    int steps_per_eval;         // default 200; 0: never
    int val_batches;            // default 25; -1: the whole validation set
    int save_every;             // default 100; 0: only at the end
    bool test;                  // test loss after training
    int test_batches;           // test batches; -1 (default): the whole test set
    uint64_t seed;
    int threads;                // <= 0: all cores
    bool grad_checkpoint;
    float grad_clip;            // max global norm; 0: off
    qt_adamw_params adam;       // lr (default 1e-4), betas, eps, weight decay (default 0)
    qt_sched sched;             // schedule kind, warmup, min lr (total = iters)
    qt_lora_config lora;        // lora.targets: 0 = from `targets` (or the architecture's default)
    const char *targets;        // --targets list, resolved against the model's architecture; NULL: default
    const char *device;         // backend: "cpu", "cuda", "auto" (NULL: auto)
    qt_data_opts data_opts;
    const char *quantize;       // NULL, or q4_0 / q8_0 / ...: quantize the base at load time
    const char *compute;        // "bf16" | "fp32" products; NULL: bf16 where the kernels have a bf16 gemm
    float dist_timeout;         // under mpirun: seconds to wait for the other ranks (default 600)
    const atomic_int *stop;     // raised by Ctrl-C (tools/): stop, save the last finished step; NULL: never
    const char *resume_hint;    // the command that continues this run, for the stop message (NULL: generic)
} qt_train_opts;

qt_train_opts qt_train_defaults(void);

// Runs training; returns QT_OK, QT_ERR (logged) or QT_EINVAL (an option
// that does not fit the model, e.g. a --targets name; logged). When *stop is
// raised it abandons the step in progress (within one operation of the
// forward or backward pass; with several MPI ranks, at the end of the step),
// writes the checkpoint of the last finished step, says how to continue and
// returns QT_STOPPED.
int qt_train_run(const qt_train_opts *o);

// The run folder and adapter file an output path names (see adapter_path):
// both malloc'd. *file is NULL for a PEFT folder.
void qt_train_paths(const char *adapter_path, char **run_dir, char **file);

#endif
