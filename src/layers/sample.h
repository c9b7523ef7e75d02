/* Text generation from a model: temperature and top-k sampling.
 *
 * Each new token runs the full forward pass (no-grad) over the last
 * max_seq_len tokens of the context; there is no KV cache. That costs
 * O(T) forward work per token instead of O(1), which is fine for the
 * samples printed during training and keeps the code obviously correct. */
#ifndef LOWBIT_LAYERS_SAMPLE_H
#define LOWBIT_LAYERS_SAMPLE_H

#include "core/rng.h"
#include "layers/model.h"

/* Picks a token id from logits [V].
 *   temperature <= 0: greedy (the largest logit, lowest id on ties);
 *   top_k == 1: greedy as well; top_k > 1: only the top_k largest logits
 *   compete (all logits tied with the k-th are kept); top_k <= 0 or >= V: all.
 * Otherwise draws from softmax(logits / temperature) with one number from
 * `rng`. `scratch` holds V floats. */
int lb_sample_logits(const float *logits, int V, float temperature, int top_k, lb_rng *rng, float *scratch);

/* The checks of lb_generate's arguments (shared with the runtime's
 * lb_rt_generate): LB_EINVAL naming the bad argument or prompt token. */
lb_status lb_generate_check(const int *prompt, int n_prompt, int n_new, int vocab_size);

/* Appends n_new tokens after prompt[0..n_prompt) (n_prompt >= 1), writing
 * them to out[0..n_new). `g` is a graph the caller owns; it is reset before
 * every token (anything in it is lost) and its grad mode is restored on
 * return. `rng` should be a stream LB_STREAM_SAMPLE generator
 * (lb_rng_init(&r, seed, LB_STREAM_SAMPLE)); it advances one number per
 * sampled token. New ids are drawn from [0, m->sample_vocab) when it is set
 * (the tokenizer's ids, when the embedding has padding rows past them).
 * LB_EINVAL for bad arguments or token ids. */
lb_status lb_generate(lb_model *m, lb_graph *g, const int *prompt, int n_prompt, int n_new, float temperature,
                      int top_k, lb_rng *rng, int *out);

#endif
