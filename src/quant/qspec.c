/* Parsing and printing quantization spec strings.
 *
 *   spec   := "none" | format { ":" option }
 *   format := binary | ternary | int2 .. int8 | fp8_e4m3 | fp8_e5m2 | fp4_e2m1
 *           | mxfp8 | mxfp4 | bf16 | fp16
 *   option := per_tensor | per_channel | per_token | g<N>   granularity
 *           | sym | asym | b1                                INT only
 *           | sr                                             INT and FP8: stochastic rounding
 *           | sat | nosat | raw                              FP8/FP4
 *           | lsq                                            INT: learned step sizes
 *
 * The printer writes the canonical form: options in the order above, and
 * defaults (per_tensor, sym, sat) left out. */
#include "quant/qspec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MX_BLOCK 32

lb_qspec lb_qspec_none(void) {
    lb_qspec s;
    memset(&s, 0, sizeof s);
    s.format = LB_QF_NONE;
    s.bits = 32;
    s.saturate = 1;
    return s;
}

static const lb_qformat_traits formats[] = {
    [LB_QF_NONE] = {"none", 32, -1},
    [LB_QF_BINARY] = {"binary", 1, -1},
    [LB_QF_TERNARY] = {"ternary", 2, -1},
    [LB_QF_INT] = {"int", 8, -1},
    [LB_QF_FP8_E4M3] = {"fp8_e4m3", 8, LB_DT_F8_E4M3},
    [LB_QF_FP8_E5M2] = {"fp8_e5m2", 8, LB_DT_F8_E5M2},
    [LB_QF_FP4_E2M1] = {"fp4_e2m1", 4, -1},
    [LB_QF_MXFP8] = {"mxfp8", 8, LB_DT_F8_E4M3},
    [LB_QF_MXFP4] = {"mxfp4", 4, -1},
    [LB_QF_BF16] = {"bf16", 16, LB_DT_BF16},
    [LB_QF_FP16] = {"fp16", 16, LB_DT_F16},
};
_Static_assert(sizeof formats / sizeof formats[0] == LB_QF_COUNT, "quant/qspec.c: one row per lb_qformat");

const lb_qformat_traits *lb_qformat_info(lb_qformat f) { return (unsigned)f < LB_QF_COUNT ? &formats[f] : NULL; }

#define EXPECTED_FORMATS "none, binary, ternary, int2..int8, fp8_e4m3, fp8_e5m2, fp4_e2m1, mxfp8, mxfp4, bf16 or fp16"

static int is_fp8(lb_qformat f) { return f == LB_QF_FP8_E4M3 || f == LB_QF_FP8_E5M2; }

lb_status lb_qspec_parse(const char *text, lb_qspec *out) {
    if (!text) return lb_error(LB_ECONFIG, "quant spec: missing (expected e.g. 'ternary' or 'int8:per_token')");
    char buf[128];
    if (strlen(text) >= sizeof buf) return lb_error(LB_ECONFIG, "quant spec '%.40s...': too long", text);
    strcpy(buf, text);

    lb_qspec s = lb_qspec_none();
    char *save = NULL;
    char *tok = strtok_r(buf, ":", &save);
    if (!tok || text[0] == ':' || text[strlen(text) - 1] == ':' || strstr(text, "::"))
        return lb_error(LB_ECONFIG, "quant spec '%s': expected a format (%s) followed by ':'-separated options",
                        text, EXPECTED_FORMATS);

    /* The format name. */
    int known = 0;
    if (strcmp(tok, "none") == 0) {
        known = 1;
    } else if (strncmp(tok, "int", 3) == 0 && tok[3] >= '2' && tok[3] <= '8' && tok[4] == '\0') {
        s.format = LB_QF_INT;
        s.bits = tok[3] - '0';
        known = 1;
    } else {
        for (int f = LB_QF_BINARY; f < LB_QF_COUNT; f++)
            if (f != LB_QF_INT && strcmp(tok, formats[f].name) == 0) {
                s.format = (lb_qformat)f;
                s.bits = formats[f].bits;
                known = 1;
            }
    }
    if (!known) return lb_error(LB_ECONFIG, "quant spec '%s': unknown format '%s', expected %s", text, tok, EXPECTED_FORMATS);
    if (s.format == LB_QF_MXFP8 || s.format == LB_QF_MXFP4) {
        s.gran = LB_QG_GROUP;
        s.group = MX_BLOCK;
    }

    /* Options. */
    int have_gran = 0, have_sym = 0, have_sat = 0;
    while ((tok = strtok_r(NULL, ":", &save)) != NULL) {
        int gran_opt = 0;
        if (strcmp(tok, "per_tensor") == 0) {
            s.gran = LB_QG_TENSOR;
            gran_opt = 1;
        } else if (strcmp(tok, "per_channel") == 0 || strcmp(tok, "per_token") == 0) {
            s.gran = LB_QG_ROW;
            s.per_token = tok[4] == 't';
            gran_opt = 1;
        } else if (tok[0] == 'g' && tok[1] >= '0' && tok[1] <= '9') {
            char *end;
            long g = strtol(tok + 1, &end, 10);
            if (*end != '\0' || g < 1 || g > (1L << 24))
                return lb_error(LB_ECONFIG, "quant spec '%s': bad group '%s', expected g<N> with 1 <= N <= 16777216",
                                text, tok);
            s.gran = LB_QG_GROUP;
            s.group = (int)g;
            gran_opt = 1;
        } else if (strcmp(tok, "sym") == 0 || strcmp(tok, "asym") == 0) {
            if (s.format != LB_QF_INT)
                return lb_error(LB_ECONFIG, "quant spec '%s': '%s' applies to int2..int8 only", text, tok);
            if (have_sym++) return lb_error(LB_ECONFIG, "quant spec '%s': sym/asym given twice", text);
            s.asymmetric = tok[0] == 'a';
        } else if (strcmp(tok, "b1") == 0) {
            if (s.format != LB_QF_INT)
                return lb_error(LB_ECONFIG, "quant spec '%s': 'b1' applies to int2..int8 only", text);
            if (s.b1) return lb_error(LB_ECONFIG, "quant spec '%s': 'b1' given twice", text);
            s.b1 = 1;
        } else if (strcmp(tok, "sr") == 0) {
            if (s.format != LB_QF_INT && !is_fp8(s.format))
                return lb_error(LB_ECONFIG, "quant spec '%s': 'sr' (stochastic rounding) applies to int2..int8, "
                                "fp8_e4m3 and fp8_e5m2 only", text);
            if (s.stochastic) return lb_error(LB_ECONFIG, "quant spec '%s': 'sr' given twice", text);
            s.stochastic = 1;
        } else if (strcmp(tok, "sat") == 0 || strcmp(tok, "nosat") == 0) {
            if (!is_fp8(s.format))
                return lb_error(LB_ECONFIG, "quant spec '%s': '%s' applies to fp8_e4m3 and fp8_e5m2 only", text, tok);
            if (have_sat++) return lb_error(LB_ECONFIG, "quant spec '%s': sat/nosat given twice", text);
            s.saturate = tok[0] == 's';
        } else if (strcmp(tok, "lsq") == 0) {
            if (s.format != LB_QF_INT)
                return lb_error(LB_ECONFIG, "quant spec '%s': 'lsq' (learned step sizes) applies to int2..int8 only", text);
            if (s.lsq) return lb_error(LB_ECONFIG, "quant spec '%s': 'lsq' given twice", text);
            s.lsq = 1;
        } else if (strcmp(tok, "raw") == 0) {
            if (!is_fp8(s.format) && s.format != LB_QF_FP4_E2M1)
                return lb_error(LB_ECONFIG, "quant spec '%s': 'raw' applies to fp8_e4m3, fp8_e5m2 and fp4_e2m1 only",
                                text);
            if (s.raw) return lb_error(LB_ECONFIG, "quant spec '%s': 'raw' given twice", text);
            s.raw = 1;
        } else {
            return lb_error(LB_ECONFIG,
                            "quant spec '%s': unknown option '%s', expected per_tensor, per_channel, per_token, g<N>, "
                            "sym, asym, b1, sr, sat, nosat, raw or lsq",
                            text, tok);
        }
        if (gran_opt) {
            if (have_gran++) return lb_error(LB_ECONFIG, "quant spec '%s': more than one granularity", text);
            if (s.format == LB_QF_NONE || s.format == LB_QF_BF16 || s.format == LB_QF_FP16)
                return lb_error(LB_ECONFIG, "quant spec '%s': this format has no scale, so no granularity", text);
            if ((s.format == LB_QF_MXFP8 || s.format == LB_QF_MXFP4) && !(s.gran == LB_QG_GROUP && s.group == MX_BLOCK))
                return lb_error(LB_ECONFIG, "quant spec '%s': MX formats have blocks of %d (g%d) only", text, MX_BLOCK,
                                MX_BLOCK);
        }
    }
    if (s.format == LB_QF_NONE && (have_gran || have_sym))
        return lb_error(LB_ECONFIG, "quant spec '%s': 'none' takes no options", text);
    if (s.raw && have_gran)
        return lb_error(LB_ECONFIG, "quant spec '%s': 'raw' has no scale, so no granularity", text);
    if (s.lsq && (s.asymmetric || s.b1 || s.stochastic))
        return lb_error(LB_ECONFIG, "quant spec '%s': 'lsq' learns symmetric steps rounded to nearest: it does not "
                        "combine with %s", text, s.asymmetric ? "'asym'" : s.b1 ? "'b1'" : "'sr'");
    if (s.lsq && s.per_token)
        return lb_error(LB_ECONFIG, "quant spec '%s': 'lsq' learns one step per scale block, and the tokens of a batch "
                        "change every step: use one step for the whole input (per_tensor, the default)", text);
    *out = s;
    return LB_OK;
}

int lb_qspec_format(const lb_qspec *s, char *buf, size_t size) {
    char tmp[128];
    int n = 0;
    if (s->format == LB_QF_INT) n = snprintf(tmp, sizeof tmp, "int%d", s->bits);
    else if ((unsigned)s->format < LB_QF_COUNT) n = snprintf(tmp, sizeof tmp, "%s", formats[s->format].name);
    int mx = s->format == LB_QF_MXFP8 || s->format == LB_QF_MXFP4;
    if (s->format != LB_QF_NONE && !mx && !s->raw) {
        if (s->gran == LB_QG_ROW) n += snprintf(tmp + n, sizeof tmp - (size_t)n, s->per_token ? ":per_token" : ":per_channel");
        else if (s->gran == LB_QG_GROUP) n += snprintf(tmp + n, sizeof tmp - (size_t)n, ":g%d", s->group);
    }
    if (s->format == LB_QF_INT) {
        if (s->asymmetric) n += snprintf(tmp + n, sizeof tmp - (size_t)n, ":asym");
        if (s->b1) n += snprintf(tmp + n, sizeof tmp - (size_t)n, ":b1");
    }
    if (s->stochastic && (s->format == LB_QF_INT || is_fp8(s->format))) n += snprintf(tmp + n, sizeof tmp - (size_t)n, ":sr");
    if (is_fp8(s->format) && !s->saturate) n += snprintf(tmp + n, sizeof tmp - (size_t)n, ":nosat");
    if (s->raw && (is_fp8(s->format) || s->format == LB_QF_FP4_E2M1)) n += snprintf(tmp + n, sizeof tmp - (size_t)n, ":raw");
    if (s->lsq && s->format == LB_QF_INT) n += snprintf(tmp + n, sizeof tmp - (size_t)n, ":lsq");
    return snprintf(buf, size, "%s", tmp);
}
