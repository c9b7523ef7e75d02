/* lowbit train CONFIG [--set key=value ...] [--resume DIR|FILE] */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "core/log.h"
#include "layers/sample.h"
#include "trainer/distill.h"
#include "trainer/run.h"

static const char TRAIN_USAGE[] =
    "usage: lowbit train CONFIG [--set key=value ...] [--resume DIR|FILE] [--quiet]\n"
    "\n"
    "Trains the model a YAML config describes (see docs/config.md and configs/).\n"
    "  --set key=value   override a config key, e.g. --set train.steps=100 --set model.quant.preset=b1\n"
    "  --resume PATH     continue from a checkpoint file, or the newest one in a run directory\n"
    "  --quiet           no progress lines (errors and warnings still print)\n"
    "\n"
    "Prints the resolved config, then progress (step, loss, tokens/s, ETA), validation loss every\n"
    "eval.interval steps, and a text sample at the end. Checkpoints go to checkpoint.dir; metrics\n"
    "to log.jsonl. SIGINT/SIGTERM write a checkpoint and stop; exit code 0 when training finished\n"
    "or was stopped cleanly, 1 on a runtime failure, 2 on a usage or configuration error.\n";

static volatile sig_atomic_t g_stop_signal;

static void on_signal(int sig) { g_stop_signal = sig; }

static void install_signal_handlers(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

static int parse_args(int argc, char **argv, lb_config *cfg, const char **resume, int *quiet) {
    const char *config_path = NULL;
    /* First the file, then every --set in order, so --set wins. */
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--set") || !strcmp(argv[i], "--resume")) {
            i++;
            continue;
        }
        if (!strcmp(argv[i], "--quiet")) continue;
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(TRAIN_USAGE, stdout);
            exit(LB_EXIT_OK);
        }
        if (argv[i][0] == '-') {
            fprintf(stderr, "lowbit train: unknown option '%s'\n\n%s", argv[i], TRAIN_USAGE);
            return LB_EXIT_USAGE;
        }
        if (config_path) {
            fprintf(stderr, "lowbit train: more than one config given ('%s' and '%s')\n", config_path, argv[i]);
            return LB_EXIT_USAGE;
        }
        config_path = argv[i];
    }
    if (!config_path) {
        fprintf(stderr, "lowbit train: no config given\n\n%s", TRAIN_USAGE);
        return LB_EXIT_USAGE;
    }
    if (lb_config_load_file(config_path, cfg) != LB_OK) {
        cli_fail(NULL);
        return LB_EXIT_USAGE; /* a config that cannot be read is a usage error too */
    }
    for (int i = 1; i < argc; i++) {
        int is_set = !strcmp(argv[i], "--set"), is_resume = !strcmp(argv[i], "--resume");
        if (!is_set && !is_resume) {
            if (!strcmp(argv[i], "--quiet")) *quiet = 1;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "lowbit train: %s needs a value\n", argv[i]);
            return LB_EXIT_USAGE;
        }
        if (is_resume) *resume = argv[i + 1];
        else if (lb_config_set(cfg, argv[i + 1]) != LB_OK) return cli_fail(NULL);
        i++;
    }
    if (lb_config_validate(cfg) != LB_OK) return cli_fail(NULL);
    return LB_EXIT_OK;
}

static void print_sample(lb_trainer *t) {
    const lb_log_config *lc = &t->cfg.log;
    int n_new = lc->sample_tokens;
    if (n_new <= 0) return;
    size_t len = strlen(lc->sample_prompt), n_prompt = 0;
    int *ids = malloc((len + (size_t)n_new + 1) * sizeof(int));
    if (!ids) return;
    if (lb_tokenizer_encode(t->tok, lc->sample_prompt, len, ids, &n_prompt) != LB_OK || n_prompt == 0) {
        lb_tokens_read(&t->train_tokens, 0, 1, ids); /* no usable prompt: start from the first corpus token */
        n_prompt = 1;
    }
    lb_rng rng;
    lb_rng_init(&rng, t->cfg.train.seed, LB_STREAM_SAMPLE);
    if (lb_generate(t->model, &t->graph, ids, (int)n_prompt, n_new, 0.8f, 40, &rng, ids + n_prompt) == LB_OK) {
        char *text = lb_tokenizer_decode(t->tok, ids, n_prompt + (size_t)n_new, NULL);
        if (text) printf("sample (temperature 0.8, top-k 40):\n%s\n", text);
        free(text);
    } else {
        lb_warn("sampling failed: %s", lb_errmsg());
    }
    free(ids);
}

/* What the run loop reports, shown as lines on stdout. */
typedef struct train_display {
    int quiet;
    int resumed;
    cli_progress progress;
} train_display;

static void print_header(const lb_trainer *t, int resumed) {
    const lb_config *c = &t->cfg;
    printf("# lowbit %s — resolved config (%s)\n%s", LOWBIT_VERSION, c->source, t->config_yaml);
    char mem[256];
    lb_optim_memory_format(t->opt, mem, sizeof mem);
    if (c->data.shards[0])
        printf("# shards: %d train / %d validation files, %zu train / %zu validation tokens; %s tokenizer, "
               "vocabulary %d\n", t->shards.train.n, t->shards.val.n, t->train_tokens.n, t->val_tokens.n,
               lb_tokenizer_kind_name(t->tok->kind), t->tok->vocab_size);
    else
        printf("# corpus: %d documents, %zu train / %zu validation tokens; %s tokenizer, vocabulary %d\n",
               t->corpus.n_docs, t->data.n_train, t->data.n_val, lb_tokenizer_kind_name(t->tok->kind),
               t->tok->vocab_size);
    printf("# model: %zu parameters; %s\n", t->model->n_elements, mem);
    char need[256];
    lb_memory_format(&t->memory, need, sizeof need);
    printf("# memory: %s\n", need);
    /* "...; fp32 products in bf16, attention in fp32 (train.gemm_precision: auto, ...)": which keys were auto */
    const int ga = t->precision_auto, aa = t->attn_precision_auto;
    char from_auto[80] = "";
    if (ga || aa)
        snprintf(from_auto, sizeof from_auto, " (%s%s%s)", ga ? "train.gemm_precision: auto" : "", ga && aa ? ", " : "",
                 aa ? "train.attention_precision: auto" : "");
    printf("# %s, attention in %s%s\n", lb_gemm_describe(c->train.gemm_precision),
           lb_gemm_precision_name(c->train.attention_precision), from_auto);
    if (t->dist->size > 1)
        printf("# data parallel: %d ranks × batch %d × grad_accum %d = %d sequences per step\n", t->dist->size,
               c->train.batch_size, c->train.grad_accum, t->dist->size * c->train.batch_size * c->train.grad_accum);
    if (t->owner) { /* ZeRO-1: this rank's share of the optimizer state, per parameter of the model */
        lb_optim_memory m = lb_optim_bytes_per_param(t->opt);
        printf("# ZeRO-1 over %d ranks: rank 0 keeps the optimizer state of %zu of %zu parameters: %.2f B per "
               "parameter (%.2f B unsharded)\n",
               t->dist->size, m.n_elements, t->model->n_elements, (double)m.state_bytes / (double)t->model->n_elements,
               m.state);
    }
    if (t->inserted_sub_norms)
        printf("# SubLN: sub-norms inserted into '%s' (gains from its activations, docs/qat-vs-ptq.md)\n",
               c->train.init_from);
    if (t->distill) {
        const lb_distill *d = t->distill;
        printf("# distillation from '%s' (%zu parameters): loss = %g·CE + %g·T²·KL(teacher ‖ student), T = %g",
               d->path, d->teacher->n_elements, (double)d->cfg.weight_ce, (double)d->cfg.weight_kl,
               (double)d->cfg.temperature);
        if (d->cfg.weight_hidden > 0.0f)
            printf(" + %g·MSE(block %d)", (double)d->cfg.weight_hidden, d->s_layer);
        if (d->cfg.weight_relation > 0.0f)
            printf(" + %g·relation KL(q, k, v of block %d, %d heads)", (double)d->cfg.weight_relation, d->s_rel,
                   d->rel_heads);
        printf("; teacher weights %.1f MiB (its activations and time per step: teacher_bytes, teacher_s in the "
               "metrics)\n", (double)lb_distill_memory(d) / (1024.0 * 1024.0));
    }
    if (resumed) printf("# resumed at step %lld\n", (long long)t->step);
}

static void show(const lb_run_event *e, void *ctx) {
    train_display *d = ctx;
    const lb_trainer *t = e->trainer;
    const lb_config *c = &t->cfg;
    switch (e->kind) {
    case LB_RUN_START:
        if (!d->quiet) print_header(t, d->resumed);
        if (t->step >= c->train.steps)
            printf("nothing to do: the run is at step %lld and train.steps is %d (raise it with --set train.steps=N)\n",
                   (long long)t->step, c->train.steps);
        cli_progress_init(&d->progress, c->train.steps, (long)t->tokens_seen);
        break;
    case LB_RUN_STEP:
        if (!d->quiet)
            cli_progress_step(&d->progress, (long)t->step, (long)t->tokens_seen, e->result->loss, e->result->lr,
                              c->log.interval);
        break;
    case LB_RUN_EVAL:
        if (d->quiet) break;
        cli_progress_break(&d->progress);
        printf("step %lld: validation loss %.4f (perplexity %.2f)\n", (long long)t->step, e->val_loss,
               exp(e->val_loss));
        break;
    case LB_RUN_STOP:
        cli_progress_break(&d->progress);
        printf("%s received at step %lld: saving and stopping\n", e->stop == SIGINT ? "SIGINT" : "SIGTERM",
               (long long)t->step);
        break;
    case LB_RUN_CHECKPOINT:
        cli_progress_break(&d->progress);
        printf("checkpoint (%s): %s\n", e->why, e->path);
        break;
    }
    fflush(stdout);
}

/* The run on this rank; rank 0 alone prints progress and writes files. */
static int train(int argc, char **argv, const lb_dist *dist) {
    lb_config cfg;
    const char *resume = NULL;
    int quiet = 0;
    int rc = parse_args(argc, argv, &cfg, &resume, &quiet);
    if (rc != LB_EXIT_OK) return rc;
    /* Before the corpus is read and the model built: a run that could not
     * save its work fails now. */
    if (dist->rank == 0 && lb_run_preflight(&cfg) != LB_OK) return cli_fail(NULL);

    lb_trainer t;
    if (lb_trainer_init(&t, &cfg) != LB_OK) return cli_fail(NULL);
    install_signal_handlers();
    train_display d = {.quiet = quiet, .resumed = resume != NULL};
    lb_run_options o = {.resume = resume,
                        .stop = &g_stop_signal,
                        .read_only = dist->rank != 0,
                        .on_event = dist->rank == 0 ? show : NULL,
                        .ctx = &d};
    lb_run_report r;
    lb_status s = lb_run(&t, &o, &r);
    const lb_config *c = &t.cfg;
    rc = LB_EXIT_OK;
    if (dist->rank != 0 && (s == LB_OK || s == LB_EINTERRUPTED)) {
        /* rank 0 reports */
    } else if (s == LB_OK && r.steps > 0) {
        printf("done: %lld steps, final validation loss %.4f, %.0f tokens/s, %.1f s\n", (long long)t.step, r.val_loss,
               (double)r.tokens / r.seconds, r.seconds);
        print_sample(&t);
    } else if (s == LB_EINTERRUPTED) {
        printf("resume with: lowbit train %s --resume %s\n", c->source, c->checkpoint.dir);
    } else if (s != LB_OK) {
        cli_progress_break(&d.progress);
        rc = cli_fail(NULL);
    }
    lb_trainer_free(&t);
    return rc;
}

/* Under an MPI launcher every rank runs this; a rank that fails ends the
 * whole job (no rank is left waiting in a collective for it). */
int cmd_train(int argc, char **argv) {
    if (lb_dist_init(&argc, &argv) != LB_OK) return cli_fail(NULL);
    const lb_dist *dist = lb_dist_world();
    int rc = train(argc, argv, dist);
    if (rc != LB_EXIT_OK) lb_dist_abort(dist, rc, "training failed on this rank (see the message above)");
    lb_dist_finalize();
    return rc;
}
