/* The presets (see recipe.h), as parsed specs: what lb_qspec_parse gives for
 * the spec strings in the comments (tests/test_quant_qspec.c checks it). */
#include "quant/recipe.h"

#include <stddef.h>

const char *const lb_quant_preset_names[] = {
    [LB_PRESET_FP32] = "fp32",
    [LB_PRESET_B1] = "b1",
    [LB_PRESET_B158] = "b1.58",
};
_Static_assert(sizeof lb_quant_preset_names / sizeof lb_quant_preset_names[0] == LB_PRESET_COUNT,
               "quant/recipe.c: one name per lb_quant_preset");

/* "none" */
#define NONE {.format = LB_QF_NONE, .bits = 32, .saturate = 1}
/* "int8:per_token", and with :b1 */
#define INT8_PER_TOKEN(b1_form) \
    {.format = LB_QF_INT, .bits = 8, .gran = LB_QG_ROW, .per_token = 1, .saturate = 1, .b1 = (b1_form)}

static const lb_quant_recipe recipes[] = {
    [LB_PRESET_FP32] = {NONE, NONE, "full precision: no quantization"},
    /* BitNet b1: W̃ = sign(W − α)·β with α = mean W, β = mean|W|; activations
     * absmax per token in the b1 form x̃ = clip(round(x·Qb/γ), ±(Qb − 1)), Qb = 128. */
    [LB_PRESET_B1] = {{.format = LB_QF_BINARY, .bits = 1, .saturate = 1}, INT8_PER_TOKEN(1),
                      "BitNet b1: binary weights, 8-bit activations per token (b1 form)"},
    /* BitNet b1.58: W̃ = clamp(round(W/γ), −1, 1)·γ with γ = mean|W|;
     * activations x̃ = clamp(round(x·127/max|x|), −128, 127) per token. */
    [LB_PRESET_B158] = {{.format = LB_QF_TERNARY, .bits = 2, .saturate = 1}, INT8_PER_TOKEN(0),
                        "BitNet b1.58: ternary weights, 8-bit activations per token"},
};
_Static_assert(sizeof recipes / sizeof recipes[0] == LB_PRESET_COUNT, "quant/recipe.c: one recipe per lb_quant_preset");

const lb_quant_recipe *lb_quant_recipe_of(lb_quant_preset p) {
    return (unsigned)p < LB_PRESET_COUNT ? &recipes[p] : NULL;
}
