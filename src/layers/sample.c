/* Sampling: greedy, temperature and top-k, then a plain generation loop. */
#include "layers/sample.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int argmax(const float *v, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    return best;
}

/* The k-th largest value of a[0..n) (k = 1 is the maximum), by quickselect;
 * reorders a. */
static float kth_largest(float *a, int n, int k) {
    int lo = 0, hi = n - 1, want = k - 1;
    while (lo < hi) {
        float pivot = a[lo + (hi - lo) / 2];
        int i = lo, j = hi;
        while (i <= j) { /* Hoare partition, descending order */
            while (a[i] > pivot) i++;
            while (a[j] < pivot) j--;
            if (i <= j) {
                float t = a[i];
                a[i] = a[j];
                a[j] = t;
                i++;
                j--;
            }
        }
        if (want <= j) hi = j;
        else if (want >= i) lo = i;
        else return a[want];
    }
    return a[want];
}

int lb_sample_logits(const float *logits, int V, float temperature, int top_k, lb_rng *rng, float *scratch) {
    if (temperature <= 0.0f || top_k == 1) return argmax(logits, V);

    /* Logits below the k-th largest take no part. */
    float threshold = -INFINITY;
    if (top_k > 1 && top_k < V) {
        memcpy(scratch, logits, (size_t)V * sizeof(float));
        threshold = kth_largest(scratch, V, top_k);
    }

    /* softmax(logits / T) over the candidates, unnormalised; subtracting the
     * max keeps exp() in range. */
    float mx = logits[argmax(logits, V)];
    double total = 0.0;
    for (int i = 0; i < V; i++) {
        scratch[i] = logits[i] >= threshold ? expf((logits[i] - mx) / temperature) : 0.0f;
        total += scratch[i];
    }
    /* Inverse CDF with one uniform number. */
    double u = (double)lb_rng_uniform(rng) * total, cum = 0.0;
    int last = 0;
    for (int i = 0; i < V; i++) {
        if (scratch[i] <= 0.0f) continue;
        cum += scratch[i];
        last = i;
        if (u < cum) return i;
    }
    return last; /* u landed on the rounding slack at the very top */
}

lb_status lb_generate_check(const int *prompt, int n_prompt, int n_new, int V) {
    if (n_prompt < 1) return lb_error(LB_EINVAL, "generate: the prompt needs at least one token, got %d", n_prompt);
    if (n_new < 0) return lb_error(LB_EINVAL, "generate: number of new tokens must be >= 0, got %d", n_new);
    for (int i = 0; i < n_prompt; i++)
        if (prompt[i] < 0 || prompt[i] >= V)
            return lb_error(LB_EINVAL, "generate: prompt token %d is %d, expected an id in [0, %d)", i, prompt[i], V);
    return LB_OK;
}

lb_status lb_generate(lb_model *m, lb_graph *g, const int *prompt, int n_prompt, int n_new, float temperature,
                      int top_k, lb_rng *rng, int *out) {
    const int V = m->cfg.vocab_size, window = m->cfg.max_seq_len;
    const int n_draw = m->sample_vocab > 0 && m->sample_vocab < V ? m->sample_vocab : V; /* ids a tokenizer has */
    LB_TRY(lb_generate_check(prompt, n_prompt, n_new, V));

    int *ctx = malloc((size_t)(n_prompt + n_new) * sizeof *ctx);
    float *scratch = malloc((size_t)V * sizeof *scratch);
    if (!ctx || !scratch) {
        free(ctx);
        free(scratch);
        return lb_error(LB_ENOMEM, "generate: cannot allocate buffers for %d tokens", n_prompt + n_new);
    }
    memcpy(ctx, prompt, (size_t)n_prompt * sizeof *ctx);

    lb_status st = LB_OK;
    int old_grad = lb_graph_set_grad(g, 0);
    for (int i = 0; i < n_new; i++) {
        /* The model sees at most its context length: the last `window` tokens. */
        int len = n_prompt + i;
        int start = len > window ? len - window : 0;
        int T = len - start;
        lb_graph_reset(g);
        lb_tensor *logits = lb_model_forward(m, g, ctx + start, 1, T, NULL, NULL);
        if (!logits) {
            lb_error_prefix("generate: token %d", i);
            st = lb_errcode();
            break;
        }
        int next = lb_sample_logits(logits->data + (size_t)(T - 1) * (size_t)V, n_draw, temperature, top_k, rng, scratch);
        ctx[len] = next;
        out[i] = next;
    }
    lb_graph_set_grad(g, old_grad);
    free(ctx);
    free(scratch);
    return st;
}
