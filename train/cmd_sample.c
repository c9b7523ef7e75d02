/* lowbit sample CHECKPOINT --prompt TEXT [--tokens N] [--temperature T] [--top-k K] [--seed S] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "layers/sample.h"
#include "trainer/trainer.h"

static const char SAMPLE_USAGE[] =
    "usage: lowbit sample CHECKPOINT --prompt TEXT [--tokens N] [--temperature T] [--top-k K] [--seed S]\n"
    "\n"
    "Generates N tokens (default 200) after TEXT with the model of a checkpoint (a file, or the\n"
    "newest in a run directory). Temperature 0 is greedy; top-k 0 keeps every token.\n"
    "Defaults: temperature 0.8, top-k 40, seed 1.\n";

static int parse_number(const char *opt, const char *text, double lo, double hi, double *out) {
    char *end;
    double v = strtod(text, &end);
    if (end == text || *end || v < lo || v > hi) {
        fprintf(stderr, "lowbit sample: %s expects a number in [%g, %g], got '%s'\n", opt, lo, hi, text);
        return 0;
    }
    *out = v;
    return 1;
}

int cmd_sample(int argc, char **argv) {
    const char *path = NULL, *prompt = NULL;
    double n_new = 200, temperature = 0.8, top_k = 40, seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(SAMPLE_USAGE, stdout);
            return LB_EXIT_OK;
        }
        int takes_value = !strcmp(a, "--prompt") || !strcmp(a, "--tokens") || !strcmp(a, "--temperature") ||
                          !strcmp(a, "--top-k") || !strcmp(a, "--seed");
        if (takes_value && i + 1 >= argc) {
            fprintf(stderr, "lowbit sample: %s needs a value\n", a);
            return LB_EXIT_USAGE;
        }
        int ok = 1;
        if (!strcmp(a, "--prompt")) prompt = argv[++i];
        else if (!strcmp(a, "--tokens")) ok = parse_number(a, argv[++i], 1, 1e6, &n_new);
        else if (!strcmp(a, "--temperature")) ok = parse_number(a, argv[++i], 0, 100, &temperature);
        else if (!strcmp(a, "--top-k")) ok = parse_number(a, argv[++i], 0, 1e9, &top_k);
        else if (!strcmp(a, "--seed")) ok = parse_number(a, argv[++i], 0, 1e18, &seed);
        else if (a[0] == '-' || path) {
            fprintf(stderr, "lowbit sample: unexpected argument '%s'\n\n%s", a, SAMPLE_USAGE);
            return LB_EXIT_USAGE;
        } else path = a;
        if (!ok) return LB_EXIT_USAGE;
    }
    if (!path || !prompt) {
        fprintf(stderr, "lowbit sample: %s\n\n%s", !path ? "no checkpoint given" : "no --prompt given", SAMPLE_USAGE);
        return LB_EXIT_USAGE;
    }

    lb_config cfg;
    lb_tokenizer *tok;
    lb_model *model;
    if (lb_load_checkpoint_model(path, &cfg, &tok, &model) != LB_OK) return cli_fail(NULL);
    int rc = LB_EXIT_OK;
    size_t len = strlen(prompt), n_prompt = 0;
    int *ids = malloc((len + (size_t)n_new + 1) * sizeof(int));
    lb_graph g;
    int graph_ok = lb_graph_init(&g, 0) == LB_OK;
    if (!ids || !graph_ok) {
        rc = cli_fail("sampling");
    } else if (lb_tokenizer_encode(tok, prompt, len, ids, &n_prompt) != LB_OK) {
        rc = cli_fail("encoding the prompt");
    } else if (n_prompt == 0) {
        fprintf(stderr, "lowbit sample: the prompt is empty\n");
        rc = LB_EXIT_USAGE;
    } else {
        lb_rng rng;
        lb_rng_init(&rng, (uint64_t)seed, LB_STREAM_SAMPLE);
        lb_graph_set_grad(&g, 0);
        if (lb_generate(model, &g, ids, (int)n_prompt, (int)n_new, (float)temperature, (int)top_k, &rng,
                        ids + n_prompt) != LB_OK) {
            rc = cli_fail("sampling");
        } else {
            char *text = lb_tokenizer_decode(tok, ids, n_prompt + (size_t)n_new, NULL);
            if (text) printf("%s\n", text);
            else rc = cli_fail("decoding");
            free(text);
        }
    }
    if (graph_ok) lb_graph_free(&g);
    free(ids);
    lb_model_free(model);
    lb_tokenizer_free(tok);
    return rc;
}
