/* embed_train: lowbit inside another program, through lowbit.h alone.
 *
 * In a fresh temporary directory it writes a small generated corpus, builds a
 * config from a YAML string plus --set-style overrides, trains with the run
 * loop (progress from its events, a final checkpoint), evaluates, takes one
 * more step by hand, generates text and saves a checkpoint. Then it reloads
 * that checkpoint twice: as a trainer, which must evaluate to the same loss
 * and take the same next step, bit for bit; and as a model, which must
 * generate the same text. Exit status 0 when all of that holds, 1 otherwise
 * (the reason on stderr). The directory is removed at the end.
 *
 * Build it against an installed lowbit with examples/CMakeLists.txt, or
 *   cc -std=c99 embed_train.c $(pkg-config --cflags --libs --static lowbit) */
#define _XOPEN_SOURCE 700 /* mkdtemp, nftw */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lowbit.h>

/* A tiny model that learns the corpus below within a few dozen steps.
 * data.path and checkpoint.dir depend on the directory and are set later. */
static const char CONFIG[] =
    "model:\n"
    "  dim: 64\n"
    "  n_layers: 2\n"
    "  n_heads: 2\n"
    "  ffn_dim: 128\n"
    "  max_seq_len: 32\n"
    "  quant:\n"
    "    preset: b1.58\n"
    "data:\n"
    "  tokenizer: char\n"
    "train:\n"
    "  steps: 40\n"
    "  batch_size: 8\n"
    "  seq_len: 32\n"
    "  lr: 3e-3\n"
    "  min_lr: 3e-4\n"
    "  warmup_steps: 4\n"
    "eval:\n"
    "  batches: 4\n"
    "log:\n"
    "  jsonl: \"\"\n";

static int failed(const char *what) {
    fprintf(stderr, "embed_train: %s: %s (%s)\n", what, lowbit_errmsg(), lowbit_status_name(lowbit_errcode()));
    return 0;
}

static int check(int ok, const char *what) {
    if (!ok) fprintf(stderr, "embed_train: check failed: %s\n", what);
    return ok;
}

/* Sentences from a small grammar, drawn with a fixed xorshift generator. */
static int write_corpus(const char *path, size_t bytes) {
    static const char *subject[] = {"the cat", "a dog", "my friend", "the old man", "every child"};
    static const char *verb[] = {"sees", "likes", "finds", "paints", "talks to"};
    static const char *object[] = {"the moon", "a red ball", "the river", "an apple", "a bird"};
    FILE *f = fopen(path, "w");
    if (!f) return check(0, "cannot write the corpus");
    unsigned long long x = 88172645463325252ULL;
    for (size_t written = 0; written < bytes;) {
        unsigned pick[3];
        for (int i = 0; i < 3; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            pick[i] = (unsigned)(x % 5);
        }
        int n = fprintf(f, "%s %s %s.\n", subject[pick[0]], verb[pick[1]], object[pick[2]]);
        if (n < 0) break;
        written += (size_t)n;
    }
    return check(fclose(f) == 0, "cannot write the corpus");
}

/* The run loop's events: a line every 10 steps, evaluations, checkpoints. */
static void show_progress(const lowbit_event *e, void *ctx) {
    (void)ctx;
    if (e->kind == LOWBIT_EVENT_STEP && e->step % 10 == 0)
        printf("step %lld/%lld: loss %.4f, lr %.2e\n", (long long)e->step, (long long)e->steps, e->result->loss,
               e->result->lr);
    else if (e->kind == LOWBIT_EVENT_EVAL)
        printf("step %lld: validation loss %.4f\n", (long long)e->step, e->val_loss);
    else if (e->kind == LOWBIT_EVENT_CHECKPOINT)
        printf("checkpoint (%s): %s\n", e->why, e->path);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

/* Everything after the directory exists; returns 1 when every check held. */
static int run(const char *dir) {
    char corpus[512], set[600], saved[LOWBIT_PATH_MAX];
    lowbit_config *cfg = NULL, *stored = NULL;
    lowbit_trainer *t = NULL, *resumed = NULL;
    lowbit_model *model = NULL;
    char *text = NULL, *text_again = NULL;
    int ok = 0;

    snprintf(corpus, sizeof corpus, "%s/corpus.txt", dir);
    if (!write_corpus(corpus, 60000)) return 0;

    /* The config: YAML text, then overrides exactly as `lowbit train --set` takes them. */
    if (lowbit_config_load_string(CONFIG, "embed_train.yaml", &cfg) != LOWBIT_OK) return failed("config");
    snprintf(set, sizeof set, "data.path=%s", corpus);
    if (lowbit_config_set(cfg, set) != LOWBIT_OK) goto fail_config;
    snprintf(set, sizeof set, "checkpoint.dir=%s/run", dir);
    if (lowbit_config_set(cfg, set) != LOWBIT_OK) goto fail_config;
    if (lowbit_trainer_new(cfg, &t) != LOWBIT_OK) {
        failed("building the trainer");
        goto done;
    }

    lowbit_trainer_info info;
    lowbit_trainer_get_info(t, &info);
    printf("lowbit %s: %zu parameters, vocabulary %d, %lld steps\n", lowbit_version(), info.n_parameters,
           info.vocab_size, (long long)info.steps);

    /* Train with the run loop, as `lowbit train` does. */
    float before, after;
    if (lowbit_trainer_evaluate(t, 0, &before) != LOWBIT_OK) {
        failed("evaluating");
        goto done;
    }
    lowbit_run_options options = {NULL, show_progress, NULL};
    lowbit_run_report report;
    if (lowbit_trainer_run(t, &options, &report) != LOWBIT_OK) {
        failed("training");
        goto done;
    }
    printf("%lld steps in %.2f s, validation loss %.4f -> %.4f\n", (long long)report.steps, report.seconds, before,
           report.val_loss);
    if (!check(report.steps == info.steps && report.val_loss < 0.8f * before,
               "the run takes train.steps steps and lowers the validation loss by more than 20%"))
        goto done;
    if (lowbit_trainer_evaluate(t, 0, &after) != LOWBIT_OK) {
        failed("evaluating");
        goto done;
    }
    if (!check(after == report.val_loss, "evaluating again gives the run's last validation loss")) goto done;

    /* One step by hand, past train.steps. */
    lowbit_step_result r;
    if (lowbit_trainer_step(t, &r) != LOWBIT_OK || lowbit_trainer_evaluate(t, 0, &after) != LOWBIT_OK) {
        failed("one more step");
        goto done;
    }
    printf("step %lld: loss %.4f, validation loss %.4f\n", (long long)r.step, r.loss, after);

    /* Generate, then save. */
    lowbit_sample_params sp = lowbit_sample_default_params();
    sp.n_tokens = 60;
    sp.seed = 7;
    size_t len;
    if (lowbit_trainer_generate(t, "the cat ", &sp, &text, &len) != LOWBIT_OK) {
        failed("generating");
        goto done;
    }
    printf("sample: the cat %s\n", text);
    if (!check(len >= (size_t)sp.n_tokens, "one character per generated token")) goto done;
    if (lowbit_trainer_save_checkpoint(t, saved, sizeof saved) != LOWBIT_OK) {
        failed("saving");
        goto done;
    }
    printf("checkpoint: %s\n", saved);

    /* The checkpoint holds the whole state: a trainer rebuilt from it agrees bit for bit. */
    float resumed_loss;
    lowbit_step_result next, resumed_next;
    if (lowbit_config_load_checkpoint(saved, &stored) != LOWBIT_OK || lowbit_trainer_new(stored, &resumed) != LOWBIT_OK ||
        lowbit_trainer_load_checkpoint(resumed, saved) != LOWBIT_OK ||
        lowbit_trainer_evaluate(resumed, 0, &resumed_loss) != LOWBIT_OK) {
        failed("reloading the checkpoint");
        goto done;
    }
    if (!check(resumed_loss == after, "the reloaded trainer evaluates to the same loss")) goto done;
    if (lowbit_trainer_step(t, &next) != LOWBIT_OK || lowbit_trainer_step(resumed, &resumed_next) != LOWBIT_OK) {
        failed("one more step");
        goto done;
    }
    if (!check(next.loss == resumed_next.loss && next.step == resumed_next.step,
               "the reloaded trainer takes the same next step"))
        goto done;

    /* And as a model for generation only. */
    if (lowbit_model_load(saved, &model) != LOWBIT_OK ||
        lowbit_model_generate(model, "the cat ", &sp, &text_again, NULL) != LOWBIT_OK) {
        failed("generating from the checkpoint");
        goto done;
    }
    if (!check(strcmp(text, text_again) == 0, "the checkpoint's model generates the same text")) goto done;
    printf("reloaded: same validation loss, same next step (loss %.6f), same sample\n", next.loss);
    ok = 1;
    goto done;

fail_config:
    failed(set);
done:
    lowbit_free(text);
    lowbit_free(text_again);
    lowbit_model_free(model);
    lowbit_trainer_free(resumed);
    lowbit_trainer_free(t);
    lowbit_config_free(stored);
    lowbit_config_free(cfg);
    return ok;
}

int main(void) {
    const char *tmp = getenv("TMPDIR");
    char dir[256];
    snprintf(dir, sizeof dir, "%s/embed_train.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        perror("embed_train: mkdtemp");
        return 1;
    }
    int ok = run(dir);
    nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    printf("%s\n", ok ? "embed_train: ok" : "embed_train: FAILED");
    return ok ? 0 : 1;
}
