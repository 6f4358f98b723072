// cmd-convert.c: `qtune convert HF_DIR -o OUT.gguf`: a Hugging Face
// Llama/Mistral/Qwen2 folder to a GGUF file with llama.cpp's names, q/k rows
// in GGUF order and the tokenizer metadata (export.h), as
// convert_hf_to_gguf.py does.
// With --adapter A -m MODEL it converts an adapter instead, to the form --to
// names (peft, mlx, npz, gguf) or, without --to, the one OUT's name implies:
// a .gguf (llama.cpp GGUF LoRA), an .npz (lora.py), a .safetensors (mlx-lm),
// else a PEFT folder.
#include <stdio.h>
#include <string.h>

#include "base/base.h"
#include "cli.h"
#include "common.h"
#include "model/export.h"
#include "model/lora-io.h"

static bool ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

static int convert_adapter(const char *model, const char *adapter, const char *out, const char *to) {
    // the output path for the form asked for
    char *path = NULL;
    size_t n = strlen(out) + 32;
    path = qt_malloc(n);
    snprintf(path, n, "%s", out);
    if (to) {
        if (!strcmp(to, "mlx") && !ends_with(out, ".safetensors")) snprintf(path, n, "%s/adapters.safetensors", out);
        else if (!strcmp(to, "npz") && !ends_with(out, ".npz")) snprintf(path, n, "%s/adapters.npz", out);
        else if (!strcmp(to, "gguf") && !ends_with(out, ".gguf")) {
            qt_log_error("qtune convert: --to gguf writes a file: give -o NAME.gguf");
            qt_free(path);
            return 2;
        } else if (!strcmp(to, "peft") && qt_lora_format_of(out) != QT_LORA_FMT_PEFT) {
            qt_log_error("qtune convert: --to peft writes a folder: give -o DIR (not %s)", out);
            qt_free(path);
            return 2;
        } else if (strcmp(to, "mlx") && strcmp(to, "npz") && strcmp(to, "gguf") && strcmp(to, "peft")) {
            qt_log_error("qtune convert: --to must be peft, mlx, npz or gguf, not '%s'", to);
            qt_free(path);
            return 2;
        }
    }
    qt_model *m = qt_cli_load_model(model, NULL, false);
    float scale = 1;
    qt_lora *l = m ? qt_cli_load_adapter(m, adapter, &scale) : NULL;
    int rc = 1;
    if (l) {
        if (scale != 1) qt_log_warn("the :SCALE of --adapter is not stored; apply it when loading");
        rc = qt_lora_save(l, m, path) == QT_OK ? 0 : 1;
        if (!rc) qt_log_info("wrote %s (%s)", path, qt_lora_format_name(qt_lora_format_of(path)));
    }
    qt_free(path);
    qt_lora_free(l);
    qt_model_free(m);
    return rc;
}

int qt_cmd_convert(int argc, char **argv) {
    const char *out = NULL, *type = "f16", *tok_path = NULL, *name = NULL, *adapter = NULL, *model = NULL, *to = NULL;
    int verbose = 1;
    const qt_opt opts[] = {
        { "output", 'o', QT_OPT_STR, &out, "OUT.gguf", "where to write the GGUF file" },
        { "type", 0, QT_OPT_STR, &type, "T", "f32|f16|bf16 or a quantized type (default f16)" },
        { "tokenizer", 0, QT_OPT_STR, &tok_path, "PATH", "vocabulary from this .gguf instead of tokenizer.json" },
        { "name", 0, QT_OPT_STR, &name, "TEXT", "general.name (default: the folder name)" },
        { "adapter", 'a', QT_OPT_STR, &adapter, "PATH", "convert this adapter (PEFT, mlx-lm, lora.py .npz, GGUF LoRA) instead; needs -m",
          "--adapter-path --adapter-file --lora" },
        { "to", 0, QT_OPT_STR, &to, "FORM", "with --adapter: peft | mlx | npz | gguf (default: from OUT's name)" },
        { "model", 'm', QT_OPT_STR, &model, "PATH", "the adapter's base model (with --adapter)" },
        QT_CLI_VERBOSE_OPT(verbose),
        { 0 },
    };
    const qt_cmd_spec spec = { "convert", "HF_DIR -o OUT.gguf [--type f16]  |  -m MODEL --adapter A -o OUT [--to peft|mlx|npz|gguf]",
                               "Convert a Hugging Face model folder to GGUF (tokenizer.json or tokenizer.model), or an "
                               "adapter between PEFT, mlx-lm, lora.py and GGUF LoRA.", opts, 0, 1 };
    char *pos[1];
    int n_pos;
    int r = qt_opts_parse(&spec, argc, argv, pos, &n_pos);
    if (r) return r > 0 ? 0 : 2;
    qt_log_set_level(verbose);
    if (adapter) {
        if (!model || !out || n_pos) {
            qt_log_error("qtune convert: --adapter needs -m MODEL and -o OUT, and no HF_DIR");
            return 2;
        }
        return convert_adapter(model, adapter, out, to);
    }
    if (n_pos != 1) {
        qt_log_error("qtune convert: give the Hugging Face folder to convert (or --adapter)");
        return 2;
    }
    qt_export_params p = qt_export_defaults();
    if (!out || (p.type = qt_type_from_name(type)) < 0) {
        qt_log_error("qtune convert: -o OUT.gguf is required and --type must be a known type");
        return 2;
    }
    p.tokenizer_gguf = tok_path;
    p.name = name;
    qt_model *m = qt_model_load(pos[0]);
    if (!m) return 1;
    int rc = 1;
    if (m->gguf) qt_log_error("%s: already a GGUF file (use qtune quantize to change its types)", pos[0]);
    else if (qt_export_gguf(m, &p, out) == QT_OK) rc = 0;
    if (!rc) qt_log_info("wrote %s", out);
    qt_model_free(m);
    return rc;
}
