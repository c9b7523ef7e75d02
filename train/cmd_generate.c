/* lowbit generate / lowbit sample: text from a checkpoint on the packed
 * runtime (src/runtime, docs/runtime.md), with the training-time sampler's
 * rules and random stream (layers/sample.h), so a seed gives the same text as
 * before whenever the two forwards' logits pick the same tokens.
 *
 * The two commands differ only when the runtime cannot pack the model (a
 * quantizer it cannot reproduce, see lb_rt_model_pack): `generate` stops
 * with the reason, `sample` says why and samples with the training-time
 * forward (lb_generate), as it did before the runtime existed. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "layers/sample.h"
#include "runtime/runtime.h"
#include "trainer/trainer.h"

static void usage(FILE *out, const char *cmd, int fallback) {
    fprintf(out,
            "usage: lowbit %s CHECKPOINT --prompt TEXT [--tokens N] [--temperature T] [--top-k K] [--seed S]\n"
            "       [--threads N]\n"
            "\n"
            "Generates N tokens (default 200) after TEXT with the model of a checkpoint (a file, or the\n"
            "newest in a run directory) on the packed runtime: ternary and binary weights as 2- and 1-bit\n"
            "codes, integer kernels for this CPU (LOWBIT_RUNTIME_ISA=portable|avx2|avx512bw|avx512vnni\n"
            "forces a lower one), a KV cache. Temperature 0 is greedy; top-k 0 keeps every token.\n"
            "Defaults: temperature 0.8, top-k 40, seed 1, threads OMP_NUM_THREADS or all cores.\n"
            "Prints the text on stdout, prompt and decode tokens/s on stderr. On a machine busy with\n"
            "other work, OMP_WAIT_POLICY=passive keeps the threads from spinning (docs/runtime.md).\n"
            "%s",
            cmd,
            fallback ? "A model the runtime cannot pack is sampled with the training-time forward instead.\n"
                     : "A model the runtime cannot pack is an error naming the reason (`lowbit sample` then\n"
                       "runs it with the training-time forward).\n");
}

static int parse_number(const char *cmd, const char *opt, const char *text, double lo, double hi, double *out) {
    char *end;
    double v = strtod(text, &end);
    if (end == text || *end || v < lo || v > hi) {
        fprintf(stderr, "lowbit %s: %s expects a number in [%g, %g], got '%s'\n", cmd, opt, lo, hi, text);
        return 0;
    }
    *out = v;
    return 1;
}

/* The training-time sampler: `sample`'s fallback. */
static lb_status generate_reference(lb_model *model, const int *prompt, int n_prompt, int n_new, float temperature,
                                    int top_k, lb_rng *rng, int *out, lb_rt_gen_stats *st) {
    lb_graph g;
    if (lb_graph_init(&g, 0) != LB_OK) return lb_errcode();
    lb_graph_set_grad(&g, 0);
    const double t0 = omp_get_wtime();
    lb_status rc = lb_generate(model, &g, prompt, n_prompt, n_new, temperature, top_k, rng, out);
    lb_graph_free(&g);
    /* lb_generate runs the whole window for every token: no prompt/decode split */
    st->decode_tokens = n_new;
    st->decode_seconds = omp_get_wtime() - t0;
    return rc;
}

static void print_stats(const char *cmd, const lb_rt_gen_stats *st, const char *how, int threads) {
    fprintf(stderr, "lowbit %s: %s, %d thread%s", cmd, how, threads, threads == 1 ? "" : "s");
    if (st->prompt_tokens)
        fprintf(stderr, " | prompt %d tokens, %.1f tokens/s", st->prompt_tokens,
                st->prompt_seconds > 0 ? st->prompt_tokens / st->prompt_seconds : 0.0);
    if (st->decode_tokens)
        fprintf(stderr, " | decode %d tokens, %.1f tokens/s", st->decode_tokens,
                st->decode_seconds > 0 ? st->decode_tokens / st->decode_seconds : 0.0);
    if (st->reprocessed_tokens)
        fprintf(stderr, " | %d tokens run again as the window moved", st->reprocessed_tokens);
    fputc('\n', stderr);
}

int cli_generate(const char *cmd, int argc, char **argv, int fallback) {
    const char *path = NULL, *prompt = NULL;
    double n_new = 200, temperature = 0.8, top_k = 40, seed = 1, threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout, cmd, fallback);
            return LB_EXIT_OK;
        }
        int takes_value = !strcmp(a, "--prompt") || !strcmp(a, "--tokens") || !strcmp(a, "--temperature") ||
                          !strcmp(a, "--top-k") || !strcmp(a, "--seed") || !strcmp(a, "--threads");
        if (takes_value && i + 1 >= argc) {
            fprintf(stderr, "lowbit %s: %s needs a value\n", cmd, a);
            return LB_EXIT_USAGE;
        }
        int ok = 1;
        if (!strcmp(a, "--prompt")) prompt = argv[++i];
        else if (!strcmp(a, "--tokens")) ok = parse_number(cmd, a, argv[++i], 1, 1e6, &n_new);
        else if (!strcmp(a, "--temperature")) ok = parse_number(cmd, a, argv[++i], 0, 100, &temperature);
        else if (!strcmp(a, "--top-k")) ok = parse_number(cmd, a, argv[++i], 0, 1e9, &top_k);
        else if (!strcmp(a, "--seed")) ok = parse_number(cmd, a, argv[++i], 0, 1e18, &seed);
        else if (!strcmp(a, "--threads")) ok = parse_number(cmd, a, argv[++i], 1, 4096, &threads);
        else if (a[0] == '-' || path) {
            fprintf(stderr, "lowbit %s: unexpected argument '%s'\n\n", cmd, a);
            usage(stderr, cmd, fallback);
            return LB_EXIT_USAGE;
        } else path = a;
        if (!ok) return LB_EXIT_USAGE;
    }
    if (!path || !prompt) {
        fprintf(stderr, "lowbit %s: %s\n\n", cmd, !path ? "no checkpoint given" : "no --prompt given");
        usage(stderr, cmd, fallback);
        return LB_EXIT_USAGE;
    }
    const int n_threads = threads > 0 ? (int)threads : omp_get_max_threads();
    omp_set_num_threads(n_threads); /* the fallback's GEMMs and loops */

    lb_config cfg;
    lb_tokenizer *tok;
    lb_model *model;
    if (lb_load_checkpoint_model(path, &cfg, &tok, &model) != LB_OK) return cli_fail(NULL);
    int rc = LB_EXIT_OK;
    lb_rt_model *rm = lb_rt_model_pack(model, NULL);
    lb_rt_session *session = NULL;
    char how[96] = "training-time forward";
    if (rm) {
        lb_rt_info info;
        lb_rt_model_info(rm, &info);
        snprintf(how, sizeof how, "runtime %s", lb_rt_isa_name(info.isa));
        session = lb_rt_session_create(rm, n_threads);
        if (!session) rc = cli_fail("runtime session");
        lb_model_free(model); /* the runtime keeps what it needs */
        model = NULL;
    } else if (lb_errcode() == LB_ENOMEM || !fallback) {
        fprintf(stderr, "lowbit %s: %s: %s%s\n", cmd, path, lb_errmsg(),
                fallback ? "" : " (`lowbit sample` runs it with the training-time forward)");
        rc = LB_EXIT_FAILURE;
    } else {
        fprintf(stderr, "lowbit %s: %s: %s; sampling with the training-time forward\n", cmd, path, lb_errmsg());
    }

    /* The prompt as the tokenizer's own library encodes it for a model: with
     * its special tokens (a Llama tokenizer's BOS); none for byte and char. */
    lb_ids encoded = {0};
    size_t n_prompt = 0;
    int *ids = NULL;
    if (rc != LB_EXIT_OK) {
    } else if (lb_tokenizer_encode_append(tok, prompt, strlen(prompt), LB_ENCODE_ADD_SPECIAL, &encoded) != LB_OK) {
        rc = cli_fail("encoding the prompt");
    } else if ((n_prompt = encoded.n) == 0) {
        fprintf(stderr, "lowbit %s: the prompt is empty\n", cmd);
        rc = LB_EXIT_USAGE;
    } else if (!(ids = malloc((n_prompt + (size_t)n_new) * sizeof(int)))) {
        rc = cli_fail("generating");
    } else {
        memcpy(ids, encoded.v, n_prompt * sizeof(int));
        lb_rng rng;
        lb_rng_init(&rng, (uint64_t)seed, LB_STREAM_SAMPLE);
        lb_rt_gen_stats st = {0};
        lb_status s = session ? lb_rt_generate(session, ids, (int)n_prompt, (int)n_new, (float)temperature,
                                               (int)top_k, &rng, ids + n_prompt, &st)
                              : generate_reference(model, ids, (int)n_prompt, (int)n_new, (float)temperature,
                                                   (int)top_k, &rng, ids + n_prompt, &st);
        if (s != LB_OK) {
            rc = cli_fail("generating");
        } else {
            char *text = lb_tokenizer_decode_opts(tok, ids, n_prompt + (size_t)n_new, LB_DECODE_SKIP_SPECIAL, NULL);
            if (text) {
                printf("%s\n", text);
                fflush(stdout);
                print_stats(cmd, &st, how, n_threads);
            } else {
                rc = cli_fail("decoding");
            }
            free(text);
        }
    }
    free(ids);
    lb_ids_free(&encoded);
    lb_rt_session_free(session);
    lb_rt_model_free(rm);
    lb_model_free(model);
    lb_tokenizer_free(tok);
    return rc;
}

int cmd_generate(int argc, char **argv) { return cli_generate("generate", argc, argv, 0); }
