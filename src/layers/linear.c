/* Linear / BitLinear: fake-quantize the weight and the input, then one matmul.
 *
 * Quantizing W on every forward costs O(N·K), small next to the O(M·N·K)
 * matmul, and keeps the latent fp32 weights the only state (no cache to
 * invalidate when the optimizer steps). */
#include "layers/linear.h"

#include <string.h>

lb_status lb_linear_quant_resolve(const lb_linear_quant *in, lb_linear_quant *out, const char *what) {
    lb_linear_quant r;
    memset(&r, 0, sizeof r);
    r.mode = in->mode;
    if (in->mode == LB_LINEAR_CUSTOM) {
        r.weight = in->weight;
        r.activation = in->activation;
    } else {
        const lb_quant_recipe *recipe = lb_quant_recipe_of((lb_quant_preset)in->mode);
        if (!recipe)
            return lb_error(LB_EINVAL, "%s: unknown linear quantization mode %d (expected fp, b1, b1.58 or custom)",
                            what ? what : "linear", (int)in->mode);
        r.weight = recipe->weight;
        r.activation = recipe->activation;
    }
    *out = r;
    return LB_OK;
}

/* One operand of an LSQ layer: learned steps where its spec has lsq, the
 * absmax fake quantizer otherwise, nothing for none. */
static lb_tensor *lsq_operand(lb_graph *g, lb_tensor *v, const lb_qspec *spec, lb_tensor *step, float lambda) {
    if (spec->lsq) return lb_fake_quant_lsq(g, v, step, spec, lambda);
    if (lb_qspec_is_none(spec)) return v;
    return lb_fake_quant(g, v, spec, LB_STE_IDENTITY, lambda);
}

lb_tensor *lb_linear(lb_graph *g, lb_tensor *x, lb_tensor *w, const lb_linear_quant *q, const lb_linear_steps *steps,
                     float lambda) {
    if (!x || !w) return NULL; /* an earlier op failed; its message stands */
    if (w->ndim != 2 || lb_tensor_cols(x) != w->shape[1]) {
        char xs[48], ws[48];
        lb_error(LB_EINVAL, "linear '%s': input %s does not match weight %s (expected [..., K] and [N, K])",
                 w->name ? w->name : "?", lb_shape_str(x, xs, sizeof xs), lb_shape_str(w, ws, sizeof ws));
        return NULL;
    }
    if (!(lambda >= 0.0f && lambda <= 1.0f)) {
        lb_error(LB_EINVAL, "linear '%s': quantization lambda %g outside [0, 1]", w->name ? w->name : "?",
                 (double)lambda);
        return NULL;
    }
    /* An unresolved B1/B158 setting would silently run in fp32: refuse it. */
    if ((q->mode == LB_LINEAR_B1 && q->weight.format != LB_QF_BINARY) ||
        (q->mode == LB_LINEAR_B158 && q->weight.format != LB_QF_TERNARY)) {
        lb_error(LB_EINVAL, "linear '%s': quantization settings not resolved (call lb_linear_quant_resolve)",
                 w->name ? w->name : "?");
        return NULL;
    }

    /* Learned steps: quantize each operand on its own node, then multiply. */
    if (q->mode != LB_LINEAR_FP && (q->weight.lsq || q->activation.lsq)) {
        lb_tensor *ws = steps ? steps->weight : NULL, *as = steps ? steps->activation : NULL;
        if ((q->weight.lsq && !ws) || (q->activation.lsq && !as)) {
            lb_error(LB_EINVAL, "linear '%s': its %s spec has 'lsq' but no learned step was given",
                     w->name ? w->name : "?", q->weight.lsq && !ws ? "weight" : "activation");
            return NULL;
        }
        if (lambda == 0.0f) return lb_matmul(g, x, w, 1);
        return lb_matmul(g, lsq_operand(g, x, &q->activation, as, lambda), lsq_operand(g, w, &q->weight, ws, lambda), 1);
    }

    /* One node for quantize + matmul: its backward adds into x's and w's
     * gradients directly (see autograd/ops_qmatmul.c). */
    if (q->mode != LB_LINEAR_FP && lambda > 0.0f) return lb_qmatmul(g, x, w, &q->activation, &q->weight, lambda);
    return lb_matmul(g, x, w, 1);
}

/* ---- low-bit activation gradients ---------------------------------------- */

typedef struct grad_round_saved {
    lb_grad_precision p;
    uint64_t seed, counter;
} grad_round_saved;

static void grad_round_backward(lb_node *node) {
    const grad_round_saved *s = node->saved;
    lb_tensor *x = node->in[0], *y = node->out;
    /* y's gradient is complete (every consumer ran before this node) and read
     * by no one else, so it is rounded in place. The precision was checked in
     * the forward pass, so this cannot fail. */
    lb_quantize_grad_inplace(y->grad, lb_tensor_rows(y), (size_t)lb_tensor_cols(y), s->p, s->seed, s->counter);
    size_t n = x->n;
#pragma omp parallel for schedule(static) if (n >= 65536)
    for (size_t i = 0; i < n; i++) x->grad[i] += y->grad[i];
}

lb_tensor *lb_grad_round(lb_graph *g, lb_tensor *x, lb_grad_precision p, uint64_t seed, uint64_t counter) {
    if (!x) return NULL;
    if (p != LB_GRAD_FP32 && p != LB_GRAD_FP8 && p != LB_GRAD_INT8) {
        lb_error(LB_EINVAL, "activation gradient precision %d: expected fp32, fp8 or int8", (int)p);
        return NULL;
    }
    if (p == LB_GRAD_FP32 || !lb_graph_needs_grad(g, &x, 1)) return x;
    lb_tensor *y = lb_graph_alloc(g, sizeof *y);
    grad_round_saved *s = lb_graph_alloc(g, sizeof *s);
    if (!y || !s) return NULL;
    *y = (lb_tensor){0};
    lb_tensor_set_shape(y, x->ndim, x->shape);
    y->data = x->data; /* identity forward: a view, no copy */
    s->p = p;
    s->seed = seed;
    s->counter = counter;
    lb_node *node = lb_graph_record(g, "grad_round", grad_round_backward, y, x, NULL, NULL, NULL);
    if (!node) return NULL;
    node->saved = s;
    return y;
}
