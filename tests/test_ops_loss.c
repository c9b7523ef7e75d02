/* Tests of lb_cross_entropy: value against a log-sum-exp reference in
 * double, ignored rows, gradients (finite differences and the closed form
 * softmax − one-hot), target checks. */
#include <math.h>
#include <string.h>

#include "autograd/ops.h"
#include "testutil.h"

enum { ROWS = 6, V = 7, IGNORE = -100 };

/* Row 2 is ignored; the others hit different classes, including both ends. */
static const int k_targets[ROWS] = {3, 0, IGNORE, 6, 1, 3};

static lb_tensor *new_logits(uint64_t seed, float range) {
    int shape[3] = {2, 3, V}; /* leading dims flatten to 6 rows */
    lb_tensor *t = lb_tensor_alloc(3, shape, 1);
    assert_non_null(t);
    tu_fill_uniform(t, seed, -range, range);
    t->name = "logits";
    return t;
}

static double reference_loss(const float *x, const int *targets, int rows, int ignore) {
    double total = 0.0;
    int counted = 0;
    for (int r = 0; r < rows; r++) {
        if (targets[r] == ignore) continue;
        const float *row = x + (size_t)r * V;
        double mx = row[0];
        for (int c = 1; c < V; c++) mx = fmax(mx, row[c]);
        double z = 0.0;
        for (int c = 0; c < V; c++) z += exp(row[c] - mx);
        total += mx + log(z) - row[targets[r]];
        counted++;
    }
    return counted ? total / counted : 0.0;
}

static void check_value(float range, double tol) {
    lb_tensor *x = new_logits(1, range);
    lb_graph g;
    assert_int_equal(lb_graph_init(&g, 0), LB_OK);
    lb_tensor *loss = lb_cross_entropy(&g, x, k_targets, IGNORE);
    assert_non_null(loss);
    assert_int_equal(loss->n, 1);
    double ref = reference_loss(x->data, k_targets, ROWS, IGNORE);
    assert_true(isfinite(loss->data[0]));
    assert_float_equal(loss->data[0], ref, tol * fmax(1.0, fabs(ref)));
    lb_graph_free(&g);
    lb_tensor_free(x);
}

static void test_value(void **state) {
    (void)state;
    check_value(2.0f, 1e-6);
    /* Logits of ±1000: exp() overflows unless the row maximum is taken out. */
    check_value(1000.0f, 1e-6);
    /* Uniform logits give exactly log V. */
    lb_tensor *x = new_logits(2, 1.0f);
    memset(x->data, 0, x->n * sizeof(float));
    lb_graph g;
    assert_int_equal(lb_graph_init(&g, 0), LB_OK);
    lb_tensor *loss = lb_cross_entropy(&g, x, k_targets, IGNORE);
    assert_non_null(loss);
    assert_float_equal(loss->data[0], log((double)V), 1e-6);
    lb_graph_free(&g);
    lb_tensor_free(x);
}

typedef struct ce_ctx {
    const int *targets;
    int ignore;
} ce_ctx;

static lb_tensor *ce_loss(lb_graph *g, lb_tensor **p, int n, void *ctx) {
    const ce_ctx *c = ctx;
    return lb_cross_entropy(g, p[0], c->targets, c->ignore);
}

static void test_grad_finite_differences(void **state) {
    (void)state;
    lb_tensor *x = new_logits(3, 2.0f);
    ce_ctx c = {k_targets, IGNORE};
    tu_gradcheck(ce_loss, &x, 1, &c, 1e-2f, 1e-2, 1e-4);
    lb_tensor_free(x);
}

/* dL/dx[r, c] = (softmax(x[r])[c] − [c == t_r]) / n_counted, and exactly 0
 * on ignored rows; scaled by the upstream gradient (here 2, from lb_scale). */
static void test_grad_closed_form(void **state) {
    (void)state;
    lb_tensor *x = new_logits(4, 3.0f);
    lb_graph g;
    assert_int_equal(lb_graph_init(&g, 0), LB_OK);
    lb_tensor *loss = lb_scale(&g, lb_cross_entropy(&g, x, k_targets, IGNORE), 2.0f);
    assert_non_null(loss);
    assert_int_equal(lb_backward(&g, loss), LB_OK);
    const int counted = ROWS - 1;
    for (int r = 0; r < ROWS; r++) {
        const float *row = x->data + (size_t)r * V;
        double mx = row[0], z = 0.0;
        for (int c = 1; c < V; c++) mx = fmax(mx, row[c]);
        for (int c = 0; c < V; c++) z += exp(row[c] - mx);
        for (int c = 0; c < V; c++) {
            double expect = 0.0;
            if (k_targets[r] != IGNORE) expect = 2.0 * (exp(row[c] - mx) / z - (c == k_targets[r])) / counted;
            assert_float_equal(x->grad[(size_t)r * V + c], expect, 1e-6);
        }
    }
    lb_graph_free(&g);
    lb_tensor_free(x);
}

static void test_all_ignored(void **state) {
    (void)state;
    lb_tensor *x = new_logits(5, 1.0f);
    int none[ROWS] = {-1, -1, -1, -1, -1, -1};
    lb_graph g;
    assert_int_equal(lb_graph_init(&g, 0), LB_OK);
    lb_tensor *loss = lb_cross_entropy(&g, x, none, -1);
    assert_non_null(loss);
    assert_float_equal(loss->data[0], 0.0f, 0.0f);
    assert_int_equal(lb_backward(&g, loss), LB_OK);
    for (size_t i = 0; i < x->n; i++) assert_float_equal(x->grad[i], 0.0f, 0.0f);
    lb_graph_free(&g);
    lb_tensor_free(x);
}

static void test_bad_targets(void **state) {
    (void)state;
    lb_tensor *x = new_logits(6, 1.0f);
    lb_graph g;
    assert_int_equal(lb_graph_init(&g, 0), LB_OK);
    int bad[ROWS] = {0, 1, 2, 3, V, 5};
    lb_error_clear();
    assert_null(lb_cross_entropy(&g, x, bad, IGNORE));
    assert_int_equal(lb_errcode(), LB_EINVAL);
    assert_non_null(strstr(lb_errmsg(), "cross_entropy"));
    assert_non_null(strstr(lb_errmsg(), "row 4"));
    assert_non_null(strstr(lb_errmsg(), "is 7"));
    int negative[ROWS] = {0, -3, 2, 3, 4, 5};
    assert_null(lb_cross_entropy(&g, x, negative, IGNORE));
    assert_non_null(strstr(lb_errmsg(), "row 1"));
    assert_non_null(strstr(lb_errmsg(), "is -3"));
    assert_null(lb_cross_entropy(&g, x, NULL, IGNORE));
    assert_null(lb_cross_entropy(&g, NULL, k_targets, IGNORE));
    lb_graph_free(&g);
    lb_tensor_free(x);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_value),       cmocka_unit_test(test_grad_finite_differences),
        cmocka_unit_test(test_grad_closed_form), cmocka_unit_test(test_all_ignored),
        cmocka_unit_test(test_bad_targets),
    };
    return tu_run_group_tests(tests, NULL, NULL);
}
