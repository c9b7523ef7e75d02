/* The one map between lowbit's parameters (the roles of layers/model.h) and
 * the tensor names of Hugging Face LlamaForCausalLM / BitNetForCausalLM
 * checkpoints, for import and export alike:
 *
 *   token_embd            model.embed_tokens.weight
 *   blk.N.attn_norm       model.layers.N.input_layernorm.weight
 *   blk.N.attn_q/k/v      model.layers.N.self_attn.{q,k,v}_proj.weight
 *   blk.N.attn_sub_norm   model.layers.N.self_attn.attn_sub_norm.weight   (BitNet)
 *   blk.N.attn_output     model.layers.N.self_attn.o_proj.weight
 *   blk.N.ffn_norm        model.layers.N.post_attention_layernorm.weight
 *   blk.N.ffn_gate/up     model.layers.N.mlp.{gate,up}_proj.weight
 *   blk.N.ffn_sub_norm    model.layers.N.mlp.ffn_sub_norm.weight          (BitNet)
 *   blk.N.ffn_down        model.layers.N.mlp.down_proj.weight
 *   output_norm           model.norm.weight
 *   output                lm_head.weight                                  (untied only)
 *
 * BitNet's packed checkpoints add "<module>.weight_scale" next to each packed
 * projection. Learned step sizes (LSQ) have no Hugging Face name. */
#ifndef LOWBIT_INTEROP_HF_NAMES_H
#define LOWBIT_INTEROP_HF_NAMES_H

#include <stddef.h>

#include "layers/model.h"

/* The module name of a role ("model.layers.%d.self_attn.q_proj"); NULL for roles with none. */
const char *lb_hf_module_of(lb_param_role role);

/* "<module>.<suffix>" of parameter p into buf (suffix "weight" or "weight_scale");
 * LB_EINVAL naming the parameter for roles with no Hugging Face name. */
lb_status lb_hf_tensor_name(const lb_param *p, const char *suffix, char *buf, size_t size);

#endif
