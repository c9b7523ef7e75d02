/* lowbit parameter roles ↔ Hugging Face tensor names (hf_names.h). */
#include "interop/hf_names.h"

#include <stdio.h>

static const char *const MODULES[LB_ROLE_COUNT] = {
    [LB_ROLE_TOKEN_EMBD] = "model.embed_tokens",
    [LB_ROLE_ATTN_NORM] = "model.layers.%d.input_layernorm",
    [LB_ROLE_ATTN_Q] = "model.layers.%d.self_attn.q_proj",
    [LB_ROLE_ATTN_K] = "model.layers.%d.self_attn.k_proj",
    [LB_ROLE_ATTN_V] = "model.layers.%d.self_attn.v_proj",
    [LB_ROLE_ATTN_SUB_NORM] = "model.layers.%d.self_attn.attn_sub_norm",
    [LB_ROLE_ATTN_OUTPUT] = "model.layers.%d.self_attn.o_proj",
    [LB_ROLE_FFN_NORM] = "model.layers.%d.post_attention_layernorm",
    [LB_ROLE_FFN_GATE] = "model.layers.%d.mlp.gate_proj",
    [LB_ROLE_FFN_UP] = "model.layers.%d.mlp.up_proj",
    [LB_ROLE_FFN_SUB_NORM] = "model.layers.%d.mlp.ffn_sub_norm",
    [LB_ROLE_FFN_DOWN] = "model.layers.%d.mlp.down_proj",
    [LB_ROLE_OUTPUT_NORM] = "model.norm",
    [LB_ROLE_OUTPUT] = "lm_head",
    [LB_ROLE_WEIGHT_STEP] = NULL,
    [LB_ROLE_ACT_STEP] = NULL,
};
_Static_assert(sizeof MODULES / sizeof *MODULES == LB_ROLE_COUNT, "one Hugging Face module per role");

const char *lb_hf_module_of(lb_param_role role) { return (unsigned)role < LB_ROLE_COUNT ? MODULES[role] : NULL; }

lb_status lb_hf_tensor_name(const lb_param *p, const char *suffix, char *buf, size_t size) {
    const char *module = lb_hf_module_of(p->role);
    if (!module)
        return lb_error(LB_EINVAL, "parameter '%s' has no Hugging Face name (learned step sizes stay in lowbit)",
                        p->t->name);
    char m[128];
    if (lb_param_role_of(p->role)->per_layer) snprintf(m, sizeof m, module, p->layer);
    else snprintf(m, sizeof m, "%s", module);
    if ((size_t)snprintf(buf, size, "%s.%s", m, suffix) >= size)
        return lb_error(LB_EINVAL, "parameter '%s': name too long", p->t->name);
    return LB_OK;
}
