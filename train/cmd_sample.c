/* lowbit sample CHECKPOINT --prompt TEXT [--tokens N] [--temperature T] [--top-k K] [--seed S] [--threads N]
 * `lowbit generate` (train/cmd_generate.c) with a fallback: a model the
 * runtime cannot pack is sampled with the training-time forward. */
#include "cli.h"

int cmd_sample(int argc, char **argv) { return cli_generate("sample", argc, argv, 1); }
