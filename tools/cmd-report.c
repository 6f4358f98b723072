// cmd-report.c: `qtune report RUN_DIR`: write RUN_DIR/report.html (plots of
// loss, learning rate and speed, the configuration, final metrics) from the
// files `qtune train` writes; works while the run is still going.
#include <stdio.h>

#include "base/base.h"
#include "cli.h"
#include "common.h"
#include "train/report.h"

int qt_cmd_report(int argc, char **argv) {
    int verbose = 1;
    const qt_opt opts[] = {
        QT_CLI_VERBOSE_OPT(verbose),
        { 0 },
    };
    const qt_cmd_spec spec = { "report", "RUN_DIR",
                               "Write RUN_DIR/report.html: a self-contained page with plots of train / validation loss, "
                               "learning rate and tokens/s against steps, the run's configuration and final metrics.",
                               opts, 1, 1 };
    char *pos[1];
    int n_pos;
    int r = qt_opts_parse(&spec, argc, argv, pos, &n_pos);
    if (r) return r > 0 ? 0 : 2;
    qt_log_set_level(verbose);
    if (qt_report_write(pos[0]) != QT_OK) return 1;
    printf("%s/report.html\n", pos[0]);
    return 0;
}
