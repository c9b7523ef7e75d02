/* Generation on the runtime: lb_generate's loop (layers/sample.c) with a KV
 * cache. Each step needs the logits of the last token of the window
 * ctx[start..len), start = max(0, len − max_seq_len), at positions 0..: while
 * the window starts where the cache does, only the tokens the cache lacks
 * are run; once it moves, the cache is rebuilt from the window. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "layers/sample.h"
#include "runtime/runtime.h"

lb_status lb_rt_generate(lb_rt_session *s, const int *prompt, int n_prompt, int n_new, float temperature,
                         int top_k, lb_rng *rng, int *out, lb_rt_gen_stats *stats) {
    const lb_model_config *c = lb_rt_model_config(lb_rt_session_model(s));
    const int V = c->vocab_size, window = c->max_seq_len;
    const int n_draw = lb_rt_model_sample_vocab(lb_rt_session_model(s));
    lb_rt_gen_stats st = {0};
    if (stats) *stats = st;
    LB_TRY(lb_generate_check(prompt, n_prompt, n_new, V));

    int *ctx = malloc((size_t)(n_prompt + n_new) * sizeof *ctx);
    float *logits = malloc((size_t)V * sizeof *logits), *scratch = malloc((size_t)V * sizeof *scratch);
    if (!ctx || !logits || !scratch) {
        free(ctx);
        free(logits);
        free(scratch);
        return lb_error(LB_ENOMEM, "generate: buffers for %d tokens", n_prompt + n_new);
    }
    memcpy(ctx, prompt, (size_t)n_prompt * sizeof *ctx);

    lb_status rc = LB_OK;
    int base = 0; /* the cache holds ctx[base .. base + length) */
    lb_rt_session_reset(s);
    for (int i = 0; i < n_new; i++) {
        const int len = n_prompt + i, start = len > window ? len - window : 0;
        const double t0 = omp_get_wtime();
        if (start != base) { /* the window moved: the positions of every token changed */
            lb_rt_session_reset(s);
            base = start;
            st.reprocessed_tokens += len - start - 1;
        }
        const int have = base + lb_rt_session_length(s);
        rc = lb_rt_forward(s, ctx + have, len - have, logits, 0);
        if (rc != LB_OK) {
            lb_error_prefix("generate: token %d", i);
            break;
        }
        const int next = lb_sample_logits(logits, n_draw, temperature, top_k, rng, scratch);
        ctx[len] = next;
        out[i] = next;
        const double dt = omp_get_wtime() - t0;
        if (i == 0) {
            st.prompt_tokens = len - have;
            st.prompt_seconds = dt;
        } else {
            st.decode_tokens++;
            st.decode_seconds += dt;
        }
    }
    if (stats) *stats = st;
    free(ctx);
    free(logits);
    free(scratch);
    return rc;
}
