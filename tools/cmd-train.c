// cmd-train.c: `qtune train`: LoRA / QLoRA fine-tuning (option names follow
// mlx_lm.lora, which these users know). Parses options into qt_train_opts and
// runs src/train/trainer.c.
#include <stdio.h>
#include <string.h>

#include "base/base.h"
#include "cli.h"
#include "train/trainer.h"

static int run_train(qt_train_opts *po, const char *targets, const char *schedule, int verbose);

int qt_cmd_train(int argc, char **argv) {
    qt_train_opts o = qt_train_defaults();
    const char *targets = NULL, *schedule = "constant", *config = NULL;
    int verbose = 1;
    const qt_opt opts[] = {
        { "model", 'm', QT_OPT_STR, &o.model, "PATH", "base model: .gguf (any type, also quantized) or HF folder" },
        { "data", 'd', QT_OPT_STR, &o.data, "PATH", "folder with train/valid/test.jsonl, or one .jsonl" },
        { "adapter-path", 'o', QT_OPT_STR, &o.adapter_path, "DIR", "where the adapter and checkpoints go (default adapters)" },
        { "iters", 0, QT_OPT_INT, &o.iters, "N", "optimizer steps (default 1000)" },
        { "batch-size", 'b', QT_OPT_INT, &o.batch_size, "N", "sequences per batch (default 4)" },
        { "grad-accum", 0, QT_OPT_INT, &o.grad_accum, "N", "batches per optimizer step (default 1)" },
        { "learning-rate", 0, QT_OPT_FLOAT, &o.adam.lr, "LR", "peak learning rate (default 1e-4)" },
        { "lr-schedule", 0, QT_OPT_STR, &schedule, "NAME", "constant | linear | cosine (default constant)" },
        { "warmup", 0, QT_OPT_INT, &o.sched.warmup, "N", "linear warm-up steps (default 0)" },
        { "min-lr", 0, QT_OPT_FLOAT, &o.sched.min_lr, "LR", "final learning rate of linear/cosine decay (default 0)" },
        { "weight-decay", 0, QT_OPT_FLOAT, &o.adam.weight_decay, "X", "AdamW weight decay (default 0)" },
        { "grad-clip", 0, QT_OPT_FLOAT, &o.grad_clip, "X", "clip the gradient norm to X; 0 = off (default)" },
        { "lora-rank", 'r', QT_OPT_INT, &o.lora.rank, "N", "adapter rank (default 8)" },
        { "lora-alpha", 0, QT_OPT_FLOAT, &o.lora.alpha, "X", "adapter alpha; scale = alpha/rank (default 16)" },
        { "lora-dropout", 0, QT_OPT_FLOAT, &o.lora.dropout, "P", "dropout on the adapter input (default 0)" },
        { "rslora", 0, QT_OPT_FLAG, &o.lora.rslora, NULL, "rank-stabilised scale alpha/sqrt(rank)" },
        { "num-layers", 0, QT_OPT_INT, &o.lora.n_layers, "N", "adapt the last N layers; 0 = all (default)" },
        { "targets", 0, QT_OPT_STR, &targets, "LIST", "projections: q,k,v,o,gate,up,down or all (default q,v)" },
        { "max-seq-len", 0, QT_OPT_INT, &o.data_opts.max_seq_len, "N", "truncate records to N tokens (default 2048)" },
        { "mask-prompt", 0, QT_OPT_FLAG, &o.data_opts.mask_prompt, NULL, "train on completions / assistant turns only" },
        { "chat-template", 0, QT_OPT_STR, &o.data_opts.chat_template, "NAME", "template for messages records (default llama2; chatml, llama3, zephyr, phi3, gemma, mistral, alpaca)" },
        { "parse-special", 0, QT_OPT_FLAG, &o.data_opts.parse_special, NULL, "read <s>, </s>, ... in text records as special tokens" },
        { "skip-bad-lines", 0, QT_OPT_FLAG, &o.data_opts.skip_bad_lines, NULL, "skip malformed records (counted) instead of stopping" },
        { "steps-per-report", 0, QT_OPT_INT, &o.steps_per_report, "N", "report training loss every N steps (default 10)" },
        { "steps-per-eval", 0, QT_OPT_INT, &o.steps_per_eval, "N", "validation loss every N steps; 0 = never (default 200)" },
        { "val-batches", 0, QT_OPT_INT, &o.val_batches, "N", "validation batches; -1 = all (default 25)" },
        { "save-every", 0, QT_OPT_INT, &o.save_every, "N", "checkpoint every N steps (default 100)" },
        { "resume", 0, QT_OPT_FLAG, &o.resume, NULL, "continue from the checkpoint in --adapter-path" },
        { "test", 0, QT_OPT_FLAG, &o.test, NULL, "report the test loss after training" },
        { "seed", 's', QT_OPT_U64, &o.seed, "S", "random seed: data order, init, dropout (default 0)" },
        { "threads", 't', QT_OPT_INT, &o.threads, "N", "threads (default: all cores)" },
        { "grad-checkpoint", 0, QT_OPT_FLAG, &o.grad_checkpoint, NULL, "recompute layers in backward: less memory" },
        { "quantize", 0, QT_OPT_STR, &o.quantize, "TYPE", "QLoRA: quantize the base at load (q4_0, q4_k, q8_0, iq4_nl)" },
        { "compute", 0, QT_OPT_STR, &o.compute, "bf16|fp32", "precision of the products (default bf16 where the CPU has AVX512_BF16)" },
        { "dist-timeout", 0, QT_OPT_FLOAT, &o.dist_timeout, "S", "under mpirun: give up on silent ranks after S seconds (default 600)" },
        { "tokenizer", 0, QT_OPT_STR, &o.tokenizer, "PATH", "take the vocabulary from this .gguf" },
        { "verbose", 'v', QT_OPT_INT, &verbose, "N", "log level 0..2 (default 1)" },
        { "config", 0, QT_OPT_STR, &config, "FILE", "JSON file of options (keys as these names); flags override it" },
        { 0 },
    };
    const qt_cmd_spec spec = { "train", "-m MODEL --data DATA [options]",
                               "Fine-tune a LoRA adapter on a frozen (optionally quantized) base model.", opts, 0, 0 };
    char *pos[1];
    int n_pos, cargc;
    char **cargv;
    if (qt_opts_expand_config("train", argc, argv, &cargc, &cargv) != 0) return 2;
    int r = qt_opts_parse(&spec, cargc, cargv, pos, &n_pos);
    int rc = r ? (r > 0 ? 0 : 2) : run_train(&o, targets, schedule, verbose);
    qt_opts_free_config(cargc, cargv);   // option strings point into cargv until here
    return rc;
}

static int run_train(qt_train_opts *po, const char *targets, const char *schedule, int verbose) {
    qt_train_opts o = *po;
    qt_log_set_level(verbose);
    if (!o.model || !o.data) {
        qt_log_error("qtune train: give a model (-m) and data (--data)");
        return 2;
    }
    if (targets && qt_lora_parse_targets(targets, &o.lora.targets) != QT_OK) return 2;
    if (o.compute && strcmp(o.compute, "bf16") && strcmp(o.compute, "fp32")) {
        qt_log_error("qtune train: --compute must be bf16 or fp32, not '%s'", o.compute);
        return 2;
    }
    int kind = qt_sched_parse(schedule);
    if (kind < 0) {
        qt_log_error("qtune train: --lr-schedule must be constant, linear or cosine, not '%s'", schedule);
        return 2;
    }
    o.sched.kind = (qt_sched_kind)kind;
    if (o.data_opts.max_seq_len < 2) {
        qt_log_error("qtune train: --max-seq-len must be at least 2");
        return 2;
    }
    return qt_train_run(&o) == QT_OK ? 0 : 1;
}
