/* Scalar conversions between fp32 and the small float formats, exactly as
 * their specifications define them (OCP 8-bit floating point (OFP8) v1.0,
 * OCP Microscaling (MX) v1.0, IEEE 754 binary16, bfloat16), with
 * round-to-nearest-even. Array kernels over these live in quant/quantize.h. */
#ifndef LOWBIT_QUANT_FORMATS_H
#define LOWBIT_QUANT_FORMATS_H

#include <stdint.h>

/* FP8 E4M3: bias 7, max 448, no infinities, NaN = S.1111.111.
 * saturate: finite values beyond ±448 (and ±inf) become ±448; otherwise NaN. */
uint8_t lb_fp8_e4m3_from_f32(float x, int saturate);
float lb_fp8_e4m3_to_f32(uint8_t code);

/* FP8 E5M2: bias 15, max 57344, inf = S.11111.00, NaN = S.11111.{01,10,11}.
 * saturate: finite overflow becomes ±57344 (inf stays inf); otherwise ±inf. */
uint8_t lb_fp8_e5m2_from_f32(float x, int saturate);
float lb_fp8_e5m2_to_f32(uint8_t code);

/* Stochastic rounding: x goes to the neighbour above with probability equal
 * to its distance from the neighbour below, in units of the spacing, given a
 * uniform u in [0, 1) (round down iff frac < 1 − u). Unbiased below the
 * overflow threshold. */
uint8_t lb_fp8_e4m3_from_f32_sr(float x, float u, int saturate);
uint8_t lb_fp8_e5m2_from_f32_sr(float x, float u, int saturate);

/* FP4 E2M1 (4 low bits): ±{0, 0.5, 1, 1.5, 2, 3, 4, 6}. The format has no
 * inf or NaN: conversion saturates at ±6 (±inf too) and NaN becomes +0 (MX
 * blocks flag NaN through their E8M0 scale instead, see quant/quantize.h). */
uint8_t lb_fp4_e2m1_from_f32(float x);
float lb_fp4_e2m1_to_f32(uint8_t code);

/* E8M0 shared scale of MX blocks: 2^(code − 127); code 255 is NaN. */
float lb_e8m0_to_f32(uint8_t code);
/* E8M0 code of 2^e, e clamped to [-127, 127]. */
uint8_t lb_e8m0_from_exp(int e);

uint16_t lb_bf16_from_f32(float x);
float lb_bf16_to_f32(uint16_t h);
uint16_t lb_fp16_from_f32(float x);
float lb_fp16_to_f32(uint16_t h);

#endif
