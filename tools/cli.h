// cli.h: the `qtune <command>` front end. One file per command; options are
// declared as tables and parsed by opts.c. Only tools/ turns a status into an
// exit code.
#ifndef QT_CLI_H
#define QT_CLI_H

#include <stdbool.h>
#include <stdint.h>

typedef enum { QT_OPT_STR, QT_OPT_INT, QT_OPT_FLOAT, QT_OPT_U64, QT_OPT_FLAG, QT_OPT_STRS } qt_opt_kind;

// Destination of a repeatable option (QT_OPT_STRS): every value in order.
#define QT_OPT_MAX_REPEAT 8
typedef struct {
    const char *v[QT_OPT_MAX_REPEAT];
    int n;
} qt_opt_strs;

typedef struct {
    const char *name;      // long name without dashes: "temp"
    char short_name;       // 'm', or 0
    qt_opt_kind kind;
    void *dst;             // const char **, int *, float *, uint64_t *, bool *, qt_opt_strs *
    const char *metavar;   // "N", "PATH" (NULL for flags)
    const char *help;
} qt_opt;

typedef struct {
    const char *name;       // "generate"
    const char *synopsis;   // usage line after "qtune generate "
    const char *summary;    // one line for `qtune --help`
    const qt_opt *opts;     // terminated by an entry with name == NULL
    int min_pos, max_pos;   // positional argument counts
} qt_cmd_spec;

// Parses argv (after the command name). Fills option destinations and pos[]
// (borrowed from argv). Returns 0 to go on, 1 when --help was printed, or -1
// after printing one error line that names the bad flag or value.
int qt_opts_parse(const qt_cmd_spec *spec, int argc, char **argv, char **pos, int *n_pos);
void qt_opts_usage(const qt_cmd_spec *spec);

// `--config FILE`: a JSON object whose keys are option names ("iters",
// "learning-rate" or "learning_rate") becomes options placed before the
// command line's, so flags given on the command line win. true -> the flag,
// false -> nothing, arrays -> comma-joined. *out_argv is malloc'd (free with
// qt_opts_free_config). Returns 0, or -1 after one error line naming the file
// and the key.
int qt_opts_expand_config(const char *cmd, int argc, char **argv, int *out_argc, char ***out_argv);
void qt_opts_free_config(int argc, char **argv);

// Commands: each returns the process exit code.
int qt_cmd_generate(int argc, char **argv);
int qt_cmd_info(int argc, char **argv);
int qt_cmd_bench(int argc, char **argv);
int qt_cmd_tokenize(int argc, char **argv);
int qt_cmd_train(int argc, char **argv);
int qt_cmd_chat(int argc, char **argv);
int qt_cmd_serve(int argc, char **argv);
int qt_cmd_fuse(int argc, char **argv);
int qt_cmd_quantize(int argc, char **argv);
int qt_cmd_convert(int argc, char **argv);
int qt_cmd_eval(int argc, char **argv);
int qt_cmd_data(int argc, char **argv);
int qt_cmd_report(int argc, char **argv);

#endif
