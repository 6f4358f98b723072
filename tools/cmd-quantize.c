// cmd-quantize.c: `qtune quantize IN.gguf OUT.gguf --type T`: re-encode a
// model's matrices in one of llama.cpp's block types, following
// llama-quantize's rules for what stays high precision (export.h).
// Does not: importance matrices, per-layer K-quant mixtures (--type q4_k is
// llama-quantize's --pure Q4_K with the output head in Q6_K).
#include <stdio.h>
#include <string.h>

#include "base/base.h"
#include "cli.h"
#include "common.h"
#include "model/export.h"

int qt_cmd_quantize(int argc, char **argv) {
    const char *type = NULL, *tok_path = NULL;
    int verbose = 1;
    const qt_opt opts[] = {
        { "type", 0, QT_OPT_STR, &type, "T", "q8_0|q4_0|q4_1|q5_0|q5_1|q4_k|q5_k|q6_k|iq4_nl|f16|bf16|f32" },
        { "tokenizer", 0, QT_OPT_STR, &tok_path, "PATH", "HF input without tokenizer.json: vocabulary from this .gguf" },
        QT_CLI_VERBOSE_OPT(verbose),
        { 0 },
    };
    const qt_cmd_spec spec = { "quantize", "IN OUT.gguf --type T",
                               "Quantize a model (GGUF or HF folder) to a llama.cpp block type.", opts, 2, 2 };
    char *pos[2];
    int n_pos;
    int r = qt_opts_parse(&spec, argc, argv, pos, &n_pos);
    if (r) return r > 0 ? 0 : 2;
    qt_log_set_level(verbose);
    qt_export_params p = qt_export_defaults();
    if (!type) {
        qt_log_error("qtune quantize: give --type T (q8_0, q4_0, q4_1, q4_k, q5_k, q6_k, iq4_nl, ...)");
        return 2;
    }
    if ((p.type = qt_type_from_name(type)) < 0) {
        qt_log_error("qtune quantize: unknown --type '%s' (q8_0, q4_0, q4_1, q4_k, q5_k, q6_k, iq4_nl, ...)", type);
        return 2;
    }
    p.tokenizer_gguf = tok_path;
    qt_model *m = qt_cli_load_model(pos[0], NULL, false);
    if (!m) return 1;
    double t0 = qt_time_s();
    int rc = qt_export_gguf(m, &p, pos[1]) == QT_OK ? 0 : 1;
    if (!rc) qt_log_info("wrote %s (%.1f s)", pos[1], qt_time_s() - t0);
    qt_model_free(m);
    return rc;
}
