/* Shared pieces of the lowbit subcommands. */
#ifndef LOWBIT_TRAIN_CLI_H
#define LOWBIT_TRAIN_CLI_H

#include "core/error.h"

/* Exit codes of every subcommand. */
enum { LB_EXIT_OK = 0, LB_EXIT_FAILURE = 1, LB_EXIT_USAGE = 2 };

int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_sample(int argc, char **argv);
int cmd_import(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_data(int argc, char **argv);
int cmd_generate(int argc, char **argv);

/* `lowbit generate` (fallback 0) and `lowbit sample` (fallback 1): text on
 * the packed runtime, train/cmd_generate.c. */
int cli_generate(const char *cmd, int argc, char **argv, int fallback);

/* Prints "lowbit: <message>" for the current error and returns the exit code
 * that fits its status (2 for configuration errors, 1 otherwise). */
int cli_fail(const char *what);

/* Progress display: an updating bar on a terminal, plain lines otherwise. */
typedef struct cli_progress {
    int tty;
    long total_steps;
    double t_start;
    long tokens_at_start;
} cli_progress;

void cli_progress_init(cli_progress *p, long total_steps, long tokens_at_start);
/* Called after each step; prints when the step is due (every step on a TTY,
 * every `interval` steps otherwise). */
void cli_progress_step(cli_progress *p, long step, long tokens_seen, float loss, float lr, int interval);
/* Ends the bar line on a TTY before other output. */
void cli_progress_break(cli_progress *p);

#endif
