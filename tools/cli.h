// cli.h: the `qtune <command>` front end. One file per command; options are
// declared as tables and parsed by opts.c. Only tools/ turns a status into an
// exit code.
#ifndef QT_CLI_H
#define QT_CLI_H

#include <stdbool.h>
#include <stdint.h>

// QT_OPT_STRS2: a repeatable option taking two values (llama.cpp's
// `--lora-scaled FILE SCALE`), stored into the same qt_opt_strs as v / arg2.
typedef enum { QT_OPT_STR, QT_OPT_INT, QT_OPT_FLOAT, QT_OPT_U64, QT_OPT_FLAG, QT_OPT_STRS, QT_OPT_STRS2 } qt_opt_kind;

// Destination of a repeatable option (QT_OPT_STRS): every value in order;
// arg2[i] is the second value of a QT_OPT_STRS2 entry, else NULL.
#define QT_OPT_MAX_REPEAT 8
typedef struct {
    const char *v[QT_OPT_MAX_REPEAT];
    int n;
    const char *arg2[QT_OPT_MAX_REPEAT];
} qt_opt_strs;

typedef struct {
    const char *name;      // long name without dashes: "temp"
    char short_name;       // 'm', or 0
    qt_opt_kind kind;
    void *dst;             // const char **, int *, float *, uint64_t *, bool *, qt_opt_strs *
    const char *metavar;   // "N", "PATH" (NULL for flags)
    const char *help;
    // Other spellings, space-separated, each with its dashes, as the tools
    // these users come from write them: "--lora-layers", "-sys --system-prompt".
    const char *aliases;
    // Numbers: the accepted interval, "[0,1]", "(0,1]", "[1,inf)" (checked
    // after the strict parse); NULL: any finite value.
    const char *range;
} qt_opt;

typedef struct {
    const char *name;       // "generate"
    const char *synopsis;   // usage line after "qtune generate "
    const char *summary;    // one line for `qtune --help`
    const qt_opt *opts;     // terminated by an entry with name == NULL
    int min_pos, max_pos;   // positional argument counts
} qt_cmd_spec;

// Parses argv (after the command name). Fills option destinations and pos[]
// (borrowed from argv). Long names also match with '_' for '-'. Returns 0 to
// go on, 1 when --help was printed, or -1 after printing one error line that
// names the bad flag or value (an unknown flag gets the closest known one as a
// "did you mean").
int qt_opts_parse(const qt_cmd_spec *spec, int argc, char **argv, char **pos, int *n_pos);
void qt_opts_usage(const qt_cmd_spec *spec);

// `--config FILE` (or `-c FILE`, mlx_lm.lora's spelling): a JSON object or a
// YAML mapping (mlx-lm's lora_config.yaml) whose keys are option names
// ("iters", "learning-rate" or "learning_rate") becomes options placed before
// the command line's, so flags given on the command line win. true -> the
// flag, false / null -> nothing, lists -> comma-joined; mlx-lm's nested
// lora_parameters {rank, alpha, scale, dropout, keys} and lr_schedule {name,
// warmup} map to the --lora-* / --lr-schedule options. *out_argv is malloc'd
// (free with qt_opts_free_config). Returns 0, or -1 after one error line
// naming the file and the key.
int qt_opts_expand_config(const char *cmd, int argc, char **argv, int *out_argc, char ***out_argv);
void qt_opts_free_config(int argc, char **argv);

// Commands: each returns the process exit code.
int qt_cmd_generate(int argc, char **argv);
int qt_cmd_info(int argc, char **argv);
int qt_cmd_bench(int argc, char **argv);
int qt_cmd_tokenize(int argc, char **argv);
int qt_cmd_train(int argc, char **argv);
int qt_cmd_lora(int argc, char **argv);
int qt_cmd_chat(int argc, char **argv);
int qt_cmd_serve(int argc, char **argv);
int qt_cmd_fuse(int argc, char **argv);
int qt_cmd_quantize(int argc, char **argv);
int qt_cmd_convert(int argc, char **argv);
int qt_cmd_eval(int argc, char **argv);
int qt_cmd_data(int argc, char **argv);
int qt_cmd_report(int argc, char **argv);

// The closest of n names to s by edit distance (Damerau-Levenshtein with
// transpositions), or NULL when none is close enough to be a likely typo.
const char *qt_cli_closest(const char *s, const char *const *names, int n);

#endif
