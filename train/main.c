/* lowbit: train, evaluate and sample BitNet / QAT transformers.
 * One file per subcommand (cmd_*.c); this file only dispatches. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "core/error.h"

/* The subcommands: one file each (cmd_*.c), one row each here. */
typedef struct cli_command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help; /* its lines under "commands:" in the usage text */
} cli_command;

static const cli_command COMMANDS[] = {
    {"train", cmd_train,
     "  train CONFIG [--set key=value ...] [--resume DIR|FILE]\n"
     "                         train a model from a YAML config (or resume a run)\n"},
    {"eval", cmd_eval, "  eval CHECKPOINT|MODEL.gguf\n                         validation loss and perplexity of a checkpoint or GGUF file\n"},
    {"data", cmd_data,
     "  data prepare INPUT... -o DIR --tokenizer byte|char|bpe|FILE.json [--threads N] ...\n"
     "                         tokenize text into token shards (data.shards)\n"},
    {"sample", cmd_sample,
     "  sample CHECKPOINT --prompt TEXT [--tokens N] [--temperature T] [--top-k K]\n"
     "                         [--seed S] [--threads N]\n"
     "                         generate text (the training-time forward when the runtime\n"
     "                         cannot pack the model)\n"},
    {"generate", cmd_generate,
     "  generate CHECKPOINT --prompt TEXT [--tokens N] [--temperature T] [--top-k K]\n"
     "                         [--seed S] [--threads N]\n"
     "                         generate text on the packed runtime, with tokens/s\n"},
    {"import", cmd_import,
     "  import hf DIR -o FILE.h5\n"
     "                         a Hugging Face Llama or BitNet model directory into a checkpoint\n"},
    {"quantize", cmd_quantize,
     "  quantize CHECKPOINT -o OUT.h5 --spec SPEC [--method rtn|gptq] [--calib N] [--act-order]\n"
     "                         [--damp F] [--block N] [--layers attn,ffn,head]\n"
     "                         post-training quantization of the linear layers\n"},
    {"export", cmd_export,
     "  export CHECKPOINT -o MODEL.gguf [--type tq2_0|tq1_0|q8_0|q4_0|f16|f32]\n"
     "                         write a GGUF file llama.cpp runs\n"
     "  export CHECKPOINT -o DIR --format safetensors [--dtype f32|bf16] [--bitnet-packed]\n"
     "                         a Hugging Face model directory\n"},
};
enum { N_COMMANDS = sizeof COMMANDS / sizeof COMMANDS[0] };

static void usage(FILE *out) {
    fputs("usage: lowbit <command> [options]\n\ncommands:\n", out);
    for (int i = 0; i < N_COMMANDS; i++) fputs(COMMANDS[i].help, out);
    fputs("\n"
          "options:\n"
          "  -h, --help             this help; `lowbit <command> --help` for a command\n"
          "  --version              print the version\n"
          "\n"
          "exit codes: 0 success, 1 runtime failure, 2 usage or configuration error\n"
          "see README.md and docs/ for configs, checkpoints and formats\n",
          out);
}

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
        usage(stderr);
        return LB_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        usage(stdout);
        return LB_EXIT_OK;
    }
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
        printf("lowbit %s\n", LOWBIT_VERSION);
        return LB_EXIT_OK;
    }
    for (int i = 0; i < N_COMMANDS; i++)
        if (!strcmp(cmd, COMMANDS[i].name)) return COMMANDS[i].run(argc - 1, argv + 1);
    fprintf(stderr, "lowbit: unknown command '%s'\n\n", cmd);
    usage(stderr);
    return LB_EXIT_USAGE;
}
