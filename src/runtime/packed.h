/* The runtime's model as runtime/pack.c builds it and runtime/forward.c
 * reads it (internal to src/runtime). */
#ifndef LOWBIT_RUNTIME_PACKED_H
#define LOWBIT_RUNTIME_PACKED_H

#include "quant/qspec.h"
#include "runtime/kernels.h"
#include "runtime/runtime.h"

/* How a linear layer stores its weight. */
typedef enum lb_rt_wformat {
    LB_RT_W_TERNARY = 0,  /* 2-bit codes and the tensor scale (kernels.h) */
    LB_RT_W_BINARY,       /* 1-bit signs and the tensor scale */
    LB_RT_W_F32,          /* fp32 [n, k]: the weight as the training forward multiplies it */
    LB_RT_W_COUNT
} lb_rt_wformat;

/* How a linear layer's input is prepared for the product. */
typedef enum lb_rt_input {
    LB_RT_IN_AS_IS = 0,   /* fp32 as it is */
    LB_RT_IN_CODES,       /* int8 codes with a scale per token (packed layers) */
    LB_RT_IN_FAKE_QUANT   /* fp32 fake-quantized with `spec` blended by λ, as lb_qmatmul does */
} lb_rt_input;

typedef struct lb_rt_linear {
    const char *name;          /* the parameter's name, for messages */
    lb_rt_wformat format;
    int n, k;                  /* outputs, inputs */
    int kp;                    /* k padded to LB_RT_GROUP (packed formats) */
    size_t row_bytes;          /* packed formats */
    const uint8_t *packed;     /* [n, row_bytes] */
    const float *w;            /* LB_RT_W_F32: [n, k] */
    float scale;               /* packed: the weight's step d_w from lb_quantize */
    lb_rt_input input;
    lb_qspec act;              /* CODES, FAKE_QUANT: the activation spec */
    float lambda;              /* FAKE_QUANT: λ of gradual quantization */
    /* CODES: s = act_num / max(max|x|, 1e-5), codes clamp(rint(x·s), act_min, act_max),
     * step 1/s: lb_quantize's symmetric INT (and b1) form of the spec. */
    float act_num, act_min, act_max;
} lb_rt_linear;

typedef struct lb_rt_block {
    const float *attn_norm, *attn_sub_norm, *ffn_norm, *ffn_sub_norm; /* sub-norms NULL without SubLN */
    lb_rt_linear q, k, v, o, gate, up, down;
} lb_rt_block;

struct lb_rt_model {
    lb_model_config cfg;
    int L, d, H, Hkv, Dh, q_dim, kv_dim, F, V, max_seq;
    int n_draw; /* ids generation draws from: [0, n_draw), the tokenizer's (lb_model.sample_vocab) */
    lb_rt_isa isa;
    const lb_rt_kernels *kern;
    int prefetchw;              /* the CPU has PREFETCHW (runtime/isa.c): a decoding pass asks for its output lines ahead */
    const float *embd;          /* [V, d] the lookup table (fake-quantized when the config says so) */
    const float *output_norm;
    lb_rt_linear head;          /* [V, d]: the embedding itself when tied and fp32 */
    lb_rt_block *blocks;
    const float *rope_cos, *rope_sin; /* [max_seq, Dh/2], as lb_rope computes them */
    float attn_scale;           /* 1/sqrt(Dh) */
    int width_max;              /* widest linear input (padded) */
    void **allocs;              /* everything to free */
    int n_allocs, cap_allocs;
    lb_rt_info info;
};

/* The kernel table of an instruction set (runtime/isa.c); NULL when not built. */
const lb_rt_kernels *lb_rt_isa_kernels(lb_rt_isa isa);

/* Whether the CPU has PREFETCHW (CPUID 8000_0001h ECX bit 8; runtime/isa.c). */
int lb_rt_cpu_prefetchw(void);

#endif
