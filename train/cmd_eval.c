/* lowbit eval CHECKPOINT [--batches N] [--set key=value ...]
 * Validation loss and perplexity of a checkpoint on the data its config names. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "trainer/trainer.h"

static const char EVAL_USAGE[] =
    "usage: lowbit eval CHECKPOINT [--batches N] [--set key=value ...]\n"
    "\n"
    "Validation loss and perplexity of a checkpoint (a file, or the newest in a run directory),\n"
    "on the validation split of the data its stored config names. --set changes that config,\n"
    "e.g. --set data.path=other.txt. --batches N overrides eval.batches.\n";

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

    /* The stored config rebuilds the data pipeline; the weights come from the file. */
    lb_config cfg;
    if (lb_load_checkpoint_config(path, &cfg) != LB_OK) return cli_fail(NULL);
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--set") && lb_config_set(&cfg, argv[++i]) != LB_OK) return cli_fail(NULL);
    cfg.train.init_from[0] = '\0';
    if (lb_config_validate(&cfg) != LB_OK) return cli_fail(NULL);

    lb_trainer t;
    if (lb_trainer_init(&t, &cfg) != LB_OK) return cli_fail(NULL);
    int rc = LB_EXIT_OK;
    float loss;
    if (lb_trainer_resume(&t, path) != LB_OK || lb_trainer_evaluate(&t, batches ? batches : cfg.eval.batches, &loss) != LB_OK) {
        rc = cli_fail(NULL);
    } else {
        printf("checkpoint at step %lld: validation loss %.4f, perplexity %.3f (%d batches of %dx%d tokens)\n",
               (long long)t.step, loss, exp(loss), batches ? batches : cfg.eval.batches, cfg.train.batch_size,
               cfg.train.seq_len);
    }
    lb_trainer_free(&t);
    return rc;
}
