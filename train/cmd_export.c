/* lowbit export CHECKPOINT -o model.gguf --type TYPE
 * lowbit export CHECKPOINT -o DIR --format safetensors [--dtype f32|bf16] [--bitnet-packed]
 * Writes a checkpoint as a GGUF file llama.cpp loads (interop/gguf_export.h, docs/export.md),
 * or as a Hugging Face model directory (interop/hf_export.h, docs/interop.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "interop/gguf_export.h"
#include "interop/hf_export.h"
#include "interop/report.h"
#include "trainer/trainer.h"

static const char EXPORT_USAGE[] =
    "usage: lowbit export CHECKPOINT -o MODEL.gguf [--type " LB_GGUF_EXPORT_TYPES "] [--zstd LEVEL]\n"
    "       lowbit export --report CHECKPOINT\n"
    "       lowbit export CHECKPOINT -o DIR --format safetensors [--dtype f32|bf16] [--bitnet-packed]\n"
    "\n"
    "Writes a checkpoint (a file, or the newest in a run directory) as a GGUF v3 file that llama.cpp\n"
    "loads: architecture bitnet for models with SubLN, llama for the others, with the tokenizer and\n"
    "the run's config. --type is the type of the weight matrices (default tq2_0); norms stay f32.\n"
    "--zstd LEVEL also writes MODEL.gguf.zst, the file compressed with zstd (`zstd -d` restores it).\n"
    "--report prints, per tensor and in total, the bits per weight of every type, the entropy of\n"
    "its codes and its size after zstd. See docs/export.md.\n"
    "--format safetensors writes a Hugging Face model directory DIR (which must not exist):\n"
    "LlamaForCausalLM for models without SubLN and fp32 projections, BitNetForCausalLM for b1.58\n"
    "models with SubLN; --dtype is the float tensors' type (default f32); --bitnet-packed packs\n"
    "ternary weights four to a byte with a weight_scale, as bitnet-b1.58-2B-4T. See docs/interop.md.\n";

/* --format safetensors: a Hugging Face model directory. */
static int export_safetensors(const char *path, const char *out, lb_dtype dtype, int packed) {
    lb_config cfg;
    lb_tokenizer *tok;
    lb_model *model;
    if (lb_load_checkpoint_model(path, &cfg, &tok, &model) != LB_OK) return cli_fail(NULL);
    lb_hf_export_options o = {.dtype = dtype, .packed = packed};
    int rc = LB_EXIT_OK;
    if (lb_hf_export(model, tok, out, &o) != LB_OK) rc = cli_fail("export");
    else printf("wrote %s (Hugging Face safetensors, %s%s)\n", out, lb_dtype_info(dtype)->name, packed ? ", packed" : "");
    lb_model_free(model);
    lb_tokenizer_free(tok);
    return rc;
}

int cmd_export(int argc, char **argv) {
    const char *path = NULL, *out = NULL, *type_name = "tq2_0", *format = "gguf";
    int report = 0, zstd_level = 0, packed = 0;
    lb_dtype hf_dtype = LB_DT_F32;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(EXPORT_USAGE, stdout);
            return LB_EXIT_OK;
        }
        if (!strcmp(argv[i], "--report")) {
            report = 1;
            continue;
        }
        if (!strcmp(argv[i], "--bitnet-packed")) {
            packed = 1;
            continue;
        }
        if (!strcmp(argv[i], "--format") || !strcmp(argv[i], "--dtype")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "lowbit export: %s needs a value\n", argv[i]);
                return LB_EXIT_USAGE;
            }
            const char *opt = argv[i++];
            if (!strcmp(opt, "--format")) {
                format = argv[i];
                if (strcmp(format, "gguf") && strcmp(format, "safetensors")) {
                    fprintf(stderr, "lowbit export: --format expects gguf or safetensors, got '%s'\n", format);
                    return LB_EXIT_USAGE;
                }
            } else if (lb_dtype_by_name(argv[i], &hf_dtype) != LB_OK || (hf_dtype != LB_DT_F32 && hf_dtype != LB_DT_BF16)) {
                fprintf(stderr, "lowbit export: --dtype expects f32 or bf16, got '%s'\n", argv[i]);
                return LB_EXIT_USAGE;
            }
            continue;
        }
        if (!strcmp(argv[i], "-o") || !strcmp(argv[i], "--type") || !strcmp(argv[i], "--zstd")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "lowbit export: %s needs a value\n", argv[i]);
                return LB_EXIT_USAGE;
            }
            const char *opt = argv[i++];
            if (!strcmp(opt, "-o")) {
                out = argv[i];
            } else if (!strcmp(opt, "--type")) {
                type_name = argv[i];
            } else if ((zstd_level = atoi(argv[i])) < 1 || zstd_level > 22) {
                fprintf(stderr, "lowbit export: --zstd expects a level 1..22, got '%s'\n", argv[i]);
                return LB_EXIT_USAGE;
            }
            continue;
        }
        if (argv[i][0] == '-' || path) {
            fprintf(stderr, "lowbit export: unexpected argument '%s'\n\n%s", argv[i], EXPORT_USAGE);
            return LB_EXIT_USAGE;
        }
        path = argv[i];
    }
    if (!path || (!out && !report)) {
        fprintf(stderr, "lowbit export: %s\n\n%s", path ? "no output file given (-o)" : "no checkpoint given",
                EXPORT_USAGE);
        return LB_EXIT_USAGE;
    }
    if (!strcmp(format, "safetensors")) {
        if (report || zstd_level) {
            fprintf(stderr, "lowbit export: --report and --zstd are options of the gguf format\n");
            return LB_EXIT_USAGE;
        }
        if (!out) {
            fprintf(stderr, "lowbit export: no output directory given (-o)\n\n%s", EXPORT_USAGE);
            return LB_EXIT_USAGE;
        }
        return export_safetensors(path, out, hf_dtype, packed);
    }
    if (packed || hf_dtype != LB_DT_F32) {
        fprintf(stderr, "lowbit export: --dtype and --bitnet-packed are options of --format safetensors\n");
        return LB_EXIT_USAGE;
    }
    lb_dtype type;
    if (lb_gguf_export_type(type_name, &type) != LB_OK) return cli_fail("export");

    lb_config cfg;
    lb_tokenizer *tok;
    lb_model *model;
    if (lb_load_checkpoint_model(path, &cfg, &tok, &model) != LB_OK) return cli_fail(NULL);
    char *yaml = NULL;
    int rc = LB_EXIT_OK;
    if (report && lb_export_report(model, stdout) != LB_OK) rc = cli_fail("export --report");
    if (rc == LB_EXIT_OK && out) {
        if (lb_config_to_yaml(&cfg, &yaml) != LB_OK || lb_gguf_export(model, tok, yaml, type, out) != LB_OK) {
            rc = cli_fail("export");
        } else {
            printf("wrote %s (%s)\n", out, type_name);
            if (zstd_level) {
                size_t n_in, n_out, len = strlen(out);
                char *zpath = malloc(len + 5);
                if (!zpath) return cli_fail("export");
                memcpy(zpath, out, len);
                memcpy(zpath + len, ".zst", 5);
                if (lb_zstd_compress_file(out, zpath, zstd_level, &n_in, &n_out) != LB_OK)
                    rc = cli_fail("export --zstd");
                else
                    printf("wrote %s (zstd level %d: %zu -> %zu bytes, %.1f%%)\n", zpath, zstd_level, n_in, n_out,
                           100.0 * (double)n_out / (double)n_in);
                free(zpath);
            }
        }
    }
    free(yaml);
    lb_model_free(model);
    lb_tokenizer_free(tok);
    return rc;
}
