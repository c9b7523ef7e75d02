/* Tests of quant spec strings (src/quant/qspec.c): every documented form
 * parses to the fields docs/quantization.md gives it and prints back; bad
 * strings are rejected with a message. */
#include <stdio.h>
#include <string.h>

#include "quant/qspec.h"
#include "quant/recipe.h"
#include "testutil.h"

typedef struct form {
    const char *text;      /* as written in a config */
    const char *canonical; /* what the printer writes */
    lb_qformat format;
    int bits;
    lb_qgran gran;
    int group;
} form;

static const form forms[] = {
    {"none", "none", LB_QF_NONE, 32, LB_QG_TENSOR, 0},
    {"binary", "binary", LB_QF_BINARY, 1, LB_QG_TENSOR, 0},
    {"ternary", "ternary", LB_QF_TERNARY, 2, LB_QG_TENSOR, 0},
    {"ternary:per_tensor", "ternary", LB_QF_TERNARY, 2, LB_QG_TENSOR, 0},
    {"ternary:per_channel", "ternary:per_channel", LB_QF_TERNARY, 2, LB_QG_ROW, 0},
    {"ternary:g128", "ternary:g128", LB_QF_TERNARY, 2, LB_QG_GROUP, 128},
    {"binary:per_channel", "binary:per_channel", LB_QF_BINARY, 1, LB_QG_ROW, 0},
    {"int8:per_token", "int8:per_token", LB_QF_INT, 8, LB_QG_ROW, 0},
    {"int8:per_channel", "int8:per_channel", LB_QF_INT, 8, LB_QG_ROW, 0},
    {"int8:per_channel:asym", "int8:per_channel:asym", LB_QF_INT, 8, LB_QG_ROW, 0},
    {"int4:g128:sym", "int4:g128", LB_QF_INT, 4, LB_QG_GROUP, 128},
    {"int4:per_token", "int4:per_token", LB_QF_INT, 4, LB_QG_ROW, 0},
    {"int2:g32:asym", "int2:g32:asym", LB_QF_INT, 2, LB_QG_GROUP, 32},
    {"int3", "int3", LB_QF_INT, 3, LB_QG_TENSOR, 0},
    {"int8:per_token:b1", "int8:per_token:b1", LB_QF_INT, 8, LB_QG_ROW, 0},
    {"int8:per_token:asym:b1", "int8:per_token:asym:b1", LB_QF_INT, 8, LB_QG_ROW, 0},
    {"int8:sr", "int8:sr", LB_QF_INT, 8, LB_QG_TENSOR, 0},
    {"fp8_e4m3", "fp8_e4m3", LB_QF_FP8_E4M3, 8, LB_QG_TENSOR, 0},
    {"fp8_e4m3:per_channel", "fp8_e4m3:per_channel", LB_QF_FP8_E4M3, 8, LB_QG_ROW, 0},
    {"fp8_e4m3:raw:nosat", "fp8_e4m3:nosat:raw", LB_QF_FP8_E4M3, 8, LB_QG_TENSOR, 0},
    {"fp8_e5m2:sr", "fp8_e5m2:sr", LB_QF_FP8_E5M2, 8, LB_QG_TENSOR, 0},
    {"fp8_e5m2:sat", "fp8_e5m2", LB_QF_FP8_E5M2, 8, LB_QG_TENSOR, 0},
    {"fp4_e2m1:g16", "fp4_e2m1:g16", LB_QF_FP4_E2M1, 4, LB_QG_GROUP, 16},
    {"mxfp8", "mxfp8", LB_QF_MXFP8, 8, LB_QG_GROUP, 32},
    {"mxfp4", "mxfp4", LB_QF_MXFP4, 4, LB_QG_GROUP, 32},
    {"mxfp4:g32", "mxfp4", LB_QF_MXFP4, 4, LB_QG_GROUP, 32},
    {"bf16", "bf16", LB_QF_BF16, 16, LB_QG_TENSOR, 0},
    {"fp16", "fp16", LB_QF_FP16, 16, LB_QG_TENSOR, 0},
    {"int4:g128:lsq", "int4:g128:lsq", LB_QF_INT, 4, LB_QG_GROUP, 128},
    {"int8:lsq:per_channel", "int8:per_channel:lsq", LB_QF_INT, 8, LB_QG_ROW, 0},
    {"int8:lsq", "int8:lsq", LB_QF_INT, 8, LB_QG_TENSOR, 0},
};

static void test_documented_forms(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        const form *f = &forms[i];
        lb_qspec s, back;
        if (lb_qspec_parse(f->text, &s) != LB_OK) fail_msg("'%s' rejected: %s", f->text, lb_errmsg());
        assert_int_equal(s.format, f->format);
        assert_int_equal(s.bits, f->bits);
        assert_int_equal(s.gran, f->gran);
        if (f->gran == LB_QG_GROUP) assert_int_equal(s.group, f->group);
        char buf[64];
        int n = lb_qspec_format(&s, buf, sizeof buf);
        assert_int_equal(n, (int)strlen(f->canonical));
        if (strcmp(buf, f->canonical) != 0) fail_msg("'%s' printed as '%s', want '%s'", f->text, buf, f->canonical);
        /* The canonical text parses to the same spec. */
        assert_int_equal(lb_qspec_parse(buf, &back), LB_OK);
        assert_memory_equal(&s, &back, sizeof s);
    }
}

static void test_flags(void **state) {
    (void)state;
    lb_qspec s;
    assert_int_equal(lb_qspec_parse("int8:per_token", &s), LB_OK);
    assert_true(s.per_token && !s.asymmetric && !s.stochastic && !s.b1);
    assert_int_equal(lb_qspec_parse("int8:per_channel:asym", &s), LB_OK);
    assert_true(!s.per_token && s.asymmetric);
    assert_int_equal(lb_qspec_parse("fp8_e4m3", &s), LB_OK);
    assert_true(s.saturate && !s.raw);
    assert_int_equal(lb_qspec_parse("fp8_e5m2:nosat:raw", &s), LB_OK);
    assert_true(!s.saturate && s.raw);
    assert_int_equal(lb_qspec_parse("int4:g64:sr", &s), LB_OK);
    assert_true(s.stochastic && !s.lsq);
    assert_int_equal(lb_qspec_parse("int4:g128:lsq", &s), LB_OK);
    assert_true(s.lsq && !s.stochastic && !s.asymmetric);
    lb_qspec n = lb_qspec_none();
    assert_true(lb_qspec_is_none(&n));
    char buf[8];
    /* snprintf semantics: the full length is returned when truncated. */
    assert_int_equal(lb_qspec_format(&(lb_qspec){.format = LB_QF_FP8_E4M3, .bits = 8, .gran = LB_QG_ROW, .saturate = 1},
                                     buf, sizeof buf),
                     20);
    assert_string_equal(buf, "fp8_e4m");
}

static void test_bad_strings(void **state) {
    (void)state;
    const char *bad[] = {"",         "int9",         "int1",          "int",         "int8:",      ":int8",
                         "int8::g4", "int4:g0",      "int4:gx",       "int4:g12x",   "ternary:sym", "bf16:per_channel",
                         "mxfp4:g16", "int8:per_token:per_channel", "int8:sym:asym", "float8", "fp8_e4m3:asym",
                         "int8:nosat", "ternary:sr", "binary:raw", "fp8_e4m3:raw:per_channel", "none:g4", "INT8",
                         "int8:b1:b1", "ternary:lsq", "fp8_e4m3:lsq", "int8:lsq:lsq", "int8:asym:lsq",
                         "int8:lsq:sr", "int8:per_token:b1:lsq", "int8:per_token:lsq"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        lb_qspec s;
        lb_error_clear();
        if (lb_qspec_parse(bad[i], &s) != LB_ECONFIG) fail_msg("'%s' was accepted", bad[i]);
        assert_non_null(strstr(lb_errmsg(), "quant spec"));
    }
    lb_qspec s;
    assert_int_equal(lb_qspec_parse("int9", &s), LB_ECONFIG);
    assert_non_null(strstr(lb_errmsg(), "int2..int8"));
    assert_int_equal(lb_qspec_parse("int4:bogus", &s), LB_ECONFIG);
    assert_non_null(strstr(lb_errmsg(), "'bogus'"));
    assert_int_equal(lb_qspec_parse(NULL, &s), LB_ECONFIG);
    /* per_token with lsq says why and what to use instead. */
    assert_int_equal(lb_qspec_parse("int8:per_token:lsq", &s), LB_ECONFIG);
    assert_non_null(strstr(lb_errmsg(), "per_tensor"));
    assert_int_equal(lb_qspec_parse("int8:asym:lsq", &s), LB_ECONFIG);
    assert_non_null(strstr(lb_errmsg(), "'asym'"));
}

/* Every row of the format table parses from its name and prints back to it;
 * float formats name the dtype of their elements. */
static void test_format_table(void **state) {
    (void)state;
    for (int f = 0; f < LB_QF_COUNT; f++) {
        const lb_qformat_traits *t = lb_qformat_info((lb_qformat)f);
        assert_non_null(t);
        assert_non_null(t->name);
        char text[32], back[32];
        snprintf(text, sizeof text, "%s", f == LB_QF_INT ? "int8" : t->name);
        lb_qspec q;
        assert_int_equal(lb_qspec_parse(text, &q), LB_OK);
        assert_int_equal(q.format, f);
        assert_int_equal(q.bits, t->bits);
        lb_qspec_format(&q, back, sizeof back);
        assert_string_equal(back, text);
    }
    assert_null(lb_qformat_info(LB_QF_COUNT));
    assert_int_equal(lb_qformat_info(LB_QF_FP8_E4M3)->element, LB_DT_F8_E4M3);
    assert_int_equal(lb_qformat_info(LB_QF_MXFP8)->element, LB_DT_F8_E4M3);
    assert_int_equal(lb_qformat_info(LB_QF_FP8_E5M2)->element, LB_DT_F8_E5M2);
    assert_int_equal(lb_qformat_info(LB_QF_BF16)->element, LB_DT_BF16);
    assert_int_equal(lb_qformat_info(LB_QF_FP16)->element, LB_DT_F16);
    assert_int_equal(lb_qformat_info(LB_QF_TERNARY)->element, -1);
    assert_int_equal(lb_qformat_info(LB_QF_FP4_E2M1)->element, -1);
}

static void assert_same_spec(const lb_qspec *a, const lb_qspec *b) {
    assert_int_equal(a->format, b->format);
    assert_int_equal(a->bits, b->bits);
    assert_int_equal(a->gran, b->gran);
    assert_int_equal(a->group, b->group);
    assert_int_equal(a->asymmetric, b->asymmetric);
    assert_int_equal(a->per_token, b->per_token);
    assert_int_equal(a->stochastic, b->stochastic);
    assert_int_equal(a->saturate, b->saturate);
    assert_int_equal(a->b1, b->b1);
    assert_int_equal(a->raw, b->raw);
}

/* The presets are the BitNet recipes, exactly what their spec strings parse to. */
static void test_recipes(void **state) {
    (void)state;
    static const struct { lb_quant_preset p; const char *name, *weight, *activation; } want[] = {
        {LB_PRESET_FP32, "fp32", "none", "none"},
        {LB_PRESET_B1, "b1", "binary", "int8:per_token:b1"},
        {LB_PRESET_B158, "b1.58", "ternary", "int8:per_token"},
    };
    _Static_assert(sizeof want / sizeof want[0] == LB_PRESET_COUNT, "one expectation per preset");
    for (int i = 0; i < LB_PRESET_COUNT; i++) {
        const lb_quant_recipe *r = lb_quant_recipe_of(want[i].p);
        assert_non_null(r);
        assert_string_equal(lb_quant_preset_names[want[i].p], want[i].name);
        assert_non_null(r->about);
        char text[64];
        lb_qspec q;
        lb_qspec_format(&r->weight, text, sizeof text);
        assert_string_equal(text, want[i].weight);
        assert_int_equal(lb_qspec_parse(want[i].weight, &q), LB_OK);
        assert_same_spec(&q, &r->weight);
        lb_qspec_format(&r->activation, text, sizeof text);
        assert_string_equal(text, want[i].activation);
        assert_int_equal(lb_qspec_parse(want[i].activation, &q), LB_OK);
        assert_same_spec(&q, &r->activation);
    }
    assert_null(lb_quant_recipe_of(LB_PRESET_COUNT));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_documented_forms),
        cmocka_unit_test(test_flags),
        cmocka_unit_test(test_bad_strings),
        cmocka_unit_test(test_format_table),
        cmocka_unit_test(test_recipes),
    };
    return tu_run_group_tests(tests, NULL, NULL);
}
