/* Tests of src/ptq: the stored form of RTN for every spec (the forward
 * pass's quantizer gives the chosen weights back exactly), the calibration
 * Hessian against the error computed from the inputs directly, a quantized
 * model's forward pass, and bad input. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layers/model.h"
#include "ptq/gptq.h"
#include "ptq/ptq.h"
#include "quant/quantize.h"
#include "testutil.h"

static lb_qspec spec_of(const char *text) {
    lb_qspec s;
    if (lb_qspec_parse(text, &s) != LB_OK) fail_msg("%s: %s", text, lb_errmsg());
    return s;
}

/* Weights like a trained layer's: normal, a few large ones, a few zeros. */
static float *weights(size_t rows, size_t cols, uint64_t seed) {
    float *w = malloc(rows * cols * sizeof *w);
    lb_rng r;
    lb_rng_init(&r, seed, 1);
    for (size_t i = 0; i < rows * cols; i++) w[i] = 0.02f * lb_rng_normal(&r);
    for (size_t i = 0; i < rows * cols; i += 97) w[i] *= 8.0f;
    for (size_t i = 5; i < rows * cols; i += 211) w[i] = 0.0f;
    return w;
}

static const char *const RTN_SPECS[] = {
    "ternary", "ternary:per_channel", "ternary:g32", "binary", "binary:per_channel",
    "int2:per_channel", "int3:g32", "int4", "int4:per_channel", "int4:g32", "int8:per_channel", "int8:g64",
    "int4:g32:asym", "int8:per_channel:asym", "fp8_e4m3", "fp8_e5m2:per_channel", "fp4_e2m1:g32", "mxfp8",
    "mxfp4", "bf16", "fp16"};

/* For every spec: what the forward pass computes from the stored weights is
 * exactly the quantized weights RTN reports: for all but ternary RTN's
 * rounding itself, stored as such but for the weights at the extreme
 * codes of blocks that would rescale (kept as they were). Ternary keeps RTN's codes and its scale up to rounding. Which specs are idempotent as they are
 * (quantizing the dequantized weights again changes nothing) is printed. */
static void test_rtn_stored_form(void **state) {
    (void)state;
    const size_t rows = 48, cols = 128, n = rows * cols;
    float *w = weights(rows, cols, 7);
    float *stored = malloc(n * sizeof *stored), *q = malloc(n * sizeof *q), *again = malloc(n * sizeof *again);
    float *once = malloc(n * sizeof *once), *twice = malloc(n * sizeof *twice);
    int8_t *codes = malloc(n);
    float scales[48 * 4];
    for (size_t k = 0; k < sizeof RTN_SPECS / sizeof *RTN_SPECS; k++) {
        lb_qspec s = spec_of(RTN_SPECS[k]);
        if (lb_ptq_rtn(&s, w, rows, cols, stored, q) != LB_OK) fail_msg("%s: %s", RTN_SPECS[k], lb_errmsg());
        assert_int_equal(lb_fake_quantize(&s, stored, again, rows, cols, NULL), LB_OK);
        if (memcmp(again, q, n * sizeof *q) != 0) fail_msg("%s: the forward pass changes the stored weights", RTN_SPECS[k]);
        assert_int_equal(lb_fake_quantize(&s, w, once, rows, cols, NULL), LB_OK);
        assert_int_equal(lb_fake_quantize(&s, once, twice, rows, cols, NULL), LB_OK);
        int idempotent = memcmp(once, twice, n * sizeof *once) == 0;
        size_t moved = 0;
        for (size_t i = 0; i < n; i++) moved += stored[i] != q[i];
        print_message("%-22s RTN idempotent: %s; stored weights off the grid: %zu of %zu\n", RTN_SPECS[k],
                      idempotent ? "yes" : "no ", moved, n);
        if (s.format == LB_QF_TERNARY) {
            assert_false(idempotent); /* γ shrinks with every zero: why ternary stores a preimage */
            assert_int_equal(lb_quantize(&s, w, rows, cols, codes, scales, NULL), LB_OK);
            for (size_t i = 0; i < n; i++) {
                int sign = (q[i] > 0) - (q[i] < 0);
                if (sign != codes[i]) fail_msg("%s: element %zu: code %d, stored gives %d", RTN_SPECS[k], i, codes[i], sign);
                if (codes[i]) {
                    size_t b = lb_quant_block_of(&s, rows, cols, i / cols, i % cols);
                    assert_float_equal(fabsf(q[i]), scales[b], 1e-6f * scales[b]);
                }
            }
        } else {
            /* RTN's rounding exactly; the stored weights are it, but for
             * weights kept as they were. */
            assert_memory_equal(q, once, n * sizeof *q);
            size_t kept = 0;
            for (size_t i = 0; i < n; i++)
                if (stored[i] != q[i]) {
                    assert_true(stored[i] == w[i]);
                    kept++;
                }
            assert_true(idempotent || kept > 0);
        }
    }
    free(w);
    free(stored);
    free(q);
    free(again);
    free(once);
    free(twice);
    free(codes);
}

/* ---- models ------------------------------------------------------------------- */

static lb_model_config tiny_config(void) {
    lb_model_config c;
    lb_model_config_defaults(&c);
    c.vocab_size = 64;
    c.dim = 32;
    c.n_layers = 2;
    c.n_heads = 4;
    c.n_kv_heads = 2;
    c.ffn_dim = 64;
    c.max_seq_len = 16;
    c.tie_embeddings = 0;
    return c;
}

static lb_model *create(const lb_model_config *c) {
    lb_model *m = lb_model_create(c, 11);
    if (!m) fail_msg("lb_model_create: %s", lb_errmsg());
    return m;
}

static int *token_ids(size_t n) {
    int *ids = malloc(n * sizeof *ids);
    lb_rng r;
    lb_rng_init(&r, 3, 2);
    for (size_t i = 0; i < n; i++) ids[i] = (int)(i % 5 == 0 ? 7 : lb_rng_below(&r, 64));
    return ids;
}

/* The inputs of one linear layer, captured through the model's hook. */
typedef struct capture {
    int param;
    float *x;
    size_t n, cap;
} capture;

static void capture_input(void *ctx, int param, const lb_tensor *x) {
    capture *c = ctx;
    if (param != c->param) return;
    if (c->n + x->n > c->cap) {
        c->cap = 2 * (c->n + x->n);
        c->x = realloc(c->x, c->cap * sizeof *c->x);
    }
    memcpy(c->x + c->n, x->data, x->n * sizeof *c->x);
    c->n += x->n;
}

enum { B = 3, T = 16, N_CALIB = 3 };

/* The reported error of every layer of the first block is ‖(W − Ŵ)X‖²/n
 * computed from its inputs X directly (the first block's inputs do not
 * depend on the quantization), and later layers' errors are positive. */
static void test_error_against_inputs(void **state) {
    (void)state;
    lb_model_config c = tiny_config();
    lb_model *m = create(&c), *ref = create(&c);
    int *ids = token_ids(4096);
    lb_tokens train = lb_tokens_of_ints(ids, 4096);
    lb_ptq_options o = lb_ptq_options_default();
    o.spec = spec_of("int3:g16");
    o.calib_batches = N_CALIB;
    o.kinds = LB_PTQ_ATTN | LB_PTQ_FFN | LB_PTQ_HEAD;
    lb_ptq_result r;
    if (lb_ptq_run(m, &o, &train, B, T, 5, NULL, NULL, &r) != LB_OK) fail_msg("%s", lb_errmsg());
    assert_int_equal(r.n_layers, 2 * 7 + 1);

    /* The same calibration batches through the unquantized model. */
    lb_batcher bat;
    assert_int_equal(lb_batcher_init_tokens(&bat, &train, B, T, 5), LB_OK);
    int in[B * T], tg[B * T];
    lb_graph g;
    assert_int_equal(lb_graph_init(&g, 0), LB_OK);
    lb_graph_set_grad(&g, 0);
    for (int k = 0; k < r.n_layers; k++) {
        const lb_ptq_layer *l = &r.layers[k];
        const lb_param *p = &ref->params[l->param];
        assert_true(l->err > 0.0 && isfinite(l->err));
        assert_true(l->err == l->err_rtn);
        if (p->layer != 0) continue;
        capture cap = {l->param, NULL, 0, 0};
        ref->linear_input = capture_input;
        ref->linear_input_ctx = &cap;
        lb_batcher_init_tokens(&bat, &train, B, T, 5);
        for (int b = 0; b < N_CALIB; b++) {
            lb_batcher_next(&bat, in, tg);
            lb_graph_reset(&g);
            assert_non_null(lb_model_forward(ref, &g, in, B, T, NULL, NULL));
        }
        ref->linear_input = NULL;
        int rows = p->t->shape[0], K = p->t->shape[1];
        size_t ntok = cap.n / (size_t)K;
        double sum = 0.0;
        /* what the forward pass computes from the stored weights */
        const float *W = p->t->data;
        float *Q = malloc(p->t->n * sizeof *Q);
        assert_int_equal(lb_fake_quantize(&o.spec, m->params[l->param].t->data, Q, (size_t)rows, (size_t)K, NULL),
                         LB_OK);
        for (size_t t = 0; t < ntok; t++)
            for (int i = 0; i < rows; i++) {
                double y = 0.0;
                for (int j = 0; j < K; j++) y += ((double)W[i * K + j] - (double)Q[i * K + j]) * cap.x[t * K + j];
                sum += y * y;
            }
        sum /= (double)ntok;
        assert_float_equal(l->err, sum, 1e-4 * sum);
        free(cap.x);
        free(Q);
    }
    lb_graph_free(&g);
    lb_ptq_result_free(&r, m->n_params);
    free(ids);
    lb_model_free(m);
    lb_model_free(ref);
}

/* A model built with the recorded spec (GPTQ INT: with lsq and GPTQ's steps),
 * holding the stored weights, computes the same logits as the model PTQ left
 * behind running without a weight quantizer on the quantized values: the
 * checkpoint gives eval what PTQ chose. */
static void test_quantized_model_forward(void **state) {
    (void)state;
    const char *specs[] = {"int4:g16", "int8:per_channel", "ternary:per_channel", "fp8_e4m3", "int4:g16", "ternary"};
    const lb_ptq_method methods[] = {LB_PTQ_RTN, LB_PTQ_RTN, LB_PTQ_RTN, LB_PTQ_RTN, LB_PTQ_GPTQ, LB_PTQ_GPTQ};
    int *ids = token_ids(4096);
    lb_tokens train = lb_tokens_of_ints(ids, 4096);
    lb_graph g;
    assert_int_equal(lb_graph_init(&g, 0), LB_OK);
    lb_graph_set_grad(&g, 0);
    for (size_t k = 0; k < sizeof specs / sizeof *specs; k++) {
        lb_model_config c = tiny_config();
        lb_model *m = create(&c);
        lb_ptq_options o = lb_ptq_options_default();
        o.spec = spec_of(specs[k]);
        o.method = methods[k];
        o.calib_batches = 2;
        lb_ptq_result r;
        if (lb_ptq_run(m, &o, &train, B, T, 5, NULL, NULL, &r) != LB_OK) fail_msg("%s", lb_errmsg());
        lb_model_config qc = c;
        qc.attn.mode = qc.ffn.mode = LB_LINEAR_CUSTOM;
        qc.attn.weight = qc.ffn.weight = r.out_spec;
        lb_model *q = create(&qc);
        /* the same table, then GPTQ's steps as LSQ steps (INT) */
        memcpy(q->params_memory, m->params_memory, m->n_elements * sizeof(float));
        assert_int_equal(q->n_params > m->n_params, r.out_spec.lsq);
        for (int i = m->n_params; i < q->n_params; i++) {
            const lb_param *p = &q->params[i];
            assert_int_equal(p->role, LB_ROLE_WEIGHT_STEP);
            assert_non_null(r.steps[p->owner]);
            memcpy(p->t->data, r.steps[p->owner], p->t->n * sizeof(float));
        }
        /* m without quantizers, on what q's quantizers compute */
        for (int i = 0; i < m->n_params; i++) {
            const lb_param *p = &q->params[i];
            size_t rows = (size_t)p->t->shape[0], cols = (size_t)p->t->shape[1];
            if (lb_qspec_is_none(&p->weight) || p->role == LB_ROLE_TOKEN_EMBD) continue;
            if (p->weight.lsq) {
                lb_lsq_forward(&p->weight, p->t->data, m->params[i].t->data, rows, cols,
                               q->tensors[q->weight_step[i]].data, 1.0f);
                assert_memory_equal(m->params[i].t->data, p->t->data, p->t->n * sizeof(float)); /* exact */
            } else {
                assert_int_equal(lb_fake_quantize(&p->weight, p->t->data, m->params[i].t->data, rows, cols, NULL),
                                 LB_OK);
            }
        }
        lb_graph_reset(&g);
        lb_tensor *a = lb_model_forward(m, &g, ids, B, T, NULL, NULL);
        assert_non_null(a);
        size_t n = a->n;
        float *la = malloc(n * sizeof *la);
        memcpy(la, a->data, n * sizeof *la);
        lb_graph_reset(&g);
        lb_tensor *b = lb_model_forward(q, &g, ids, B, T, NULL, NULL);
        assert_non_null(b);
        assert_int_equal(b->n, n);
        for (size_t i = 0; i < n; i++)
            if (la[i] != b->data[i]) fail_msg("%s: logit %zu: %.9g vs %.9g", specs[k], i, la[i], b->data[i]);
        free(la);
        lb_ptq_result_free(&r, m->n_params);
        lb_model_free(m);
        lb_model_free(q);
    }
    lb_graph_free(&g);
    free(ids);
}

static void expect_refused(lb_model *m, const lb_ptq_options *o, const char *needle) {
    assert_int_equal(lb_ptq_check(m, o), LB_ECONFIG);
    if (!strstr(lb_errmsg(), needle)) fail_msg("message '%s' does not name '%s'", lb_errmsg(), needle);
}

static void test_bad_input(void **state) {
    (void)state;
    lb_model_config c = tiny_config();
    lb_model *m = create(&c);
    lb_ptq_options o = lb_ptq_options_default();
    o.spec = spec_of("int4:g24"); /* 24 divides neither 32 nor 64 */
    expect_refused(m, &o, "blk.0.attn_q.weight");
    o.spec = spec_of("int4:g16:lsq");
    expect_refused(m, &o, "lsq");
    o.spec = spec_of("none");
    expect_refused(m, &o, "none");
    lb_model_free(m);

    c.tie_embeddings = 1;
    m = create(&c);
    o.spec = spec_of("int4:g16");
    o.kinds = LB_PTQ_HEAD;
    expect_refused(m, &o, "tie_embeddings");
    lb_model_free(m);

    c.attn.mode = LB_LINEAR_B158;
    m = create(&c);
    o.kinds = LB_PTQ_ATTN;
    expect_refused(m, &o, "already quantize");
    lb_model_free(m);
}

/* ---- GPTQ ------------------------------------------------------------------------ */

/* A Hessian 2·XᵀX/n of correlated inputs, with one dead input (column 3). */
static double *hessian(size_t K, size_t n, uint64_t seed) {
    double *X = malloc(n * K * sizeof *X), *H = calloc(K * K, sizeof *H);
    lb_rng r;
    lb_rng_init(&r, seed, 4);
    for (size_t t = 0; t < n; t++) {
        double common = lb_rng_normal(&r);
        for (size_t j = 0; j < K; j++) X[t * K + j] = (j == 3 ? 0.0 : lb_rng_normal(&r) + (j % 4 == 0 ? 0.8 * common : 0.0)) * (1.0 + 0.02 * (double)(j % 7));
    }
    for (size_t t = 0; t < n; t++)
        for (size_t i = 0; i < K; i++)
            for (size_t j = 0; j < K; j++) H[i * K + j] += 2.0 * X[t * K + i] * X[t * K + j] / (double)n;
    free(X);
    return H;
}

/* With a diagonal Hessian no error moves to another column: GPTQ's codes and
 * steps are RTN's. */
static void test_gptq_diagonal_is_rtn(void **state) {
    (void)state;
    const char *specs[] = {"int4:per_channel", "int4:g32", "int3", "int8:g64", "ternary:per_channel", "ternary:g32"};
    const size_t rows = 24, cols = 128, n = rows * cols;
    float *w = weights(rows, cols, 9), *q = malloc(n * sizeof *q), steps[24 * 4], scales[24 * 4];
    int8_t *codes = malloc(n), *rtn = malloc(n);
    double *H = malloc(cols * cols * sizeof *H);
    for (size_t k = 0; k < sizeof specs / sizeof *specs; k++)
        for (int act = 0; act <= 1; act++) {
            lb_qspec s = spec_of(specs[k]);
            memset(H, 0, cols * cols * sizeof *H);
            for (size_t j = 0; j < cols; j++) H[j * cols + j] = 1.0 + (double)((j * 37) % 11);
            lb_gptq_options o = {0.01, 32, act};
            if (lb_gptq(&s, w, rows, cols, H, &o, codes, steps, q) != LB_OK) fail_msg("%s: %s", specs[k], lb_errmsg());
            assert_int_equal(lb_quantize(&s, w, rows, cols, rtn, scales, NULL), LB_OK);
            assert_memory_equal(codes, rtn, n);
            assert_memory_equal(steps, scales, lb_quant_n_blocks(&s, rows, cols) * sizeof *steps);
        }
    free(w);
    free(q);
    free(codes);
    free(rtn);
    free(H);
}

/* lowbit's GPTQ and scripts/reference/gptq_ref.py (NumPy, written from the
 * paper and the reference implementation's order of operations) on the same
 * weights and Hessian give identical codes and steps. Both update the
 * weights in double and round them to float before quantizing; their
 * updated weights differ only by double rounding (another Cholesky
 * inverse, another summation order: ~1e-16 relative), which changes a
 * float only when a double lands within that of a float rounding boundary,
 * and a code only when that float then sits on a rounding boundary of the
 * quantizer: neither happens with these continuous random values. */
static void test_gptq_matches_reference(void **state) {
    (void)state;
    const struct { const char *spec; int block, act_order; } cases[] = {
        {"int4:per_channel", 128, 0}, {"int4:g32", 128, 0}, {"int4:g32", 16, 0},   {"int3:g64", 32, 1},
        {"ternary", 128, 1},          {"ternary:per_channel", 64, 0}, {"int8:per_channel", 128, 1},
        {"int2:g32", 128, 0},         {"ternary:g32", 48, 0},
    };
    const size_t rows = 40, cols = 128, n = rows * cols;
    float *w = weights(rows, cols, 13), *q = malloc(n * sizeof *q);
    double *H0 = hessian(cols, 400, 21), *H = malloc(cols * cols * sizeof *H);
    int8_t *codes = malloc(n), *ref_codes = malloc(n);
    float steps[40 * 4], ref_steps[40 * 4];
    char dir[256], in[300], out[300], cmd[1200];
    tu_tmpdir(dir, sizeof dir, "gptq");
    snprintf(in, sizeof in, "%s/in.bin", dir);
    snprintf(out, sizeof out, "%s/out.bin", dir);
    FILE *f = fopen(in, "wb");
    assert_non_null(f);
    int32_t shape[2] = {(int32_t)rows, (int32_t)cols};
    assert_int_equal(fwrite(shape, sizeof shape, 1, f), 1);
    assert_int_equal(fwrite(w, sizeof *w, n, f), n);
    assert_int_equal(fwrite(H0, sizeof *H0, cols * cols, f), cols * cols);
    fclose(f);
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        lb_qspec s = spec_of(cases[k].spec);
        size_t nb = lb_quant_n_blocks(&s, rows, cols);
        memcpy(H, H0, cols * cols * sizeof *H);
        lb_gptq_options o = {0.01, cases[k].block, cases[k].act_order};
        if (lb_gptq(&s, w, rows, cols, H, &o, codes, steps, q) != LB_OK) fail_msg("%s: %s", cases[k].spec, lb_errmsg());
        snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/scripts/reference/gptq_ref.py %s %s --spec %s --block %d%s",
                 tu_source_dir(), in, out, cases[k].spec, cases[k].block, cases[k].act_order ? " --act-order" : "");
        int rc = system(cmd);
        if (rc != 0) fail_msg("'%s' failed (status %d): it needs python3-numpy and python3-scipy", cmd, rc);
        f = fopen(out, "rb");
        assert_non_null(f);
        assert_int_equal(fread(ref_codes, 1, n, f), n);
        assert_int_equal(fread(ref_steps, sizeof *ref_steps, nb, f), nb);
        fclose(f);
        size_t differ = 0, moved = 0;
        for (size_t i = 0; i < n; i++) {
            differ += codes[i] != ref_codes[i];
            size_t b = lb_quant_block_of(&s, rows, cols, i / cols, i % cols);
            float lo = s.format == LB_QF_TERNARY ? -1.0f : -(float)(1 << (s.bits - 1)), hi = lo == -1.0f ? 1.0f : -lo - 1;
            moved += codes[i] != (int8_t)fmaxf(fminf(rintf(w[i] / steps[b]), hi), lo);
        }
        print_message("%-20s block %3d%s: %zu of %zu codes differ from the reference; %zu differ from rounding w/step\n",
                      cases[k].spec, cases[k].block, cases[k].act_order ? " act-order" : "          ", differ, n, moved);
        assert_int_equal(differ, 0);
        assert_memory_equal(steps, ref_steps, nb * sizeof *steps);
        assert_true(moved > 0); /* GPTQ did move codes away from plain rounding */
    }
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    tu_run_ok(cmd);
    free(w);
    free(q);
    free(H0);
    free(H);
    free(codes);
    free(ref_codes);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rtn_stored_form),
        cmocka_unit_test(test_error_against_inputs),
        cmocka_unit_test(test_quantized_model_forward),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_gptq_diagonal_is_rtn),
        cmocka_unit_test(test_gptq_matches_reference),
    };
    return tu_run_group_tests(tests, NULL, NULL);
}
