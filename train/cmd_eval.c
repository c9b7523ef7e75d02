/* lowbit eval CHECKPOINT [--batches N] [--set key=value ...]
 * Validation loss and perplexity of a checkpoint on the data its config names. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "data/batch.h"
#include "interop/gguf_model.h"
#include "trainer/trainer.h"

static const char EVAL_USAGE[] =
    "usage: lowbit eval CHECKPOINT [--batches N] [--set key=value ...]\n"
    "\n"
    "Validation loss and perplexity of a checkpoint (a file, or the newest in a run directory),\n"
    "on the validation split of the data its stored config names, tokenized with the model's\n"
    "own tokenizer (the one stored in the checkpoint). --set changes that config,\n"
    "e.g. --set data.path=other.txt. --batches N overrides eval.batches.\n"
    "\n"
    "A .gguf file (lowbit export) is evaluated with its own weights and tokenizer on the data of\n"
    "the config stored in it (lowbit.config; the defaults when it has none), changed by --set.\n";

/* The validation loss of a model read from a GGUF file, on the data `cfg` names, with the
   same batches as lb_trainer_evaluate. */
static int eval_gguf(const char *path, int argc, char **argv, int batches) {
    lb_config cfg;
    lb_tokenizer *tok;
    lb_model *model;
    if (lb_gguf_model_load(path, &cfg, NULL, &tok, &model) != LB_OK) return cli_fail(NULL);
    lb_corpus corpus = {0};
    lb_dataset data = {0};
    lb_graph g;
    int graph_ok = 0, rc = LB_EXIT_OK;
    int *inputs = NULL, *targets = NULL;
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--set") && lb_config_set(&cfg, argv[++i]) != LB_OK) {
            rc = cli_fail(NULL);
            goto done;
        }
    if (!batches) batches = cfg.eval.batches;
    const lb_data_config *d = &cfg.data;
    const char *paths[LB_CONFIG_MAX_PATHS];
    for (int i = 0; i < d->n_paths; i++) paths[i] = d->paths[i];
    int B = cfg.train.batch_size, T = cfg.train.seq_len;
    if (T > model->cfg.max_seq_len) T = model->cfg.max_seq_len;
    if ((d->n_paths > 0 ? lb_corpus_load(&corpus, paths, d->n_paths) : lb_corpus_load_path(&corpus, d->path)) != LB_OK ||
        lb_dataset_build(&data, &corpus, tok, d->val_fraction) != LB_OK || lb_graph_init(&g, 0) != LB_OK) {
        rc = cli_fail(path);
        goto done;
    }
    graph_ok = 1;
    g.precision = lb_gemm_precision_resolve(cfg.train.gemm_precision);
    g.attn_precision = lb_attention_precision_resolve(cfg.train.attention_precision, g.precision);
    lb_graph_set_grad(&g, 0);
    inputs = malloc((size_t)B * T * sizeof *inputs);
    targets = malloc((size_t)B * T * sizeof *targets);
    double sum = 0.0;
    for (int i = 0; i < batches && inputs && targets; i++) {
        lb_graph_reset(&g);
        lb_tensor *l = lb_val_batch(&data, B, T, i, batches, inputs, targets) == LB_OK
                           ? lb_model_forward(model, &g, inputs, B, T, targets, NULL)
                           : NULL;
        if (!l) {
            rc = cli_fail(path);
            goto done;
        }
        sum += l->data[0];
    }
    if (!inputs || !targets) {
        fprintf(stderr, "lowbit eval: out of memory\n");
        rc = LB_EXIT_FAILURE;
        goto done;
    }
    float loss = (float)(sum / batches);
    printf("%s: validation loss %.4f, perplexity %.3f (%d batches of %dx%d tokens)\n", path, loss, exp(loss), batches,
           B, T);
done:
    free(inputs);
    free(targets);
    if (graph_ok) lb_graph_free(&g);
    lb_dataset_free(&data);
    lb_corpus_free(&corpus);
    lb_model_free(model);
    lb_tokenizer_free(tok);
    return rc;
}

int cmd_eval(int argc, char **argv) {
    const char *path = NULL;
    int batches = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(EVAL_USAGE, stdout);
            return LB_EXIT_OK;
        }
        if (!strcmp(argv[i], "--batches") || !strcmp(argv[i], "--set")) {
            if (++i >= argc) {
                fprintf(stderr, "lowbit eval: %s needs a value\n", argv[i - 1]);
                return LB_EXIT_USAGE;
            }
            if (argv[i - 1][2] == 'b' && (batches = atoi(argv[i])) < 1) {
                fprintf(stderr, "lowbit eval: --batches expects a positive integer, got '%s'\n", argv[i]);
                return LB_EXIT_USAGE;
            }
            continue;
        }
        if (argv[i][0] == '-' || path) {
            fprintf(stderr, "lowbit eval: unexpected argument '%s'\n\n%s", argv[i], EVAL_USAGE);
            return LB_EXIT_USAGE;
        }
        path = argv[i];
    }
    if (!path) {
        fprintf(stderr, "lowbit eval: no checkpoint given\n\n%s", EVAL_USAGE);
        return LB_EXIT_USAGE;
    }

    size_t len = strlen(path);
    if (len > 5 && !strcmp(path + len - 5, ".gguf")) return eval_gguf(path, argc, argv, batches);

    /* The stored config rebuilds the data pipeline; the weights come from the file. */
    lb_config cfg;
    if (lb_load_checkpoint_config(path, &cfg) != LB_OK) return cli_fail(NULL);
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--set") && lb_config_set(&cfg, argv[++i]) != LB_OK) return cli_fail(NULL);
    /* The weights and the model's own tokenizer come in through train.init_from. */
    if ((size_t)snprintf(cfg.train.init_from, sizeof cfg.train.init_from, "%s", path) >= sizeof cfg.train.init_from) {
        fprintf(stderr, "lowbit eval: checkpoint path too long\n");
        return LB_EXIT_USAGE;
    }
    if (lb_config_validate(&cfg) != LB_OK) return cli_fail(NULL);

    int64_t step;
    if (lb_load_checkpoint_step(path, &step) != LB_OK) return cli_fail(NULL);
    lb_trainer t;
    if (lb_trainer_init(&t, &cfg) != LB_OK) return cli_fail(NULL);
    int rc = LB_EXIT_OK;
    float loss;
    if (lb_trainer_evaluate(&t, batches ? batches : cfg.eval.batches, &loss) != LB_OK) {
        rc = cli_fail(NULL);
    } else {
        printf("checkpoint at step %lld: validation loss %.4f, perplexity %.3f (%d batches of %dx%d tokens)\n",
               (long long)step, loss, exp(loss), batches ? batches : cfg.eval.batches, cfg.train.batch_size,
               cfg.train.seq_len);
    }
    lb_trainer_free(&t);
    return rc;
}
