// cmd-train.c: `qtune train`: LoRA / QLoRA fine-tuning (option names follow
// mlx_lm.lora, which these users know, with mlx-examples lora.py's and
// Hugging Face TrainingArguments' spellings as aliases). Parses options into
// qt_train_opts and runs src/train/trainer.c; Ctrl-C stops the run with a
// checkpoint (exit 130), a second Ctrl-C at once.
// Also `qtune lora`: mlx-examples' lora.py command line as it is (its
// defaults: --data data/, --adapter-file adapters.npz, lr 1e-5, rank 8,
// scale 20, q and v of the last 16 layers): --train trains, --test reports
// the test loss, --prompt generates, in that order.
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "cli.h"
#include "common.h"
#include "model/model.h"
#include "train/trainer.h"

typedef struct {
    const char *targets, *schedule, *fine_tune_type, *optimizer;
    float lora_scale;   // mlx-lm's scale (alpha = scale x rank); 0: not given
    bool train_flag;    // mlx_lm.lora --train: accepted, training is what this command does
    int verbose;
} train_extra;

static int run_train(qt_train_opts *po, const train_extra *x, const char *resume_hint);

// The command as typed plus --resume, quoted for a POSIX shell. malloc'd.
static char *resume_command(int argc, char **argv) {
    size_t cap = 64;
    for (int i = 0; i < argc; i++) cap += 4 * strlen(argv[i]) + 4;
    char *s = qt_malloc(cap), *p = s;
    p += sprintf(p, "qtune train");
    bool has_resume = false;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--overwrite")) continue;
        has_resume |= !strcmp(a, "--resume");
        bool plain = a[0] != 0;
        for (const char *c = a; *c; c++)
            if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+@%", *c)) plain = false;
        *p++ = ' ';
        if (plain) {
            p += sprintf(p, "%s", a);
        } else {
            *p++ = '\'';
            for (const char *c = a; *c; c++) {
                if (*c == '\'') { memcpy(p, "'\\''", 4); p += 4; }
                else *p++ = *c;
            }
            *p++ = '\'';
        }
    }
    if (!has_resume) p += sprintf(p, " --resume");
    *p = 0;
    return s;
}

int qt_cmd_train(int argc, char **argv) {
    qt_train_opts o = qt_train_defaults();
    o.iters = 0;   // unset: 1000, or from --epochs
    train_extra x = { .schedule = "constant", .verbose = 1 };
    const char *config = NULL;
    const qt_opt opts[] = {
        { "model", 'm', QT_OPT_STR, &o.model, "PATH", "base model: .gguf (any type, also quantized) or HF folder" },
        { "data", 'd', QT_OPT_STR, &o.data, "PATH", "folder with train/valid/test.jsonl, or one .jsonl" },
        { "adapter-path", 'o', QT_OPT_STR, &o.adapter_path, "OUT",
          "where the adapter goes (default adapters): a folder (PEFT), x/adapters.safetensors (mlx-lm), "
          "adapters.npz (lora.py) or lora.gguf (llama.cpp)", "--adapter-file --output --output-dir" },
        { "resume", 0, QT_OPT_FLAG, &o.resume, NULL, "continue the run whose checkpoint is in --adapter-path" },
        { "overwrite", 0, QT_OPT_FLAG, &o.overwrite, NULL, "replace a run already in --adapter-path (default: refuse)" },
        { "resume-adapter-file", 0, QT_OPT_STR, &o.init_adapter, "PATH", "start from this adapter's weights (fresh optimizer)" },
        { "iters", 0, QT_OPT_INT, &o.iters, "N", "optimizer steps (default 1000)", "--max-steps", "[1,1000000000]" },
        { "epochs", 0, QT_OPT_FLOAT, &o.epochs, "E", "passes over the training data instead of --iters", "--num-train-epochs", "(0,1000000]" },
        { "batch-size", 'b', QT_OPT_INT, &o.batch_size, "N", "sequences per batch (default 4)", "--per-device-train-batch-size", "[1,65536]" },
        { "grad-accum", 0, QT_OPT_INT, &o.grad_accum, "N", "batches per optimizer step (default 1)", "--gradient-accumulation-steps", "[1,256]" },
        { "learning-rate", 0, QT_OPT_FLOAT, &o.adam.lr, "LR", "peak learning rate (default 1e-4)", "--lr", "(0,10]" },
        { "lr-schedule", 0, QT_OPT_STR, &x.schedule, "NAME", "constant | linear | cosine (default constant)", "--lr-scheduler-type" },
        { "warmup", 0, QT_OPT_INT, &o.sched.warmup, "N", "linear warm-up steps (default 0)", "--warmup-steps", "[0,1000000000]" },
        { "min-lr", 0, QT_OPT_FLOAT, &o.sched.min_lr, "LR", "final learning rate of linear/cosine decay (default 0)", NULL, "[0,10]" },
        { "weight-decay", 0, QT_OPT_FLOAT, &o.adam.weight_decay, "X", "AdamW weight decay (default 0)", NULL, "[0,100]" },
        { "optimizer", 0, QT_OPT_STR, &x.optimizer, "NAME", "adam or adamw (the same AdamW; give --weight-decay)" },
        { "grad-clip", 0, QT_OPT_FLOAT, &o.grad_clip, "X", "clip the gradient norm to X; 0 = off (default)", "--max-grad-norm", "[0,1e9]" },
        { "fine-tune-type", 0, QT_OPT_STR, &x.fine_tune_type, "lora", "mlx_lm.lora's: only lora (no dora, full)" },
        { "lora-rank", 'r', QT_OPT_INT, &o.lora.rank, "N", "adapter rank (default 8)", "--rank", "[1,4096]" },
        { "lora-alpha", 0, QT_OPT_FLOAT, &o.lora.alpha, "X", "adapter alpha; scale = alpha/rank (default 16)", NULL, "(0,1000000]" },
        { "lora-scale", 0, QT_OPT_FLOAT, &x.lora_scale, "S", "mlx-lm's scale instead of alpha (alpha = S x rank)", NULL, "(0,1000000]" },
        { "lora-dropout", 0, QT_OPT_FLOAT, &o.lora.dropout, "P", "dropout on the adapter input (default 0)", NULL, "[0,1)" },
        { "rslora", 0, QT_OPT_FLAG, &o.lora.rslora, NULL, "rank-stabilised scale alpha/sqrt(rank)" },
        { "num-layers", 0, QT_OPT_INT, &o.lora.n_layers, "N", "adapt the last N layers; 0 = all (default)", "--lora-layers", "[0,100000]" },
        { "targets", 0, QT_OPT_STR, &x.targets, "LIST", "projections: q,k,v,o,gate,up,down or all (default q,v)", "--target-modules" },
        { "max-seq-len", 0, QT_OPT_INT, &o.data_opts.max_seq_len, "N", "truncate records to N tokens (default 2048)", "--max-seq-length", "[2,10000000]" },
        { "mask-prompt", 0, QT_OPT_FLAG, &o.data_opts.mask_prompt, NULL, "train on completions / assistant turns / text after --response-template only" },
        { "response-template", 0, QT_OPT_STR, &o.data_opts.response_template, "TEXT",
          "\"text\" records: the answer starts after the last TEXT (e.g. \"[/INST]\"); with --mask-prompt", "--response-marker" },
        { "chat-template", 0, QT_OPT_STR, &o.data_opts.chat_template, "NAME", "template for messages records (default llama2; chatml, llama3, zephyr, phi3, gemma, mistral, alpaca)" },
        { "parse-special", 0, QT_OPT_FLAG, &o.data_opts.parse_special, NULL, "read <s>, </s>, ... in text records as special tokens" },
        { "skip-bad-lines", 0, QT_OPT_FLAG, &o.data_opts.skip_bad_lines, NULL, "skip malformed records (counted) instead of stopping" },
        { "steps-per-report", 0, QT_OPT_INT, &o.steps_per_report, "N", "report training loss every N steps (default 10)", "--logging-steps", "[1,1000000000]" },
        { "steps-per-eval", 0, QT_OPT_INT, &o.steps_per_eval, "N", "validation loss every N steps; 0 = never (default 200)", "--eval-steps", "[0,1000000000]" },
        { "val-batches", 0, QT_OPT_INT, &o.val_batches, "N", "validation batches; -1 = all (default 25)", NULL, "[-1,1000000000]" },
        { "save-every", 0, QT_OPT_INT, &o.save_every, "N", "checkpoint every N steps (default 100)", "--save-steps", "[0,1000000000]" },
        { "test", 0, QT_OPT_FLAG, &o.test, NULL, "report the test loss after training" },
        { "test-batches", 0, QT_OPT_INT, &o.test_batches, "N", "test batches; -1 = all (default)", NULL, "[-1,1000000000]" },
        { "train", 0, QT_OPT_FLAG, &x.train_flag, NULL, "accepted for mlx_lm.lora command lines (training is what this does)" },
        { "seed", 's', QT_OPT_U64, &o.seed, "S", "random seed: data order, init, dropout (default 0)" },
        QT_CLI_THREADS_OPT(o.threads),
        QT_CLI_DEVICE_OPT(o.device),
        { "grad-checkpoint", 0, QT_OPT_FLAG, &o.grad_checkpoint, NULL, "recompute layers in backward: less memory", "--gradient-checkpointing" },
        { "quantize", 0, QT_OPT_STR, &o.quantize, "TYPE", "QLoRA: quantize the base at load (q4_0, q4_k, q8_0, iq4_nl, nf4, nf4-dq)" },
        { "compute", 0, QT_OPT_STR, &o.compute, "bf16|fp32", "precision of the products (default bf16 where the CPU has AVX512_BF16)" },
        { "dist-timeout", 0, QT_OPT_FLOAT, &o.dist_timeout, "S", "under mpirun: give up on silent ranks after S seconds (default 600)", NULL, "(0,10000000]" },
        { "tokenizer", 0, QT_OPT_STR, &o.tokenizer, "PATH", "take the vocabulary from this .gguf" },
        QT_CLI_VERBOSE_OPT(x.verbose),
        { "config", 'c', QT_OPT_STR, &config, "FILE", "YAML (mlx-lm's lora_config.yaml) or JSON file of options; flags override it" },
        { 0 },
    };
    const qt_cmd_spec spec = { "train", "-m MODEL --data DATA [options]",
                               "Fine-tune a LoRA adapter on a frozen (optionally quantized) base model. Ctrl-C stops "
                               "with a checkpoint of the last finished step.", opts, 0, 0 };
    char *pos[1];
    int n_pos, cargc;
    char **cargv;
    if (qt_opts_expand_config("train", argc, argv, &cargc, &cargv) != 0) return 2;
    int r = qt_opts_parse(&spec, cargc, cargv, pos, &n_pos);
    int rc = 0;
    if (r == 0) {
        char *hint = resume_command(argc, argv);
        rc = run_train(&o, &x, hint);
        qt_free(hint);
    } else {
        rc = r > 0 ? 0 : 2;
    }
    qt_opts_free_config(cargc, cargv);   // option strings point into cargv until here
    return rc;
}

static int run_train(qt_train_opts *po, const train_extra *x, const char *resume_hint) {
    qt_train_opts o = *po;
    qt_log_set_level(x->verbose);
    if (!o.model || !o.data) {
        qt_log_error("qtune train: give a model (-m) and data (--data)");
        return 2;
    }
    if (o.iters > 0 && o.epochs > 0) {
        qt_log_error("qtune train: give --iters or --epochs, not both");
        return 2;
    }
    if (o.iters == 0) o.iters = 1000;   // --epochs replaces it in the trainer
    if (x->fine_tune_type && strcmp(x->fine_tune_type, "lora") != 0) {
        qt_log_error("qtune train: --fine-tune-type %s is not supported (only lora)", x->fine_tune_type);
        return 2;
    }
    if (x->optimizer && strcmp(x->optimizer, "adam") != 0 && strcmp(x->optimizer, "adamw") != 0) {
        qt_log_error("qtune train: --optimizer must be adam or adamw, not '%s'", x->optimizer);
        return 2;
    }
    o.targets = x->targets;
    if (x->lora_scale > 0) o.lora.alpha = x->lora_scale * (float)o.lora.rank;
    if (!(o.lora.alpha > 0 && o.lora.alpha <= 1e6f)) {
        qt_log_error("qtune train: --lora-scale x --lora-rank = alpha %g is out of range (0, 1e6]", o.lora.alpha);
        return 2;
    }
    int kind = qt_sched_parse(x->schedule);
    if (o.compute && strcmp(o.compute, "bf16") && strcmp(o.compute, "fp32")) {
        qt_log_error("qtune train: --compute must be bf16 or fp32, not '%s'", o.compute);
        return 2;
    }
    if (kind < 0) {
        qt_log_error("qtune train: --lr-schedule must be constant, linear or cosine, not '%s'", x->schedule);
        return 2;
    }
    o.sched.kind = (qt_sched_kind)kind;
    if (o.sched.min_lr > o.adam.lr) {
        qt_log_error("qtune train: --min-lr %g is above --learning-rate %g", o.sched.min_lr, o.adam.lr);
        return 2;
    }
    o.resume_hint = resume_hint;
    o.stop = qt_cli_interrupt_install(true);
    int rc = qt_train_run(&o);
    qt_cli_interrupt_restore();
    return rc == QT_OK ? 0 : rc == QT_STOPPED ? QT_EXIT_INTERRUPTED : rc == QT_EINVAL ? 2 : 1;
}

// ---- qtune lora: lora.py's command line ----

typedef struct {
    char **v;
    int n;
} args;

static void arg(args *a, const char *s) {
    a->v = qt_realloc(a->v, sizeof(char *) * (size_t)(a->n + 2));
    a->v[a->n++] = qt_strdup(s);
    a->v[a->n] = NULL;
}

static void argf(args *a, const char *flag, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void argf(args *a, const char *flag, const char *fmt, ...) {
    char buf[64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    arg(a, flag);
    arg(a, buf);
}

static void args_free(args *a) {
    for (int i = 0; i < a->n; i++) qt_free(a->v[i]);
    qt_free(a->v);
}

int qt_cmd_lora(int argc, char **argv) {
    const char *model = "mlx_model", *prompt = NULL, *data = "data/", *resume_file = NULL, *adapter = "adapters.npz";
    int max_tokens = 100, add_eos = 1, lora_layers = 16, batch_size = 4, iters = 1000, val_batches = 25;
    int steps_per_report = 10, steps_per_eval = 200, save_every = 100, test_batches = 500, threads = 0, verbose = 1;
    float temp = 0.8f, lr = 1e-5f;
    bool train = false, test = false, overwrite = false;
    uint64_t seed = 0;
    const qt_opt opts[] = {
        { "model", 0, QT_OPT_STR, &model, "PATH", "base model (default mlx_model)" },
        { "max-tokens", 'm', QT_OPT_INT, &max_tokens, "N", "tokens to generate (default 100)", NULL, "[1,10000000]" },
        { "temp", 0, QT_OPT_FLOAT, &temp, "T", "sampling temperature (default 0.8)", NULL, "[0,100]" },
        { "prompt", 'p', QT_OPT_STR, &prompt, "TEXT", "generate from this prompt with the adapter" },
        { "train", 0, QT_OPT_FLAG, &train, NULL, "train the adapter" },
        { "add-eos-token", 0, QT_OPT_INT, &add_eos, "0|1", "append EOS to each record (default 1)", NULL, "[0,1]" },
        { "data", 0, QT_OPT_STR, &data, "DIR", "folder with train, valid, test.jsonl (default data/)" },
        { "lora-layers", 0, QT_OPT_INT, &lora_layers, "N", "layers to fine-tune (default 16)", NULL, "[1,100000]" },
        { "batch-size", 0, QT_OPT_INT, &batch_size, "N", "minibatch size (default 4)", NULL, "[1,65536]" },
        { "iters", 0, QT_OPT_INT, &iters, "N", "iterations to train for (default 1000)", NULL, "[1,1000000000]" },
        { "val-batches", 0, QT_OPT_INT, &val_batches, "N", "validation batches, -1 = all (default 25)", NULL, "[-1,1000000000]" },
        { "learning-rate", 0, QT_OPT_FLOAT, &lr, "LR", "Adam learning rate (default 1e-5)", NULL, "(0,10]" },
        { "steps-per-report", 0, QT_OPT_INT, &steps_per_report, "N", "steps between loss reports (default 10)", NULL, "[1,1000000000]" },
        { "steps-per-eval", 0, QT_OPT_INT, &steps_per_eval, "N", "steps between validations (default 200)", NULL, "[1,1000000000]" },
        { "resume-adapter-file", 0, QT_OPT_STR, &resume_file, "PATH", "start training from these adapter weights" },
        { "adapter-file", 0, QT_OPT_STR, &adapter, "PATH", "save / load path of the adapter (default adapters.npz)" },
        { "save-every", 0, QT_OPT_INT, &save_every, "N", "save the adapter every N iterations (default 100)", NULL, "[1,1000000000]" },
        { "test", 0, QT_OPT_FLAG, &test, NULL, "evaluate on the test set (after training)" },
        { "test-batches", 0, QT_OPT_INT, &test_batches, "N", "test batches, -1 = all (default 500)", NULL, "[-1,1000000000]" },
        { "seed", 0, QT_OPT_U64, &seed, "S", "PRNG seed (default 0)" },
        { "overwrite", 0, QT_OPT_FLAG, &overwrite, NULL, "qtune: replace an existing --adapter-file when training" },
        QT_CLI_THREADS_OPT(threads),
        QT_CLI_VERBOSE_OPT(verbose),
        { 0 },
    };
    const qt_cmd_spec spec = { "lora", "[--train] [--test] [--prompt TEXT] [options]",
                               "mlx-examples lora.py's command line: --train fine-tunes, --test reports the test loss, "
                               "--prompt generates with the adapter.", opts, 0, 0 };
    char *pos[1];
    int n_pos;
    int r = qt_opts_parse(&spec, argc, argv, pos, &n_pos);
    if (r) return r > 0 ? 0 : 2;
    if (!train && !test && !prompt) {
        qt_log_error("qtune lora: nothing to do: give --train, --test or --prompt");
        return 2;
    }
    char nth[16], vb[16];
    snprintf(nth, sizeof(nth), "%d", threads);
    snprintf(vb, sizeof(vb), "%d", verbose);
    int rc = 0;
    if (train) {
        // lora.py adapts model.layers[-lora_layers:]: all of them when the model has fewer
        qt_log_set_level(0);
        qt_model *m = qt_model_load(model);
        qt_log_set_level(verbose);
        if (m && lora_layers > m->cfg.n_layer) lora_layers = m->cfg.n_layer;
        qt_model_free(m);
        args a = { 0 };
        arg(&a, "-m"); arg(&a, model);
        arg(&a, "--data"); arg(&a, data);
        arg(&a, "-o"); arg(&a, adapter);
        argf(&a, "--iters", "%d", iters);
        argf(&a, "--batch-size", "%d", batch_size);
        argf(&a, "--learning-rate", "%.9g", lr);
        // lora.py: LoRALinear(rank 8, scale 20) on q_proj and v_proj of the last lora_layers layers
        argf(&a, "--num-layers", "%d", lora_layers);
        arg(&a, "--lora-rank"); arg(&a, "8");
        arg(&a, "--lora-scale"); arg(&a, "20");
        arg(&a, "--targets"); arg(&a, "q,v");
        argf(&a, "--val-batches", "%d", val_batches);
        argf(&a, "--steps-per-report", "%d", steps_per_report);
        argf(&a, "--steps-per-eval", "%d", steps_per_eval);
        argf(&a, "--save-every", "%d", save_every);
        argf(&a, "--seed", "%llu", (unsigned long long)seed);
        arg(&a, "-t"); arg(&a, nth);
        arg(&a, "-v"); arg(&a, vb);
        if (resume_file) { arg(&a, "--resume-adapter-file"); arg(&a, resume_file); }
        if (test) { arg(&a, "--test"); argf(&a, "--test-batches", "%d", test_batches); }
        if (overwrite) arg(&a, "--overwrite");
        if (!add_eos) qt_log_warn("--add-eos-token 0: qtune always ends a text record with EOS");
        rc = qt_cmd_train(a.n, a.v);
        args_free(&a);
    } else if (test) {
        args a = { 0 };
        arg(&a, "-m"); arg(&a, model);
        arg(&a, "--adapter"); arg(&a, adapter);
        arg(&a, "--data"); arg(&a, data);
        arg(&a, "--split"); arg(&a, "test");
        argf(&a, "--batch-size", "%d", batch_size);
        argf(&a, "--max-batches", "%d", test_batches);
        arg(&a, "-t"); arg(&a, nth);
        arg(&a, "-v"); arg(&a, vb);
        rc = qt_cmd_eval(a.n, a.v);
        args_free(&a);
    }
    if (rc == 0 && prompt) {
        args a = { 0 };
        arg(&a, "-m"); arg(&a, model);
        arg(&a, "--adapter"); arg(&a, adapter);
        argf(&a, "--max-tokens", "%d", max_tokens);
        argf(&a, "--temp", "%.9g", temp);
        argf(&a, "--seed", "%llu", (unsigned long long)seed);
        arg(&a, "--show-prompt");
        arg(&a, "-p"); arg(&a, prompt);
        arg(&a, "-t"); arg(&a, nth);
        arg(&a, "-v"); arg(&a, vb);
        rc = qt_cmd_generate(a.n, a.v);
        args_free(&a);
    }
    return rc;
}
