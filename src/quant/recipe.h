/* Quantization recipes: the presets a config names with model.quant.preset,
 * each a weight spec and an activation spec for the linear layers, defined
 * once in quant/recipe.c and looked up by the config and the layers.
 *
 *   fp32    no quantization
 *   b1      BitNet b1: binary weights, 8-bit absmax activations per token in
 *           the b1 form x·Qb/γ (binary, int8:per_token:b1)
 *   b1.58   BitNet b1.58: ternary absmean weights, 8-bit absmax activations
 *           per token (ternary, int8:per_token) */
#ifndef LOWBIT_QUANT_RECIPE_H
#define LOWBIT_QUANT_RECIPE_H

#include "quant/qspec.h"

typedef enum lb_quant_preset { LB_PRESET_FP32 = 0, LB_PRESET_B1, LB_PRESET_B158, LB_PRESET_COUNT } lb_quant_preset;

typedef struct lb_quant_recipe {
    lb_qspec weight;       /* how a linear layer's weight is quantized */
    lb_qspec activation;   /* how its input is quantized */
    const char *about;     /* what it is, in a few words */
} lb_quant_recipe;

/* "fp32", "b1", "b1.58": the names of model.quant.preset, by lb_quant_preset. */
extern const char *const lb_quant_preset_names[LB_PRESET_COUNT];

/* The recipe of a preset; NULL outside the enum. */
const lb_quant_recipe *lb_quant_recipe_of(lb_quant_preset p);

#endif
