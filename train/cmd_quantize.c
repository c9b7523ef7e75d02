/* lowbit quantize CHECKPOINT -o OUT --spec SPEC [--method rtn|gptq] [--calib N]
 *                 [--act-order] [--damp F] [--block N] [--layers attn,ffn,head] [--set key=value ...]
 * Post-training quantization into a weights checkpoint (src/ptq, docs/ptq.md). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "ptq/ptq.h"
#include "quant/quantize.h"
#include "trainer/state.h"
#include "trainer/trainer.h"

static const char QUANTIZE_USAGE[] =
    "usage: lowbit quantize CHECKPOINT -o OUT.h5 --spec SPEC [--method rtn|gptq] [--calib N]\n"
    "                       [--act-order] [--damp F] [--block N] [--layers attn,ffn,head]\n"
    "                       [--set key=value ...]\n"
    "\n"
    "Post-training quantization of a checkpoint's linear layers into a weights checkpoint that\n"
    "eval, sample, export and train.init_from read. SPEC is a weight spec (docs/quantization.md),\n"
    "e.g. int4:g128, int8:per_channel, ternary, ternary:per_channel.\n"
    "\n"
    "  --method rtn|gptq     round to nearest (default), or GPTQ (ternary and symmetric INTn; the\n"
    "                        INT scales are stored as the layers' LSQ steps: the spec gets :lsq)\n"
    "  --calib N             calibration batches (train.batch_size x train.seq_len tokens of the\n"
    "                        train split of the data the checkpoint's config names; default 8).\n"
    "                        GPTQ's Hessians, and each layer's error ||WX - QX||^2 per token; 0: none\n"
    "  --act-order           GPTQ: columns by decreasing Hessian diagonal\n"
    "  --damp F              GPTQ: damping, a fraction of the mean Hessian diagonal (default 0.01)\n"
    "  --block N             GPTQ: columns per lazy block (default 128)\n"
    "  --layers LIST         which linear layers: attn, ffn, head (default attn,ffn)\n"
    "  --set key=value       changes the stored config, e.g. --set data.path=corpus.txt\n";

static int parse_layers(const char *list, int *kinds) {
    *kinds = 0;
    char buf[64];
    if (snprintf(buf, sizeof buf, "%s", list) >= (int)sizeof buf) return 0;
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (!strcmp(tok, "attn")) *kinds |= LB_PTQ_ATTN;
        else if (!strcmp(tok, "ffn")) *kinds |= LB_PTQ_FFN;
        else if (!strcmp(tok, "head")) *kinds |= LB_PTQ_HEAD;
        else return 0;
    }
    return *kinds != 0;
}

static void print_layer(void *ctx, const lb_model *m, const lb_ptq_layer *l) {
    const lb_tensor *t = m->params[l->param].t;
    int gptq = *(const lb_ptq_method *)ctx == LB_PTQ_GPTQ;
    printf("  %-24s [%5d, %5d]", t->name, t->shape[0], t->shape[1]);
    if (!isnan(l->err_rtn)) printf("  rtn err %-11.5g", l->err_rtn);
    if (gptq) printf("  gptq err %-11.5g (%5.1f%% of rtn)", l->err, 100.0 * l->err / l->err_rtn);
    printf("  %7.3f s\n", l->seconds);
    fflush(stdout);
}

/* The config the output records: the chosen kinds quantize their weights
 * with `spec`, keeping their activation specs. */
static void set_kinds(lb_config *cfg, const lb_model *m, int kinds, const lb_qspec *spec) {
    lb_linear_quant *dst[3] = {&cfg->model.attn, &cfg->model.ffn, &cfg->model.head};
    const lb_linear_quant *src[3] = {&m->q_attn, &m->q_ffn, &m->q_head};
    for (int k = 0; k < 3; k++) {
        if (!(kinds & (1 << k))) continue;
        dst[k]->mode = LB_LINEAR_CUSTOM;
        dst[k]->weight = *spec;
        dst[k]->activation = src[k]->activation;
    }
}

/* The output model: the new config's table, every tensor copied from the
 * quantized model by name, the step sizes from the result. */
static lb_model *output_model(const lb_config *cfg, const lb_model *from, const lb_ptq_result *r) {
    lb_model *out = lb_model_create(&cfg->model, cfg->train.seed);
    if (!out) return NULL;
    out->sample_vocab = from->sample_vocab;
    for (int i = 0; i < out->n_params; i++) {
        lb_param *p = &out->params[i];
        int j = lb_model_param_index(from, p->t->name);
        if (p->role == LB_ROLE_WEIGHT_STEP) {
            int owner = lb_model_param_index(from, out->params[p->owner].t->name);
            if (owner >= 0 && r->steps && r->steps[owner]) {
                memcpy(p->t->data, r->steps[owner], p->t->n * sizeof(float));
                continue;
            }
        }
        if (j < 0 || from->params[j].t->n != p->t->n) {
            lb_error(LB_EINVAL, "quantize: tensor '%s' of the output has no counterpart", p->t->name);
            lb_model_free(out);
            return NULL;
        }
        memcpy(p->t->data, from->params[j].t->data, p->t->n * sizeof(float));
    }
    return out;
}

static int write_checkpoint(const char *out_path, const lb_config *cfg, const lb_model *m, const lb_tokenizer *tok) {
    char *yaml = NULL;
    lb_ckpt *c = NULL;
    if (lb_config_to_yaml(cfg, &yaml) != LB_OK || lb_ckpt_create(out_path, &c) != LB_OK) {
        free(yaml);
        return cli_fail(out_path);
    }
    lb_status s = lb_state_write_weights(yaml, m, tok, c);
    free(yaml);
    if (s != LB_OK) {
        lb_ckpt_abort(c);
        return cli_fail(out_path);
    }
    return lb_ckpt_commit(c) == LB_OK ? LB_EXIT_OK : cli_fail(out_path);
}

int cmd_quantize(int argc, char **argv) {
    const char *path = NULL, *out_path = NULL, *spec_text = NULL;
    lb_ptq_options o = lb_ptq_options_default();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(QUANTIZE_USAGE, stdout);
            return LB_EXIT_OK;
        }
        int takes = !strcmp(a, "-o") || !strcmp(a, "--spec") || !strcmp(a, "--method") || !strcmp(a, "--calib") ||
                    !strcmp(a, "--layers") || !strcmp(a, "--set") || !strcmp(a, "--damp") || !strcmp(a, "--block");
        if (takes && i + 1 >= argc) {
            fprintf(stderr, "lowbit quantize: %s needs a value\n", a);
            return LB_EXIT_USAGE;
        }
        const char *v = takes ? argv[++i] : NULL;
        char *end = NULL;
        if (!strcmp(a, "-o")) out_path = v;
        else if (!strcmp(a, "--spec")) spec_text = v;
        else if (!strcmp(a, "--set")) continue; /* applied to the config below */
        else if (!strcmp(a, "--act-order")) o.act_order = 1;
        else if (!strcmp(a, "--damp")) {
            o.damp = strtod(v, &end);
            if (*v == '\0' || *end != '\0' || !(o.damp >= 0.0 && o.damp < 1e6)) {
                fprintf(stderr, "lowbit quantize: --damp expects a number >= 0, got '%s'\n", v);
                return LB_EXIT_USAGE;
            }
        } else if (!strcmp(a, "--block")) {
            long n = strtol(v, &end, 10);
            if (*v == '\0' || *end != '\0' || n < 1 || n > 1 << 20) {
                fprintf(stderr, "lowbit quantize: --block expects a positive number of columns, got '%s'\n", v);
                return LB_EXIT_USAGE;
            }
            o.block = (int)n;
        }
        else if (!strcmp(a, "--method")) {
            int found = 0;
            for (int m = 0; m < LB_PTQ_METHOD_COUNT; m++)
                if (!strcmp(v, lb_ptq_method_names[m])) o.method = (lb_ptq_method)m, found = 1;
            if (!found) {
                fprintf(stderr, "lowbit quantize: --method expects rtn or gptq, got '%s'\n", v);
                return LB_EXIT_USAGE;
            }
        } else if (!strcmp(a, "--calib")) {
            long n = strtol(v, &end, 10);
            if (*v == '\0' || *end != '\0' || n < 0 || n > 100000) {
                fprintf(stderr, "lowbit quantize: --calib expects a number of batches >= 0, got '%s'\n", v);
                return LB_EXIT_USAGE;
            }
            o.calib_batches = (int)n;
        } else if (!strcmp(a, "--layers")) {
            if (!parse_layers(v, &o.kinds)) {
                fprintf(stderr, "lowbit quantize: --layers expects a list of attn, ffn, head, got '%s'\n", v);
                return LB_EXIT_USAGE;
            }
        } else if (a[0] == '-' || path) {
            fprintf(stderr, "lowbit quantize: unexpected argument '%s'\n\n%s", a, QUANTIZE_USAGE);
            return LB_EXIT_USAGE;
        } else {
            path = a;
        }
    }
    if (!path || !out_path || !spec_text) {
        fprintf(stderr, "lowbit quantize: %s\n\n%s",
                !path ? "no checkpoint given" : !out_path ? "no output given (-o OUT.h5)" : "no spec given (--spec)",
                QUANTIZE_USAGE);
        return LB_EXIT_USAGE;
    }
    if (lb_qspec_parse(spec_text, &o.spec) != LB_OK) return cli_fail("--spec");
    struct stat st;
    if (stat(out_path, &st) == 0) {
        fprintf(stderr, "lowbit quantize: '%s' exists; remove it or choose another -o\n", out_path);
        return LB_EXIT_USAGE;
    }

    /* The stored config, changed by --set; the weights and tokenizer come in through train.init_from. */
    lb_config cfg;
    if (lb_load_checkpoint_config(path, &cfg) != LB_OK) return cli_fail(NULL);
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--set") && lb_config_set(&cfg, argv[++i]) != LB_OK) return cli_fail(NULL);
    if ((size_t)snprintf(cfg.train.init_from, sizeof cfg.train.init_from, "%s", path) >= sizeof cfg.train.init_from) {
        fprintf(stderr, "lowbit quantize: checkpoint path too long\n");
        return LB_EXIT_USAGE;
    }
    if (lb_config_validate(&cfg) != LB_OK) return cli_fail(NULL);

    /* With calibration the trainer builds the data pipeline; without, the checkpoint alone will do. */
    lb_trainer t;
    int have_trainer = 0;
    lb_model *model = NULL;
    lb_tokenizer *tok = NULL;
    lb_tokens none = {0};
    const lb_tokens *train = &none;
    if (o.calib_batches > 0) {
        if (lb_trainer_init(&t, &cfg) != LB_OK) {
            fprintf(stderr,
                    "lowbit quantize: calibration data: %s\n"
                    "  (calibration reads the train split of the data the checkpoint's config names; pass it with\n"
                    "  --set data.path=FILE or --set data.shards=DIR, or --calib 0 to round without it)\n",
                    lb_errmsg());
            return lb_errcode() == LB_ECONFIG ? LB_EXIT_USAGE : LB_EXIT_FAILURE;
        }
        have_trainer = 1;
        model = t.model;
        tok = t.tok;
        cfg = t.cfg;
        train = &t.train_tokens;
    } else {
        lb_config stored;
        if (lb_load_checkpoint_model(path, &stored, &tok, &model) != LB_OK) return cli_fail(NULL);
        cfg.model = stored.model;
    }

    char spec_name[64];
    lb_qspec_format(&o.spec, spec_name, sizeof spec_name);
    printf("quantize %s: %s, %s, %d calibration batches of %dx%d tokens\n", path, lb_ptq_method_names[o.method],
           spec_name, o.calib_batches, cfg.train.batch_size, cfg.train.seq_len);
    fflush(stdout);
    lb_ptq_result r;
    int rc = LB_EXIT_OK;
    lb_model *out = NULL;
    if (lb_ptq_run(model, &o, train, cfg.train.batch_size, cfg.train.seq_len, cfg.train.seed, print_layer, &o.method,
                   &r) != LB_OK) {
        rc = cli_fail(path);
        goto done;
    }
    printf("%d layers: calibration %.2f s, rtn %.3f s", r.n_layers, r.calib_seconds, r.rtn_seconds);
    if (o.method == LB_PTQ_GPTQ) printf(", gptq %.3f s", r.method_seconds);
    printf("\n");
    set_kinds(&cfg, model, o.kinds, &r.out_spec);
    cfg.train.init_from[0] = '\0';
    if (lb_config_validate(&cfg) != LB_OK || !(out = output_model(&cfg, model, &r))) rc = cli_fail(NULL);
    else if ((rc = write_checkpoint(out_path, &cfg, out, tok)) == LB_EXIT_OK) {
        lb_qspec_format(&r.out_spec, spec_name, sizeof spec_name);
        printf("wrote %s (weights '%s')\n", out_path, spec_name);
    }
    lb_ptq_result_free(&r, model->n_params);
done:
    if (out) lb_model_free(out);
    if (have_trainer) {
        lb_trainer_free(&t);
    } else {
        lb_model_free(model);
        lb_tokenizer_free(tok);
    }
    return rc;
}
