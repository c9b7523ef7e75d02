/* lowbit against the PyTorch reference (scripts/reference/).
 *
 * For each model below (fp32 in two shapes, b1.58, b1) with random weights
 * and a fixed batch, lowbit computes the logits, the loss and every
 * parameter's gradient, then runs 10 AdamW steps on that batch. Everything
 * goes into one HDF5 file: the model as a checkpoint (/config/yaml,
 * /model/<name>, docs/checkpoint.md) and the results under /equiv. Then
 * scripts/reference/check_equivalence.py loads the checkpoint with h5py,
 * runs the same computation in PyTorch (in float64) and compares; the
 * tolerances are stated in that script. It exits 77 when torch is absent,
 * and only then is the test skipped (or failed, with LOWBIT_REQUIRE_DEPS=1:
 * tu_require_dependency). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "io/checkpoint.h"
#include "io/config.h"
#include "layers/model.h"
#include "optim/optim.h"
#include "testutil.h"

#define B 3
#define T 16
#define ADAM_STEPS 10
#define PYTHON "/usr/bin/python3"

static const float LR = 1e-3f, WD = 0.1f;

static void must(lb_status s) {
    if (s != LB_OK) fail_msg("%s", lb_errmsg());
}

/* Writes every parameter's values as <group>/<name>. */
static void put_params(lb_ckpt *c, lb_model *m, const char *group) {
    for (int i = 0; i < m->n_params; i++) {
        lb_tensor *p = m->param_list[i];
        char name[128];
        snprintf(name, sizeof name, "%s/%s", group, p->name);
        must(lb_ckpt_put_f32(c, name, p->ndim, p->shape, p->data));
    }
}

/* Runs lowbit on the model `yaml` describes and writes `path`. */
static void run_lowbit(const char *yaml, const char *path) {
    lb_config cfg;
    lb_config_defaults(&cfg);
    must(lb_config_load_string(yaml, "equivalence model", &cfg));
    lb_model *m = lb_model_create(&cfg.model, 42);
    assert_non_null(m);
    char *text = NULL;
    must(lb_config_to_yaml(&cfg, &text));

    /* A fixed batch; two targets left out (−1), as padding would be. */
    const int V = cfg.model.vocab_size;
    int ids[B * T], tgt[B * T];
    for (int i = 0; i < B * T; i++) {
        ids[i] = (int)(lb_rand_uniform(5, 0, (uint64_t)i) * V) % V;
        tgt[i] = (int)(lb_rand_uniform(5, 1, (uint64_t)i) * V) % V;
    }
    tgt[3] = tgt[T + 7] = -1;

    lb_ckpt *c;
    must(lb_ckpt_create(path, &c));
    must(lb_ckpt_put_string(c, "config/yaml", text));
    free(text);
    for (int i = 0; i < m->n_params; i++) {
        lb_tensor *p = m->param_list[i];
        char name[128];
        snprintf(name, sizeof name, "model/%s", p->name);
        must(lb_ckpt_put_f32(c, name, p->ndim, p->shape, p->data));
    }
    int bt[2] = {B, T};
    must(lb_ckpt_put_i32(c, "equiv/ids", 2, bt, ids));
    must(lb_ckpt_put_i32(c, "equiv/targets", 2, bt, tgt));

    lb_graph g;
    must(lb_graph_init(&g, 0));
    lb_tensor *logits = NULL;
    lb_tensor *loss = lb_model_forward(m, &g, ids, B, T, tgt, &logits);
    if (!loss) fail_msg("%s", lb_errmsg());
    int one = 1;
    must(lb_ckpt_put_f32(c, "equiv/loss", 1, &one, loss->data));
    must(lb_ckpt_put_f32(c, "equiv/logits", logits->ndim, logits->shape, logits->data));
    must(lb_backward(&g, loss)); /* frees the activations, logits among them */
    for (int i = 0; i < m->n_params; i++) {
        lb_tensor *p = m->param_list[i];
        char name[128];
        snprintf(name, sizeof name, "equiv/grad/%s", p->name);
        must(lb_ckpt_put_f32(c, name, p->ndim, p->shape, p->grad));
    }

    /* AdamW as the trainer sets it up (norms and embeddings without decay),
     * without gradient clipping, on the same batch each step. */
    lb_optim_config oc = lb_optim_config_default(LB_OPTIM_ADAMW);
    oc.clip_norm = 0.0f;
    int *groups = malloc((size_t)m->n_params * sizeof *groups);
    for (int i = 0; i < m->n_params; i++) groups[i] = m->params[i].no_decay ? 1 : 0;
    lb_optim *opt = lb_optim_create(&oc, m->param_list, groups, m->n_params);
    assert_non_null(opt);
    float hp[6] = {LR, WD, oc.beta1, oc.beta2, oc.eps, (float)ADAM_STEPS};
    int six = 6;
    must(lb_ckpt_put_f32(c, "equiv/adamw", 1, &six, hp));
    for (int s = 1; s <= ADAM_STEPS; s++) {
        if (s > 1) { /* step 1 uses the gradients computed above */
            lb_graph_reset(&g);
            loss = lb_model_forward(m, &g, ids, B, T, tgt, NULL);
            if (!loss) fail_msg("%s", lb_errmsg());
            must(lb_backward(&g, loss));
        }
        must(lb_optim_step(opt, LR, WD, s, NULL));
        lb_optim_zero_grad(opt);
        if (s == 1) put_params(c, m, "equiv/after1");
    }
    put_params(c, m, "equiv/after");
    must(lb_ckpt_commit(c));
    free(groups);
    lb_optim_free(opt);
    lb_graph_free(&g);
    lb_model_free(m);
}

static void check_model(const char *tag, const char *yaml) {
    char dir[512], path[600], cmd[2048];
    tu_tmpdir(dir, sizeof dir, tag);
    snprintf(path, sizeof path, "%s/equiv.h5", dir);
    run_lowbit(yaml, path);
    snprintf(cmd, sizeof cmd, "%s %s/scripts/reference/check_equivalence.py '%s' '%s'", PYTHON, tu_source_dir(),
             path, tag);
    fflush(stdout);
    int rc = system(cmd);
    int code = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
    tu_require_dependency("torch", code != 77, "PyTorch for " PYTHON ": apt-get install python3-torch");
    if (code != 0) fail_msg("%s: lowbit and the PyTorch reference disagree (exit code %d, see above)", tag, code);
}

/* Small shapes: the point is the math, not the size. Weights drawn wider
 * than the training init (0.02) so that the logits are far from uniform and
 * every path carries signal. */
#define SHAPE "  vocab_size: 256\n  dim: 64\n  n_layers: 2\n  n_heads: 4\n  n_kv_heads: 2\n" \
              "  ffn_dim: 128\n  max_seq_len: 32\n  init_std: 0.15\n"

static void test_fp32(void **state) {
    (void)state;
    check_model("fp32", "model:\n" SHAPE "  norm: rmsnorm\n  ffn_act: swiglu\n  sub_norm: true\n"
                        "  tie_embeddings: true\n  quant:\n    preset: fp32\n");
}

/* The other branches of the graph: LayerNorm, ReLU², no SubLN, untied head. */
static void test_fp32_variant(void **state) {
    (void)state;
    check_model("fp32-variant", "model:\n" SHAPE "  norm: layernorm\n  ffn_act: relu2\n  sub_norm: false\n"
                                "  tie_embeddings: false\n  quant:\n    preset: fp32\n");
}

/* BitNet b1.58 2B4T's block: ReLU² and SubLN. */
static void test_b158(void **state) {
    (void)state;
    check_model("b1.58", "model:\n" SHAPE "  norm: rmsnorm\n  ffn_act: relu2\n  sub_norm: true\n"
                         "  tie_embeddings: true\n  quant:\n    preset: b1.58\n");
}

static void test_b1(void **state) {
    (void)state;
    check_model("b1", "model:\n" SHAPE "  norm: rmsnorm\n  ffn_act: swiglu\n  sub_norm: true\n"
                      "  tie_embeddings: true\n  quant:\n    preset: b1\n");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fp32),
        cmocka_unit_test(test_fp32_variant),
        cmocka_unit_test(test_b158),
        cmocka_unit_test(test_b1),
    };
    return tu_run_group_tests(tests, NULL, NULL);
}
