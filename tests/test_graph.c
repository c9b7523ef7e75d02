/* Tests of the tape itself (autograd/graph.c): gradient accumulation for a
 * tensor used twice, no-grad mode, error propagation through NULL, and a
 * steady state in which repeated steps take no memory from the system, and
 * backward freeing activations as it goes. */
#include <math.h>
#include <string.h>

#include "autograd/ops.h"
#include "testutil.h"

static void test_tensor_used_twice_gets_both_contributions(void **state) {
    (void)state;
    lb_graph g;
    assert_int_equal(lb_graph_init(&g, 0), LB_OK);
    int n = 7;
    lb_tensor *x = tu_param(1, &n, 1, -1.0f, 1.0f);

    /* d/dx sum(x·x) = 2x */
    assert_int_equal(lb_backward(&g, lb_sum(&g, lb_mul(&g, x, x))), LB_OK);
    for (int i = 0; i < n; i++) assert_float_equal(x->grad[i], 2.0f * x->data[i], 1e-6);

    /* Parameter gradients accumulate across backward passes until zeroed:
     * d/dx sum(x + x) = 2 is added on top. */
    lb_graph_reset(&g);
    assert_int_equal(lb_backward(&g, lb_sum(&g, lb_add(&g, x, x))), LB_OK);
    for (int i = 0; i < n; i++) assert_float_equal(x->grad[i], 2.0f * x->data[i] + 2.0f, 1e-6);

    /* Through two paths of different ops: y = silu(x) + 3x, dy/dx = silu'(x) + 3. */
    memset(x->grad, 0, (size_t)n * sizeof(float));
    lb_graph_reset(&g);
    assert_int_equal(lb_backward(&g, lb_sum(&g, lb_add(&g, lb_silu(&g, x), lb_scale(&g, x, 3.0f)))), LB_OK);
    for (int i = 0; i < n; i++) {
        double s = 1.0 / (1.0 + exp(-(double)x->data[i]));
        assert_float_equal(x->grad[i], s * (1.0 + x->data[i] * (1.0 - s)) + 3.0, 1e-6);
    }
    lb_tensor_free(x);
    lb_graph_free(&g);
}

/* An activation's gradient is not zeroed when the first node to run that
 * reads it stores into it (lb_node.stores_grad); add, swiglu, attention and
 * qmatmul do. The arena hands the second pass the first pass's memory, so
 * an element left unwritten would show. gt is read by swiglu and by a later
 * scale: its gradient is zeroed and swiglu adds into it, while up's is
 * stored; h is read twice by one add (stored, then added). */
static void test_unwritten_gradients_are_stored(void **state) {
    (void)state;
    lb_graph g;
    assert_int_equal(lb_graph_init(&g, 0), LB_OK);
    int n = 40;
    lb_tensor *x = tu_param(1, &n, 1, -1.0f, 1.0f), *u = tu_param(1, &n, 2, -1.0f, 1.0f);
    for (int pass = 0; pass < 2; pass++) {
        lb_graph_reset(&g);
        memset(x->grad, 0, (size_t)n * sizeof(float));
        memset(u->grad, 0, (size_t)n * sizeof(float));
        lb_tensor *h = lb_scale(&g, x, 2.0f), *gt = lb_scale(&g, x, 0.5f), *up = lb_scale(&g, u, 1.0f);
        lb_tensor *s = lb_add(&g, h, h), *sw = lb_swiglu(&g, gt, up), *extra = lb_scale(&g, gt, 3.0f);
        assert_int_equal(lb_backward(&g, lb_sum(&g, lb_add(&g, lb_add(&g, s, sw), extra))), LB_OK);
        for (int i = 0; i < n; i++) {
            double v = 0.5 * x->data[i], sg = 1.0 / (1.0 + exp(-v));
            assert_float_equal(x->grad[i], 4.0 + 0.5 * (u->data[i] * sg * (1.0 + v * (1.0 - sg)) + 3.0), 1e-5);
            assert_float_equal(u->grad[i], v * sg, 1e-6);
        }
    }
    lb_tensor_free(x);
    lb_tensor_free(u);
    lb_graph_free(&g);
}

static void test_only_inputs_needing_grad_are_recorded(void **state) {
    (void)state;
    lb_graph g;
    assert_int_equal(lb_graph_init(&g, 0), LB_OK);
    int n = 5;
    lb_tensor *x = tu_param(1, &n, 2, -1.0f, 1.0f), *c = lb_tensor_alloc(1, &n, 0);
    tu_fill_uniform(c, 3, -1.0f, 1.0f);

    /* Nothing depends on x yet: no nodes. */
    lb_tensor *cc = lb_silu(&g, c);
    assert_int_equal(g.n_nodes, 0);
    assert_int_equal(cc->requires_grad, 0);

    /* A branch that does not reach the loss is skipped by backward. */
    lb_tensor *unused = lb_gelu(&g, x);
    lb_tensor *loss = lb_sum(&g, lb_mul(&g, x, cc));
    assert_int_equal(g.n_nodes, 3);
    assert_int_equal(unused->requires_grad, 1);
    assert_int_equal(lb_backward(&g, loss), LB_OK);
    assert_null(unused->grad);
    assert_null(cc->grad);
    for (int i = 0; i < n; i++) assert_float_equal(x->grad[i], cc->data[i], 0.0f);
    lb_tensor_free(x);
    lb_tensor_free(c);
    lb_graph_free(&g);
}

static void test_no_grad_mode_records_nothing(void **state) {
    (void)state;
    lb_graph g;
    assert_int_equal(lb_graph_init(&g, 0), LB_OK);
    int sh[2] = {3, 4};
    lb_tensor *x = tu_param(2, sh, 4, -1.0f, 1.0f), *w = tu_param(1, &sh[1], 5, -1.0f, 1.0f);
    const int ids[2] = {0, 2};

    assert_int_equal(lb_graph_set_grad(&g, 0), 1);
    lb_tensor *h = lb_rmsnorm(&g, x, w, 1e-5f);
    h = lb_add(&g, lb_layernorm(&g, h, w, NULL, 1e-5f), lb_relu2(&g, x));
    h = lb_reshape(&g, lb_swiglu(&g, h, lb_gelu(&g, x)), 1, (int[]){12});
    lb_tensor *e = lb_embedding(&g, x, ids, 1, 2);
    lb_tensor *loss = lb_add(&g, lb_mean(&g, h), lb_sum(&g, lb_scale(&g, e, 0.5f)));
    assert_non_null(loss);
    assert_int_equal(g.n_nodes, 0);
    assert_int_equal(loss->requires_grad, 0);

    lb_error_clear();
    assert_int_equal(lb_backward(&g, loss), LB_EINVAL);
    assert_non_null(strstr(lb_errmsg(), "backward"));
    for (size_t i = 0; i < x->n; i++) assert_float_equal(x->grad[i], 0.0f, 0.0f);

    /* Switching back records again. */
    assert_int_equal(lb_graph_set_grad(&g, 1), 0);
    assert_non_null(lb_silu(&g, x));
    assert_int_equal(g.n_nodes, 1);
    lb_tensor_free(x);
    lb_tensor_free(w);
    lb_graph_free(&g);
}

static void test_errors_name_shapes_and_null_propagates(void **state) {
    (void)state;
    lb_graph g;
    assert_int_equal(lb_graph_init(&g, 0), LB_OK);
    lb_tensor *a = tu_param(2, (int[]){2, 3}, 6, -1.0f, 1.0f), *b = tu_param(2, (int[]){3, 2}, 7, -1.0f, 1.0f);

    lb_error_clear();
    lb_tensor *bad = lb_add(&g, a, b);
    assert_null(bad);
    assert_int_equal(lb_errcode(), LB_EINVAL);
    char first[LB_ERRMSG_MAX];
    strcpy(first, lb_errmsg());
    assert_non_null(strstr(first, "add"));
    assert_non_null(strstr(first, "[2,3]"));
    assert_non_null(strstr(first, "[3,2]"));

    /* The forward pass is written straight through; every later op passes
     * the NULL on and the first message survives to the end. */
    const int ids[1] = {0};
    lb_tensor *h = lb_mul(&g, bad, a);
    h = lb_mul(&g, a, h);
    h = lb_add(&g, h, a);
    h = lb_scale(&g, h, 2.0f);
    h = lb_silu(&g, h);
    h = lb_gelu(&g, h);
    h = lb_relu2(&g, h);
    h = lb_swiglu(&g, h, a);
    h = lb_swiglu(&g, a, h);
    h = lb_rmsnorm(&g, h, NULL, 1e-5f);
    h = lb_layernorm(&g, h, NULL, NULL, 1e-5f);
    h = lb_reshape(&g, h, 1, (int[]){6});
    h = lb_embedding(&g, h, ids, 1, 1);
    lb_tensor *loss = lb_mean(&g, lb_sum(&g, h));
    assert_null(loss);
    assert_int_equal(lb_backward(&g, loss), LB_EINVAL);
    assert_string_equal(lb_errmsg(), first);
    assert_int_equal(g.n_nodes, 0);

    lb_tensor_free(a);
    lb_tensor_free(b);
    lb_graph_free(&g);
}

static void test_backward_refuses_non_scalar(void **state) {
    (void)state;
    lb_graph g;
    assert_int_equal(lb_graph_init(&g, 0), LB_OK);
    lb_tensor *x = tu_param(1, (int[]){3}, 8, -1.0f, 1.0f);
    lb_error_clear();
    assert_int_equal(lb_backward(&g, lb_silu(&g, x)), LB_EINVAL);
    assert_non_null(strstr(lb_errmsg(), "scalar"));
    lb_tensor_free(x);
    lb_graph_free(&g);
}

/* Backward hands each activation and its gradient back once its producer
 * has run, so the gradients reuse that memory: on a chain of 12 ops the
 * step's peak stays near the forward pass's, not twice it. The loss
 * survives; a second backward on the spent tape is refused. */
static void test_backward_frees_activations_as_it_goes(void **state) {
    (void)state;
    lb_graph g;
    assert_int_equal(lb_graph_init(&g, 0), LB_OK);
    int n = 4096;
    lb_tensor *x = tu_param(1, &n, 12, -1.0f, 1.0f);
    memset(x->grad, 0, (size_t)n * sizeof(float));
    lb_tensor *h = x, *mid = NULL;
    for (int k = 0; k < 12; k++) {
        h = lb_scale(&g, h, 2.0f);
        if (k == 5) h = mid = lb_reshape(&g, h, 2, (int[]){64, 64}); /* a view on the way */
    }
    lb_tensor *loss = lb_sum(&g, h);
    assert_non_null(loss);
    float value = loss->data[0];
    size_t forward = g.arena.used, one = (size_t)n * sizeof(float);
    assert_true(forward > 12 * one);
    assert_int_equal(lb_backward(&g, loss), LB_OK);
    /* Without reuse the gradients would add 12 more buffers. */
    assert_true(g.arena.peak <= forward + 3 * one);
    for (int i = 0; i < n; i++) assert_float_equal(x->grad[i], 4096.0f, 0.0f);
    assert_memory_equal(loss->data, &value, sizeof value);
    assert_null(mid->data);
    assert_null(h->data);

    lb_error_clear();
    assert_int_equal(lb_backward(&g, loss), LB_EINVAL);
    assert_non_null(strstr(lb_errmsg(), "reset"));
    for (int i = 0; i < n; i++) assert_float_equal(x->grad[i], 4096.0f, 0.0f);

    /* A loss that is a view keeps its value too. */
    lb_graph_reset(&g);
    memset(x->grad, 0, (size_t)n * sizeof(float));
    lb_tensor *view = lb_reshape(&g, lb_sum(&g, lb_scale(&g, x, 2.0f)), 2, (int[]){1, 1});
    assert_non_null(view);
    value = view->data[0];
    assert_int_equal(lb_backward(&g, view), LB_OK);
    assert_non_null(view->view_of->data); /* not handed back to the arena */
    assert_memory_equal(view->data, &value, sizeof value);
    for (int i = 0; i < n; i++) assert_float_equal(x->grad[i], 2.0f, 0.0f);
    lb_tensor_free(x);
    lb_graph_free(&g);
}

/* One training-like step through every op of this module. */
static float step(lb_graph *g, lb_tensor *table, lb_tensor *w, lb_tensor *b, const int *ids) {
    lb_tensor *x = lb_embedding(g, table, ids, 2, 8);
    lb_tensor *h = lb_rmsnorm(g, x, w, 1e-5f);
    lb_tensor *u = lb_layernorm(g, x, w, b, 1e-5f);
    h = lb_add(g, lb_swiglu(g, h, u), lb_gelu(g, lb_scale(g, u, 0.5f)));
    h = lb_mul(g, lb_relu2(g, h), lb_silu(g, x));
    h = lb_reshape(g, h, 2, (int[]){16, 32});
    lb_tensor *loss = lb_add(g, lb_mean(g, h), lb_sum(g, x));
    assert_non_null(loss);
    if (lb_backward(g, loss) != LB_OK) fail_msg("backward: %s", lb_errmsg());
    return loss->data[0];
}

static void test_reset_reaches_steady_state(void **state) {
    (void)state;
    lb_graph g;
    /* A small arena, so the first step has to grow it. */
    assert_int_equal(lb_graph_init(&g, 4096), LB_OK);
    int V = 11, D = 32;
    lb_tensor *table = tu_param(2, (int[]){V, D}, 9, -1.0f, 1.0f), *w = tu_param(1, &D, 10, -1.0f, 1.0f), *b = tu_param(1, &D, 11, -1.0f, 1.0f);
    int ids[16];
    for (int p = 0; p < 16; p++) ids[p] = (p * 7) % V;

    float loss1 = step(&g, table, w, b, ids);
    assert_true(g.arena.n_system_allocs > 1);
    int nodes1 = g.n_nodes;
    lb_graph_reset(&g);
    assert_int_equal(g.n_nodes, 0);
    size_t allocs = g.arena.n_system_allocs, capacity = g.arena.capacity;
    lb_node *tape = g.nodes;

    for (int s = 0; s < 3; s++) {
        float loss = step(&g, table, w, b, ids);
        assert_memory_equal(&loss, &loss1, sizeof loss); /* same inputs, same bits */
        assert_int_equal(g.n_nodes, nodes1);
        assert_int_equal(g.arena.n_system_allocs, allocs);
        lb_graph_reset(&g);
        assert_int_equal(g.arena.n_system_allocs, allocs);
        assert_int_equal(g.arena.capacity, capacity);
        assert_ptr_equal(g.nodes, tape);
    }
    lb_tensor_free(table);
    lb_tensor_free(w);
    lb_tensor_free(b);
    lb_graph_free(&g);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tensor_used_twice_gets_both_contributions),
        cmocka_unit_test(test_unwritten_gradients_are_stored),
        cmocka_unit_test(test_only_inputs_needing_grad_are_recorded),
        cmocka_unit_test(test_no_grad_mode_records_nothing),
        cmocka_unit_test(test_errors_name_shapes_and_null_propagates),
        cmocka_unit_test(test_backward_refuses_non_scalar),
        cmocka_unit_test(test_backward_frees_activations_as_it_goes),
        cmocka_unit_test(test_reset_reaches_steady_state),
    };
    return tu_run_group_tests(tests, NULL, NULL);
}
