/* lowbit: train, evaluate and sample BitNet / QAT transformers.
 * One file per subcommand (cmd_*.c); this file only dispatches. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "core/error.h"

static const char USAGE[] =
    "usage: lowbit <command> [options]\n"
    "\n"
    "commands:\n"
    "  train CONFIG [--set key=value ...] [--resume DIR|FILE]\n"
    "                         train a model from a YAML config (or resume a run)\n"
    "  eval CHECKPOINT        validation loss and perplexity of a checkpoint\n"
    "  sample CHECKPOINT --prompt TEXT [--tokens N] [--temperature T] [--top-k K]\n"
    "                         generate text\n"
    "\n"
    "options:\n"
    "  -h, --help             this help; `lowbit <command> --help` for a command\n"
    "  --version              print the version\n"
    "\n"
    "exit codes: 0 success, 1 runtime failure, 2 usage or configuration error\n"
    "see README.md and docs/ for configs, checkpoints and formats\n";

int cli_fail(const char *what) {
    lb_status s = lb_errcode();
    if (what && *what)
        fprintf(stderr, "lowbit: %s: %s\n", what, lb_errmsg());
    else
        fprintf(stderr, "lowbit: %s\n", lb_errmsg());
    return s == LB_ECONFIG ? LB_EXIT_USAGE : LB_EXIT_FAILURE;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fputs(USAGE, stderr);
        return LB_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        fputs(USAGE, stdout);
        return LB_EXIT_OK;
    }
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
        printf("lowbit %s\n", LOWBIT_VERSION);
        return LB_EXIT_OK;
    }
    if (!strcmp(cmd, "train")) return cmd_train(argc - 1, argv + 1);
    if (!strcmp(cmd, "eval")) return cmd_eval(argc - 1, argv + 1);
    if (!strcmp(cmd, "sample")) return cmd_sample(argc - 1, argv + 1);
    fprintf(stderr, "lowbit: unknown command '%s'\n\n%s", cmd, USAGE);
    return LB_EXIT_USAGE;
}
