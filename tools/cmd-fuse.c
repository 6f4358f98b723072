// cmd-fuse.c: `qtune fuse`: merge a LoRA adapter into the base weights
// (W' = W + scale * s * B A) and write one GGUF model llama.cpp can load, in
// the stored types or re-encoded to --type. Follows llama.cpp's export-lora.
// Does not: fuse several adapters at once (give one --adapter).
#include <stdio.h>
#include <string.h>

#include "base/base.h"
#include "cli.h"
#include "common.h"
#include "model/export.h"

int qt_cmd_fuse(int argc, char **argv) {
    const char *model = NULL, *adapter = NULL, *out = NULL, *type = NULL, *tok_path = NULL, *name = NULL;
    int verbose = 1;
    const qt_opt opts[] = {
        { "model", 'm', QT_OPT_STR, &model, "PATH", "base model: .gguf file or Hugging Face folder" },
        { "adapter", 'a', QT_OPT_STR, &adapter, "PATH[:SCALE]", "LoRA adapter (PEFT or mlx-lm folder, lora.py .npz, GGUF LoRA file)",
          "--adapter-path --adapter-file --lora" },
        { "output", 'o', QT_OPT_STR, &out, "OUT.gguf", "where to write the fused model" },
        { "type", 0, QT_OPT_STR, &type, "T", "f32|f16|bf16|q8_0|q4_0|q4_1|q4_k|q5_k|q6_k|iq4_nl (default: as stored)" },
        { "tokenizer", 0, QT_OPT_STR, &tok_path, "PATH", "HF base without tokenizer.json: vocabulary from this .gguf" },
        { "name", 0, QT_OPT_STR, &name, "TEXT", "general.name of the output" },
        QT_CLI_VERBOSE_OPT(verbose),
        { 0 },
    };
    const qt_cmd_spec spec = { "fuse", "-m MODEL --adapter A -o OUT.gguf [--type T]",
                               "Merge a LoRA adapter into the model and write a GGUF file.", opts, 0, 0 };
    char *pos[1];
    int n_pos;
    int r = qt_opts_parse(&spec, argc, argv, pos, &n_pos);
    if (r) return r > 0 ? 0 : 2;
    qt_log_set_level(verbose);
    if (!model || !adapter || !out) {
        qt_log_error("qtune fuse: -m MODEL, --adapter A and -o OUT.gguf are required");
        return 2;
    }
    qt_export_params p = qt_export_defaults();
    if (type && (p.type = qt_type_from_name(type)) < 0) {
        qt_log_error("qtune fuse: unknown --type '%s'", type);
        return 2;
    }
    p.tokenizer_gguf = tok_path;
    p.name = name;
    int rc = 1;
    qt_model *m = qt_cli_load_model(model, NULL, false);
    qt_lora *l = m ? qt_cli_load_adapter(m, adapter, &p.lora_scale) : NULL;
    if (l) {
        p.lora = l;
        double t0 = qt_time_s();
        if (qt_export_gguf(m, &p, out) == QT_OK) {
            qt_log_info("wrote %s (%.1f s)", out, qt_time_s() - t0);
            rc = 0;
        }
    }
    qt_lora_free(l);
    qt_model_free(m);
    return rc;
}
