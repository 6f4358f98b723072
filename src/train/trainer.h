// trainer.h: the `qtune train` loop (mlx_lm.lora's shape): LoRA/QLoRA on a
// frozen base, AdamW, schedules, accumulation, clipping, validation every N
// steps, test loss at the end, logs, atomic checkpoints and exact resume.
#ifndef QT_TRAINER_H
#define QT_TRAINER_H

#include <stdbool.h>
#include <stdint.h>

#include "model/lora.h"
#include "train/dataset.h"
#include "train/optim.h"

typedef struct {
    const char *model;          // -m
    const char *tokenizer;      // vocabulary .gguf for HF folders without one
    const char *data;           // folder (train/valid/test.jsonl) or a .jsonl
    const char *adapter_path;   // output folder (default "adapters")
    bool resume;                // continue from adapter_path's checkpoint
    int iters;                  // optimizer steps (default 1000)
    int batch_size;             // sequences per micro-batch (default 4)
    int grad_accum;             // micro-batches per step (default 1)
    int steps_per_report;       // default 10
    int steps_per_eval;         // default 200; 0: never
    int val_batches;            // default 25; -1: the whole validation set
    int save_every;             // default 100; 0: only at the end
    bool test;                  // test loss after training
    uint64_t seed;
    int threads;                // <= 0: all cores
    bool grad_checkpoint;
    float grad_clip;            // max global norm; 0: off
    qt_adamw_params adam;       // lr (default 1e-4), betas, eps, weight decay (default 0)
    qt_sched sched;             // schedule kind, warmup, min lr (total = iters)
    qt_lora_config lora;
    qt_data_opts data_opts;
    const char *quantize;       // NULL, or q4_0 / q8_0 / ...: quantize the base at load time
    const char *compute;        // "bf16" | "fp32" products; NULL: bf16 where the kernels have a bf16 gemm
    float dist_timeout;         // under mpirun: seconds to wait for the other ranks (default 600)
} qt_train_opts;

qt_train_opts qt_train_defaults(void);

// Runs training; returns QT_OK or QT_ERR (logged). Ctrl-C saves a checkpoint
// and returns QT_OK after the current step.
int qt_train_run(const qt_train_opts *o);

#endif
