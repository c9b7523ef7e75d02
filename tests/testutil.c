#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

void tu_fill_uniform(lb_tensor *t, uint64_t seed, float lo, float hi) {
    for (size_t i = 0; i < t->n; i++) t->data[i] = lo + (hi - lo) * lb_rand_uniform(seed, 77, i);
}

static lb_tensor *filled(int ndim, const int *shape, uint64_t seed, float lo, float hi, int with_grad) {
    lb_tensor *t = lb_tensor_alloc(ndim, shape, with_grad);
    if (!t) fail_msg("lb_tensor_alloc: %s", lb_errmsg());
    tu_fill_uniform(t, seed, lo, hi);
    return t;
}

lb_tensor *tu_param(int ndim, const int *shape, uint64_t seed, float lo, float hi) {
    return filled(ndim, shape, seed, lo, hi, 1);
}

lb_tensor *tu_const(int ndim, const int *shape, uint64_t seed, float lo, float hi) {
    return filled(ndim, shape, seed, lo, hi, 0);
}

lb_tensor *tu_weighted_sum(lb_graph *g, lb_tensor *y, uint64_t seed) {
    if (!y) return NULL;
    lb_tensor *r = lb_graph_tensor(g, y->ndim, y->shape);
    if (!r) return NULL;
    r->requires_grad = 0;
    tu_fill_uniform(r, seed, -1.0f, 1.0f);
    return lb_sum(g, lb_mul(g, y, r));
}

static double eval_loss(tu_loss_fn fn, lb_tensor **params, int n_params, void *ctx) {
    lb_graph g;
    assert_int_equal(lb_graph_init(&g, 0), LB_OK);
    lb_graph_set_grad(&g, 0);
    lb_tensor *loss = fn(&g, params, n_params, ctx);
    if (!loss) fail_msg("forward failed: %s", lb_errmsg());
    double v = loss->data[0];
    lb_graph_free(&g);
    return v;
}

double tu_gradcheck(tu_loss_fn fn, lb_tensor **params, int n_params, void *ctx, float h, double rtol,
                    double atol) {
    lb_graph g;
    assert_int_equal(lb_graph_init(&g, 0), LB_OK);
    for (int p = 0; p < n_params; p++) {
        params[p]->requires_grad = 1;
        memset(params[p]->grad, 0, params[p]->n * sizeof(float));
    }
    lb_tensor *loss = fn(&g, params, n_params, ctx);
    if (!loss) fail_msg("forward failed: %s", lb_errmsg());
    if (lb_backward(&g, loss) != LB_OK) fail_msg("backward failed: %s", lb_errmsg());
    lb_graph_free(&g);

    double worst = 0.0;
    for (int p = 0; p < n_params; p++) {
        lb_tensor *t = params[p];
        for (size_t i = 0; i < t->n; i++) {
            float saved = t->data[i];
            t->data[i] = saved + h;
            double up = eval_loss(fn, params, n_params, ctx);
            t->data[i] = saved - h;
            double down = eval_loss(fn, params, n_params, ctx);
            t->data[i] = saved;
            double numeric = (up - down) / (2.0 * (double)h);
            double analytic = t->grad[i];
            double err = fabs(analytic - numeric);
            double scale = fmax(fabs(analytic), fabs(numeric));
            if (err > atol + rtol * scale)
                fail_msg("gradient mismatch: param %d (%s) element %zu: analytic %.6g, numeric %.6g", p,
                         t->name ? t->name : "?", i, analytic, numeric);
            if (scale > 0 && err / scale > worst) worst = err / scale;
        }
    }
    return worst;
}

void tu_tmpdir(char *buf, size_t size, const char *tag) {
    const char *base = getenv("TMPDIR");
    snprintf(buf, size, "%s/lowbit-%s-XXXXXX", base && *base ? base : "/tmp", tag);
    if (!mkdtemp(buf)) fail_msg("cannot create a temporary directory %s", buf);
}

tu_run_dir *tu_run_dir_new(const char *tag, size_t corpus_bytes, uint64_t seed) {
    static const char *subj[] = {"the cat", "a dog", "my friend", "the old man", "every child", "the teacher"};
    static const char *verb[] = {"sees", "likes", "finds", "paints", "reads about", "talks to"};
    static const char *obj[] = {"the moon", "a red ball", "the river", "an apple", "the quiet house", "a bird"};
    tu_run_dir *r = calloc(1, sizeof *r);
    if (!r) fail_msg("out of memory");
    tu_tmpdir(r->dir, sizeof r->dir, tag);
    snprintf(r->corpus, sizeof r->corpus, "%s/corpus.txt", r->dir);
    FILE *f = fopen(r->corpus, "w");
    if (!f) fail_msg("cannot write %s", r->corpus);
    lb_rng rng;
    lb_rng_init(&rng, seed, 0);
    size_t written = 0;
    while (written < corpus_bytes) {
        int n = fprintf(f, "%s %s %s.\n", subj[lb_rng_below(&rng, 6)], verb[lb_rng_below(&rng, 6)],
                        obj[lb_rng_below(&rng, 6)]);
        written += (size_t)n;
    }
    fclose(f);
    return r;
}

void tu_run_dir_free(tu_run_dir *r) {
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", r->dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", r->dir);
    free(r);
}

void tu_config_set(lb_config *c, const char *fmt, ...) {
    char buf[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (lb_config_set(c, buf) != LB_OK) fail_msg("--set %s: %s", buf, lb_errmsg());
}

void tu_config_small_model(lb_config *c) {
    tu_config_set(c, "model.dim=64");
    tu_config_set(c, "model.n_layers=2");
    tu_config_set(c, "model.n_heads=2");
    tu_config_set(c, "model.ffn_dim=128");
    tu_config_set(c, "model.max_seq_len=32");
}

void tu_apply_test_filter(void) {
    const char *f = getenv("LOWBIT_TEST_FILTER");
    if (f && *f) cmocka_set_test_filter(f);
}

static int n_skipped; /* tests skipped for a missing dependency */

int tu_exit_status(int n_failed) {
    if (n_failed) return 1;
    return n_skipped ? TU_EXIT_SKIPPED : 0;
}

/* Is `name` in the comma-separated $LOWBIT_TEST_HIDE_DEPS? */
static int hidden(const char *name) {
    const char *p = getenv("LOWBIT_TEST_HIDE_DEPS");
    size_t n = strlen(name);
    while (p && *p) {
        size_t len = strcspn(p, ",");
        if (len == n && strncmp(p, name, n) == 0) return 1;
        p += len;
        if (*p == ',') p++;
    }
    return 0;
}

void tu_require_dependency(const char *name, int present, const char *install) {
    if (present && !hidden(name)) return;
    const char *require = getenv("LOWBIT_REQUIRE_DEPS");
    if (require && strcmp(require, "1") == 0)
        fail_msg("%s is missing (%s, or scripts/setup.sh); LOWBIT_REQUIRE_DEPS=1 makes that a failure", name,
                 install);
    print_message("SKIPPED: %s is missing (%s, or scripts/setup.sh)\n", name, install);
    n_skipped++;
    skip();
}

int tu_run_torch_script(const char *script, const char *args) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/scripts/reference/%s %s", tu_source_dir(), script, args);
    fflush(stdout);
    int rc = system(cmd);
    int code = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
    tu_require_dependency("torch", code != 77, "PyTorch for /usr/bin/python3: apt-get install python3-torch");
    return code;
}

const char *tu_source_dir(void) {
    const char *d = getenv("LOWBIT_SOURCE_DIR");
    return d && *d ? d : ".";
}

void tu_run_ok(const char *cmd) {
    int rc = system(cmd);
    if (rc != 0) fail_msg("failed (%d): %s", rc, cmd);
}
