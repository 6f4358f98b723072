// main.c: `qtune <command> [options]`. Dispatches to tools/cmd-*.c.
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "backend/backend.h"
#include "dist/dist.h"
#include "kernels/kernels.h"

#ifndef QT_VERSION
#define QT_VERSION "0.1.0"
#endif

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} command;

static const command commands[] = {
    { "generate", qt_cmd_generate, "generate text from a prompt, streaming, with sampling and speed stats" },
    { "info", qt_cmd_info, "show a model's architecture, hyper-parameters, tensors and memory needs" },
    { "train", qt_cmd_train, "fine-tune a LoRA / QLoRA adapter on your JSONL data" },
    { "lora", qt_cmd_lora, "mlx-examples lora.py's command line: --train, --test, --prompt with its defaults" },
    { "eval", qt_cmd_eval, "loss, perplexity and generation scores (BLEU, ROUGE-L) on held-out data" },
    { "data", qt_cmd_data, "prepare training data from CSV/TSV/JSON (data prepare) and show token statistics (data stats)" },
    { "report", qt_cmd_report, "write an HTML report with loss / learning-rate / speed plots of a training run" },
    { "bench", qt_cmd_bench, "measure prompt processing and generation speed (tokens/s)" },
    { "tokenize", qt_cmd_tokenize, "print the token ids and pieces of a text" },
    { "chat", qt_cmd_chat, "chat with a model in the terminal or through a pipe (multi-turn, KV cache reused)" },
    { "serve", qt_cmd_serve, "OpenAI-compatible HTTP server: /v1/chat/completions, /v1/completions, /v1/models" },
    { "fuse", qt_cmd_fuse, "merge a LoRA adapter into the model and write a GGUF file" },
    { "quantize", qt_cmd_quantize, "quantize a model to a llama.cpp block type (q8_0, q4_k, ...)" },
    { "convert", qt_cmd_convert, "convert a Hugging Face model folder to GGUF" },
};

static void usage(FILE *f) {
    fprintf(f, "qtune %s: fine-tune and run Llama-family models on your own machine\n\n", QT_VERSION);
    fprintf(f, "usage: qtune <command> [options]   (qtune <command> --help for its options)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || (!strcmp(argv[1], "help") && argc < 3)) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "help")) {   // qtune help CMD == qtune CMD --help
        char *help_argv[] = { (char *)"--help", NULL };
        for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
            if (!strcmp(argv[2], commands[i].name)) return commands[i].run(1, help_argv);
        argv[1] = argv[2];   // an unknown command: the error below names it
    }
    if (!strcmp(argv[1], "--version")) {
        printf("qtune %s\n", QT_VERSION);
        printf("kernels: %s\n", qt_kernels()->isa);
        if (qt_kernels()->gemv_prefetch)
            printf("decode prefetch: %s (L1D %d KiB)\n", qt_kernels()->gemv_prefetch, qt_cpu()->l1d_kib);
        printf("mpi: %s\n", qt_dist_compiled() ? "yes (mpirun -np N qtune train ...)" : "no");
        printf("cuda: %s\n", qt_backend_cuda_built() ? "yes (--device cuda; qtune info --devices)" : "no (make CUDA=1)");
        return 0;
    }
    const char *names[sizeof(commands) / sizeof(commands[0])];
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 2, argv + 2);
        names[i] = commands[i].name;
    }
    const char *close = qt_cli_closest(argv[1], names, (int)(sizeof(names) / sizeof(names[0])));
    if (close) fprintf(stderr, "error: unknown command '%s' (did you mean %s? see qtune --help)\n", argv[1], close);
    else fprintf(stderr, "error: unknown command '%s' (see qtune --help)\n", argv[1]);
    return 2;
}
