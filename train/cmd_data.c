/* lowbit data prepare INPUT... -o DIR --tokenizer byte|char|bpe|FILE.json [options]
 * Tokenizes text files and directories into token shards (src/data/prepare.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "data/prepare.h"

static const char DATA_USAGE[] =
    "usage: lowbit data prepare INPUT... -o DIR --tokenizer byte|char|bpe|FILE.json [options]\n"
    "\n"
    "Tokenizes files and directories (a directory: its regular text files, not recursively,\n"
    "as data.path reads them) into token shards in DIR (created, or empty), with the\n"
    "tokenizer and a manifest.json; train with data.shards: DIR.\n"
    "\n"
    "  -o, --output DIR       where the shards go\n"
    "  --tokenizer KIND       byte, char, bpe (trained on the inputs, --vocab-size) or a tokenizer.json\n"
    "  --vocab-size N         bpe: the vocabulary to train to (≥ 257)\n"
    "  --val-fraction F       the end of every document held out for validation (default 0.05)\n"
    "  --threads N            tokenizing threads (default 1); the output does not depend on it\n"
    "  --format llmc|nanogpt  llm.c .bin shards (default) or nanoGPT's train.bin/val.bin (uint16)\n"
    "  --shard-tokens N       llmc: tokens per shard at most (default 100000000)\n"
    "  --quiet                no progress\n";

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* A bar on a terminal, a line per 10% otherwise. */
typedef struct prepare_progress {
    int tty, quiet, last_tenth;
    double t0;
} prepare_progress;

static void show_progress(void *ctx, uint64_t done, uint64_t total) {
    prepare_progress *p = ctx;
    if (p->quiet) return;
    double frac = total ? (double)done / (double)total : 1.0, dt = now_seconds() - p->t0;
    double mb_s = dt > 0 ? (double)done / 1e6 / dt : 0.0;
    if (p->tty) {
        enum { WIDTH = 24 };
        char bar[WIDTH + 1];
        for (int i = 0; i < WIDTH; i++) bar[i] = i < (int)(frac * WIDTH) ? '#' : '.';
        bar[WIDTH] = '\0';
        fprintf(stderr, "\r[%s] %.1f / %.1f MB  %.1f MB/s \033[K", bar, (double)done / 1e6, (double)total / 1e6, mb_s);
    } else if ((int)(frac * 10) > p->last_tenth) {
        p->last_tenth = (int)(frac * 10);
        fprintf(stderr, "prepare: %.1f / %.1f MB (%d%%), %.1f MB/s\n", (double)done / 1e6, (double)total / 1e6,
                (int)(frac * 100), mb_s);
    }
}

static int parse_u64(const char *s, unsigned long long lo, unsigned long long *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v < lo) return 0;
    *out = v;
    return 1;
}

static int usage_error(const char *fmt, const char *arg) {
    fprintf(stderr, "lowbit data prepare: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n\n%s", DATA_USAGE);
    return LB_EXIT_USAGE;
}

static int cmd_prepare(int argc, char **argv) {
    const char **inputs = calloc((size_t)argc + 1, sizeof *inputs);
    if (!inputs) return LB_EXIT_FAILURE;
    lb_prepare_options o = {.inputs = inputs, .val_fraction = 0.05, .threads = 1, .layout = LB_SHARDS_LLMC};
    const char *tokenizer = NULL;
    prepare_progress pp = {.tty = isatty(STDERR_FILENO), .last_tenth = -1};
    int rc = LB_EXIT_OK;
    for (int i = 1; i < argc && rc == LB_EXIT_OK; i++) {
        const char *a = argv[i];
        unsigned long long v;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(DATA_USAGE, stdout);
            free(inputs);
            return LB_EXIT_OK;
        }
        if (!strcmp(a, "--quiet")) {
            pp.quiet = 1;
            continue;
        }
        if (a[0] != '-') {
            inputs[o.n_inputs++] = a;
            continue;
        }
        if (i + 1 >= argc) {
            rc = usage_error("%s needs a value", a);
            break;
        }
        const char *val = argv[++i];
        if (!strcmp(a, "-o") || !strcmp(a, "--output")) o.out_dir = val;
        else if (!strcmp(a, "--tokenizer")) tokenizer = val;
        else if (!strcmp(a, "--vocab-size")) {
            if (parse_u64(val, 257, &v) && v <= 16777216) o.tok.vocab_size = (int)v;
            else rc = usage_error("--vocab-size expects 257..16777216, got '%s'", val);
        } else if (!strcmp(a, "--threads")) {
            if (parse_u64(val, 1, &v) && v <= 4096) o.threads = (int)v;
            else rc = usage_error("--threads expects 1..4096, got '%s'", val);
        } else if (!strcmp(a, "--shard-tokens")) {
            if (parse_u64(val, 1, &v) && v <= LB_SHARD_MAX_TOKENS) o.shard_tokens = v;
            else rc = usage_error("--shard-tokens expects 1..2147483647, got '%s'", val);
        } else if (!strcmp(a, "--val-fraction")) {
            char *end;
            o.val_fraction = strtod(val, &end);
            if (end == val || *end || !(o.val_fraction >= 0 && o.val_fraction < 1))
                rc = usage_error("--val-fraction expects a number in [0, 1), got '%s'", val);
        } else if (!strcmp(a, "--format")) {
            int found = 0;
            for (int k = 0; k < LB_SHARD_LAYOUT_COUNT; k++)
                if (!strcmp(val, lb_shard_layout_names[k])) o.layout = (lb_shard_layout)k, found = 1;
            if (!found) rc = usage_error("--format expects llmc or nanogpt, got '%s'", val);
        } else {
            rc = usage_error("unknown option '%s'", a);
        }
    }
    if (rc == LB_EXIT_OK && o.n_inputs == 0) rc = usage_error("%s", "no input files or directories");
    if (rc == LB_EXIT_OK && !o.out_dir) rc = usage_error("%s", "no output directory (-o DIR)");
    if (rc == LB_EXIT_OK && !tokenizer) rc = usage_error("%s", "no --tokenizer (byte, char, bpe or a tokenizer.json)");
    if (rc == LB_EXIT_OK) {
        if (!strcmp(tokenizer, "byte")) o.tok.kind = LB_TOKENIZER_BYTE;
        else if (!strcmp(tokenizer, "char")) o.tok.kind = LB_TOKENIZER_CHAR;
        else if (!strcmp(tokenizer, "bpe")) o.tok.kind = LB_TOKENIZER_BPE;
        else o.tok = (lb_tokenizer_options){.kind = LB_TOKENIZER_HF, .path = tokenizer};
        if (o.tok.kind == LB_TOKENIZER_BPE && o.tok.vocab_size == 0)
            rc = usage_error("%s", "--tokenizer bpe needs --vocab-size N");
    }
    if (rc != LB_EXIT_OK) {
        free(inputs);
        return rc;
    }
    o.progress = show_progress;
    o.progress_ctx = &pp;
    pp.t0 = now_seconds();
    lb_prepare_result r;
    lb_status s = lb_data_prepare(&o, &r);
    double dt = now_seconds() - pp.t0;
    if (pp.tty && !pp.quiet) fputc('\n', stderr);
    free(inputs);
    if (s != LB_OK) return cli_fail("data prepare");
    printf("%s: %d documents (%d files skipped), %.1f MB in %.2f s (%.1f MB/s, %d thread%s); vocabulary %d, %s "
           "tokens; train %llu tokens in %d shard%s, validation %llu in %d\n",
           o.out_dir, r.n_docs, r.n_skipped, (double)r.bytes / 1e6, dt, dt > 0 ? (double)r.bytes / 1e6 / dt : 0.0,
           o.threads, o.threads == 1 ? "" : "s", r.vocab_size, r.width == LB_TOKENS_U16 ? "uint16" : "uint32",
           (unsigned long long)r.n_train, r.n_train_shards, r.n_train_shards == 1 ? "" : "s",
           (unsigned long long)r.n_val, r.n_val_shards);
    return LB_EXIT_OK;
}

int cmd_data(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "prepare")) return cmd_prepare(argc - 1, argv + 1);
    if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        fputs(DATA_USAGE, stdout);
        return LB_EXIT_OK;
    }
    fprintf(stderr, "lowbit data: expected the subcommand 'prepare'\n\n%s", DATA_USAGE);
    return LB_EXIT_USAGE;
}
