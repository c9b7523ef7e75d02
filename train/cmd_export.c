/* lowbit export CHECKPOINT -o model.gguf --type TYPE
 * Writes a checkpoint as a GGUF file llama.cpp loads (interop/gguf_export.h, docs/export.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "interop/gguf_export.h"
#include "trainer/trainer.h"

static const char EXPORT_USAGE[] =
    "usage: lowbit export CHECKPOINT -o MODEL.gguf [--type " LB_GGUF_EXPORT_TYPES "]\n"
    "\n"
    "Writes a checkpoint (a file, or the newest in a run directory) as a GGUF v3 file that llama.cpp\n"
    "loads: architecture bitnet for models with SubLN, llama for the others, with the tokenizer and\n"
    "the run's config. --type is the type of the weight matrices (default tq2_0); norms stay f32.\n"
    "See docs/export.md.\n";

int cmd_export(int argc, char **argv) {
    const char *path = NULL, *out = NULL, *type_name = "tq2_0";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(EXPORT_USAGE, stdout);
            return LB_EXIT_OK;
        }
        if (!strcmp(argv[i], "-o") || !strcmp(argv[i], "--type")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "lowbit export: %s needs a value\n", argv[i]);
                return LB_EXIT_USAGE;
            }
            if (argv[i][1] == 'o') out = argv[++i];
            else type_name = argv[++i];
            continue;
        }
        if (argv[i][0] == '-' || path) {
            fprintf(stderr, "lowbit export: unexpected argument '%s'\n\n%s", argv[i], EXPORT_USAGE);
            return LB_EXIT_USAGE;
        }
        path = argv[i];
    }
    if (!path || !out) {
        fprintf(stderr, "lowbit export: %s\n\n%s", path ? "no output file given (-o)" : "no checkpoint given",
                EXPORT_USAGE);
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
    if (lb_config_to_yaml(&cfg, &yaml) != LB_OK || lb_gguf_export(model, tok, yaml, type, out) != LB_OK)
        rc = cli_fail("export");
    else
        printf("wrote %s (%s)\n", out, type_name);
    free(yaml);
    lb_model_free(model);
    lb_tokenizer_free(tok);
    return rc;
}
