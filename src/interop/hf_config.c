/* config.json of LlamaForCausalLM and BitNetForCausalLM (hf_config.h).
 * Keys and defaults as transformers' LlamaConfig and BitNetConfig, and the
 * BitNetQuantConfig of its bitnet integration; docs/interop.md lists them. */
#include "interop/hf_config.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/fileio.h"
#include "layers/linear.h"
#include "layers/model.h"

const char *const lb_hf_arch_names[LB_HF_ARCH_COUNT] = {"LlamaForCausalLM", "BitNetForCausalLM"};
const char *const lb_hf_model_types[LB_HF_ARCH_COUNT] = {"llama", "bitnet"};
const char *const lb_hf_quant_names[LB_HF_QUANT_COUNT] = {"none", "online", "packed",
                                                          "packed (weight_scale divides)"};
_Static_assert(sizeof lb_hf_arch_names / sizeof *lb_hf_arch_names == LB_HF_ARCH_COUNT, "one name per arch");
_Static_assert(sizeof lb_hf_quant_names / sizeof *lb_hf_quant_names == LB_HF_QUANT_COUNT, "one name per quant");

/* The defaults of each architecture's config class, for keys a file leaves out. */
static const lb_hf_config DEFAULTS[LB_HF_ARCH_COUNT] = {
    [LB_HF_LLAMA] = {.arch = LB_HF_LLAMA, .vocab_size = 32000, .hidden_size = 4096, .intermediate_size = 11008,
                     .num_hidden_layers = 32, .num_attention_heads = 32, .num_key_value_heads = 0,
                     .max_position_embeddings = 2048, .rms_norm_eps = 1e-6, .rope_theta = 10000.0,
                     .initializer_range = 0.02, .tie_word_embeddings = 0, .act = LB_FFN_SWIGLU, .dtype = -1},
    [LB_HF_BITNET] = {.arch = LB_HF_BITNET, .vocab_size = 128256, .hidden_size = 2560, .intermediate_size = 6912,
                      .num_hidden_layers = 30, .num_attention_heads = 20, .num_key_value_heads = 5,
                      .max_position_embeddings = 2048, .rms_norm_eps = 1e-5, .rope_theta = 500000.0,
                      .initializer_range = 0.02, .tie_word_embeddings = 0, .act = LB_FFN_RELU2, .dtype = -1},
};

/* torch dtype names as config.json spells them, and their lb_dtype. */
static const struct { const char *name; lb_dtype dt; } TORCH_DTYPES[] = {
    {"float32", LB_DT_F32}, {"float16", LB_DT_F16}, {"bfloat16", LB_DT_BF16}};

static lb_status bad(const char *file, const char *key, const char *fmt, ...) LB_PRINTF(3, 4);
static lb_status bad(const char *file, const char *key, const char *fmt, ...) {
    char why[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    return lb_error(LB_EFORMAT, "%s: key '%s': %s", file, key, why);
}

/* A key that is absent or null keeps *out. */
static lb_status get_int(json_t *o, const char *file, const char *key, int lo, int *out) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return LB_OK;
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > 1 << 30)
        return bad(file, key, "expected an integer >= %d", lo);
    *out = (int)json_integer_value(v);
    return LB_OK;
}

static lb_status get_positive(json_t *o, const char *file, const char *key, double *out) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return LB_OK;
    if (!json_is_number(v) || !(json_number_value(v) > 0) || !isfinite(json_number_value(v)))
        return bad(file, key, "expected a positive number");
    *out = json_number_value(v);
    return LB_OK;
}

static lb_status get_bool(json_t *o, const char *file, const char *key, int *out) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return LB_OK;
    if (!json_is_boolean(v)) return bad(file, key, "expected true or false");
    *out = json_is_true(v);
    return LB_OK;
}

/* A key whose only value lowbit computes is false (absent, null or false). */
static lb_status require_false(json_t *o, const char *file, const char *key, const char *what) {
    int b = 0;
    LB_TRY(get_bool(o, file, key, &b));
    if (b) return bad(file, key, "true (%s) is not supported: lowbit's projections have no bias", what);
    return LB_OK;
}

static lb_status read_arch(json_t *root, const char *file, lb_hf_arch *arch) {
    json_t *a = json_object_get(root, "architectures");
    if (a && !json_is_null(a)) {
        if (!json_is_array(a) || json_array_size(a) != 1 || !json_is_string(json_array_get(a, 0)))
            return bad(file, "architectures", "expected a list of one name");
        const char *name = json_string_value(json_array_get(a, 0));
        for (int i = 0; i < LB_HF_ARCH_COUNT; i++)
            if (!strcmp(name, lb_hf_arch_names[i])) return (*arch = (lb_hf_arch)i), LB_OK;
        return bad(file, "architectures", "'%s' is not supported; expected %s or %s", name, lb_hf_arch_names[0],
                   lb_hf_arch_names[1]);
    }
    json_t *t = json_object_get(root, "model_type");
    if (!json_is_string(t)) return bad(file, "architectures", "missing, and no model_type either");
    for (int i = 0; i < LB_HF_ARCH_COUNT; i++)
        if (!strcmp(json_string_value(t), lb_hf_model_types[i])) return (*arch = (lb_hf_arch)i), LB_OK;
    return bad(file, "model_type", "'%s' is not supported; expected llama or bitnet", json_string_value(t));
}

/* rope_theta (4.x) or rope_parameters {rope_type, rope_theta} (5.x); rope_scaling (4.x). */
static lb_status read_rope(json_t *root, const char *file, lb_hf_config *c) {
    LB_TRY(get_positive(root, file, "rope_theta", &c->rope_theta));
    static const char *const SCALING[] = {"rope_scaling", "rope_parameters"};
    for (int i = 0; i < 2; i++) {
        json_t *s = json_object_get(root, SCALING[i]);
        if (!s || json_is_null(s)) continue;
        if (!json_is_object(s)) return bad(file, SCALING[i], "expected an object or null");
        json_t *type = json_object_get(s, "rope_type");
        if (!type) type = json_object_get(s, "type");
        if (type && !json_is_null(type)) {
            if (!json_is_string(type)) return bad(file, SCALING[i], "rope_type: expected a string");
            if (strcmp(json_string_value(type), "default") != 0)
                return bad(file, SCALING[i],
                           "rope_type '%s' is not supported: lowbit computes the default RoPE "
                           "(inv_freq = theta^(-2i/d)) only",
                           json_string_value(type));
        }
        char key[64];
        snprintf(key, sizeof key, "%s.rope_theta", SCALING[i]);
        json_t *theta = json_object_get(s, "rope_theta");
        if (theta && !json_is_null(theta)) {
            if (!json_is_number(theta) || !(json_number_value(theta) > 0)) return bad(file, key, "expected a positive number");
            c->rope_theta = json_number_value(theta);
        }
    }
    return LB_OK;
}

/* quantization_config of the bitnet integration (BitNetQuantConfig). */
static lb_status read_quant(json_t *root, const char *file, lb_hf_config *c) {
    json_t *q = json_object_get(root, "quantization_config");
    c->quant = LB_HF_QUANT_NONE;
    if (!q || json_is_null(q)) return LB_OK;
    if (!json_is_object(q)) return bad(file, "quantization_config", "expected an object");
    json_t *method = json_object_get(q, "quant_method");
    if (!json_is_string(method) || strcmp(json_string_value(method), "bitnet") != 0)
        return bad(file, "quantization_config.quant_method", "expected \"bitnet\", got %s",
                   json_is_string(method) ? json_string_value(method) : "no string");
    json_t *cls = json_object_get(q, "linear_class"), *mode = json_object_get(q, "quantization_mode");
    const char *cls_s = json_is_string(cls) ? json_string_value(cls) : "bitlinear";
    const char *mode_s = json_is_string(mode) ? json_string_value(mode) : "offline";
    if ((cls && !json_is_string(cls)) || (strcmp(cls_s, "bitlinear") && strcmp(cls_s, "autobitlinear")))
        return bad(file, "quantization_config.linear_class", "expected \"bitlinear\" or \"autobitlinear\"");
    if ((mode && !json_is_string(mode)) || (strcmp(mode_s, "offline") && strcmp(mode_s, "online")))
        return bad(file, "quantization_config.quantization_mode", "expected \"offline\" or \"online\"");
    if (!strcmp(cls_s, "autobitlinear"))
        c->quant = !strcmp(mode_s, "online") ? LB_HF_QUANT_ONLINE : LB_HF_QUANT_PACKED;
    else
        c->quant = LB_HF_QUANT_PACKED_INV;
    int rms = 0;
    LB_TRY(get_bool(q, file, "use_rms_norm", &rms));
    if (rms)
        return bad(file, "quantization_config.use_rms_norm",
                   "true (an extra RMSNorm inside every BitLinear) is not supported");
    json_t *skip = json_object_get(q, "modules_to_not_convert");
    if (skip && !json_is_null(skip)) {
        if (!json_is_array(skip)) return bad(file, "quantization_config.modules_to_not_convert", "expected a list");
        for (size_t i = 0; i < json_array_size(skip); i++) {
            json_t *s = json_array_get(skip, i);
            if (!json_is_string(s) || strcmp(json_string_value(s), "lm_head") != 0)
                return bad(file, "quantization_config.modules_to_not_convert",
                           "only \"lm_head\" is supported (lowbit quantizes every attention and MLP projection "
                           "alike)");
        }
    }
    return LB_OK;
}

lb_status lb_hf_config_parse(const char *text, size_t len, const char *file, lb_hf_config *c) {
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) return lb_error(LB_EFORMAT, "%s:%d:%d: not valid JSON: %s", file, jerr.line, jerr.column, jerr.text);
    lb_status s = LB_OK;
    lb_hf_arch arch = LB_HF_LLAMA;
    if (!json_is_object(root)) {
        s = lb_error(LB_EFORMAT, "%s: expected a JSON object", file);
        goto done;
    }
    if ((s = read_arch(root, file, &arch)) != LB_OK) goto done;
    *c = DEFAULTS[arch];
    if ((s = get_int(root, file, "vocab_size", 1, &c->vocab_size)) != LB_OK ||
        (s = get_int(root, file, "hidden_size", 1, &c->hidden_size)) != LB_OK ||
        (s = get_int(root, file, "intermediate_size", 1, &c->intermediate_size)) != LB_OK ||
        (s = get_int(root, file, "num_hidden_layers", 1, &c->num_hidden_layers)) != LB_OK ||
        (s = get_int(root, file, "num_attention_heads", 1, &c->num_attention_heads)) != LB_OK ||
        (s = get_int(root, file, "num_key_value_heads", 1, &c->num_key_value_heads)) != LB_OK ||
        (s = get_int(root, file, "max_position_embeddings", 1, &c->max_position_embeddings)) != LB_OK ||
        (s = get_positive(root, file, "rms_norm_eps", &c->rms_norm_eps)) != LB_OK ||
        (s = get_positive(root, file, "initializer_range", &c->initializer_range)) != LB_OK ||
        (s = get_bool(root, file, "tie_word_embeddings", &c->tie_word_embeddings)) != LB_OK ||
        (s = require_false(root, file, "attention_bias", "biases on q, k, v and o")) != LB_OK ||
        (s = require_false(root, file, "mlp_bias", "biases on gate, up and down")) != LB_OK ||
        (s = read_rope(root, file, c)) != LB_OK || (s = read_quant(root, file, c)) != LB_OK)
        goto done;
    if (c->num_key_value_heads == 0) c->num_key_value_heads = c->num_attention_heads; /* LlamaConfig: None → heads */
    if (c->hidden_size % c->num_attention_heads != 0) {
        s = bad(file, "num_attention_heads", "%d does not divide hidden_size %d", c->num_attention_heads,
                c->hidden_size);
        goto done;
    }
    if (c->num_attention_heads % c->num_key_value_heads != 0) {
        s = bad(file, "num_key_value_heads", "%d does not divide num_attention_heads %d", c->num_key_value_heads,
                c->num_attention_heads);
        goto done;
    }
    int head_dim = c->hidden_size / c->num_attention_heads;
    if ((s = get_int(root, file, "head_dim", 1, &head_dim)) != LB_OK) goto done;
    if (head_dim != c->hidden_size / c->num_attention_heads) {
        s = bad(file, "head_dim", "%d is not supported: lowbit's heads are hidden_size / num_attention_heads = %d wide",
                head_dim, c->hidden_size / c->num_attention_heads);
        goto done;
    }
    json_t *act = json_object_get(root, "hidden_act");
    if (act && !json_is_null(act)) {
        const char *a = json_is_string(act) ? json_string_value(act) : "";
        if (!strcmp(a, "silu") || !strcmp(a, "swish")) c->act = LB_FFN_SWIGLU;
        else if (!strcmp(a, "relu2")) c->act = LB_FFN_RELU2;
        else {
            s = bad(file, "hidden_act", "'%s' is not supported; expected silu or relu2", a);
            goto done;
        }
    }
    static const char *const DTYPE_KEYS[] = {"torch_dtype", "dtype"};
    for (int k = 0; k < 2; k++) {
        json_t *d = json_object_get(root, DTYPE_KEYS[k]);
        if (!d || json_is_null(d)) continue;
        const char *name = json_is_string(d) ? json_string_value(d) : "";
        int found = -1;
        for (size_t i = 0; i < sizeof TORCH_DTYPES / sizeof *TORCH_DTYPES; i++)
            if (!strcmp(name, TORCH_DTYPES[i].name)) found = (int)TORCH_DTYPES[i].dt;
        if (found < 0) {
            s = bad(file, DTYPE_KEYS[k], "'%s' is not supported; expected float32, float16 or bfloat16", name);
            goto done;
        }
        c->dtype = found;
    }
    if (c->quant != LB_HF_QUANT_NONE && c->arch != LB_HF_BITNET) {
        s = bad(file, "quantization_config", "the bitnet method is read for BitNetForCausalLM only, not %s",
                lb_hf_arch_names[c->arch]);
        goto done;
    }
done:
    json_decref(root);
    return s;
}

lb_status lb_hf_config_read(const char *path, lb_hf_config *c) {
    lb_mapped_file f;
    LB_TRY(lb_map_file(path, &f));
    lb_status s = lb_hf_config_parse((const char *)f.data, f.size, path, c);
    lb_unmap_file(&f);
    return s;
}

static void preset(lb_quant_preset p, lb_linear_quant *q) {
    memset(q, 0, sizeof *q);
    q->mode = (lb_linear_mode)p;
    lb_linear_quant_resolve(q, q, "hf"); /* a preset: cannot fail */
}

void lb_hf_config_to_model(const lb_hf_config *h, lb_model_config *m) {
    lb_model_config_defaults(m);
    m->vocab_size = h->vocab_size;
    m->dim = h->hidden_size;
    m->n_layers = h->num_hidden_layers;
    m->n_heads = h->num_attention_heads;
    m->n_kv_heads = h->num_key_value_heads;
    m->ffn_dim = h->intermediate_size;
    m->max_seq_len = h->max_position_embeddings;
    m->rope_theta = (float)h->rope_theta;
    m->norm_eps = (float)h->rms_norm_eps;
    m->norm = LB_NORM_RMS;
    m->ffn_act = h->act;
    m->sub_norm = h->arch == LB_HF_BITNET;
    m->tie_embeddings = h->tie_word_embeddings;
    m->init_std = (float)h->initializer_range;
    preset(h->quant == LB_HF_QUANT_NONE ? LB_PRESET_FP32 : LB_PRESET_B158, &m->attn);
    m->ffn = m->attn;
    preset(LB_PRESET_FP32, &m->head);
    m->embedding = lb_qspec_none();
}

lb_status lb_hf_config_from_model(const lb_model_config *m, lb_dtype dtype, int packed, lb_hf_config *h) {
    if (m->norm != LB_NORM_RMS) return lb_error(LB_EINVAL, "model.norm: Hugging Face Llama and BitNet use rmsnorm, the model has %s", lb_norm_kind_names[m->norm]);
    if (dtype != LB_DT_F32 && dtype != LB_DT_BF16)
        return lb_error(LB_EINVAL, "export dtype: expected f32 or bf16, got %s", lb_dtype_info(dtype)->name);
    int quantized = m->attn.mode != LB_LINEAR_FP || m->ffn.mode != LB_LINEAR_FP;
    if (quantized && (m->attn.mode != LB_LINEAR_B158 || m->ffn.mode != LB_LINEAR_B158))
        return lb_error(LB_EINVAL,
                        "model.quant: Hugging Face BitNet computes b1.58 attention and ffn projections; the model has "
                        "attn %s and ffn %s",
                        m->attn.mode == LB_LINEAR_CUSTOM ? "custom" : lb_quant_preset_names[m->attn.mode],
                        m->ffn.mode == LB_LINEAR_CUSTOM ? "custom" : lb_quant_preset_names[m->ffn.mode]);
    if (quantized && !m->sub_norm)
        return lb_error(LB_EINVAL, "model.sub_norm: a b1.58 model exports as BitNetForCausalLM, which has SubLN; the "
                                   "model has none");
    if (m->head.mode != LB_LINEAR_FP)
        return lb_error(LB_EINVAL, "model.quant.head: Hugging Face models keep the LM head unquantized");
    if (m->embedding.format != LB_QF_NONE)
        return lb_error(LB_EINVAL, "model.quant.embedding: Hugging Face models keep the embedding unquantized");
    if (m->sub_norm && !quantized)
        return lb_error(LB_EINVAL, "model.sub_norm: SubLN without b1.58 has no Hugging Face architecture "
                                   "(BitNetForCausalLM quantizes its projections)");
    if (packed && !quantized) return lb_error(LB_EINVAL, "--bitnet-packed: the model is not b1.58");
    memset(h, 0, sizeof *h);
    h->arch = quantized ? LB_HF_BITNET : LB_HF_LLAMA;
    h->vocab_size = m->vocab_size;
    h->hidden_size = m->dim;
    h->intermediate_size = m->ffn_dim;
    h->num_hidden_layers = m->n_layers;
    h->num_attention_heads = m->n_heads;
    h->num_key_value_heads = m->n_kv_heads;
    h->max_position_embeddings = m->max_seq_len;
    h->rms_norm_eps = m->norm_eps;
    h->rope_theta = m->rope_theta;
    h->initializer_range = m->init_std;
    h->tie_word_embeddings = m->tie_embeddings;
    h->act = m->ffn_act;
    h->dtype = (int)dtype;
    h->quant = !quantized ? LB_HF_QUANT_NONE : packed ? LB_HF_QUANT_PACKED : LB_HF_QUANT_ONLINE;
    return LB_OK;
}

lb_status lb_hf_config_to_json(const lb_hf_config *h, char **out) {
    *out = NULL;
    const char *dtype = "float32";
    for (size_t i = 0; i < sizeof TORCH_DTYPES / sizeof *TORCH_DTYPES; i++)
        if ((int)TORCH_DTYPES[i].dt == h->dtype) dtype = TORCH_DTYPES[i].name;
    json_t *o = json_object();
    json_object_set_new(o, "architectures", json_pack("[s]", lb_hf_arch_names[h->arch]));
    json_object_set_new(o, "model_type", json_string(lb_hf_model_types[h->arch]));
    json_object_set_new(o, "vocab_size", json_integer(h->vocab_size));
    json_object_set_new(o, "hidden_size", json_integer(h->hidden_size));
    json_object_set_new(o, "intermediate_size", json_integer(h->intermediate_size));
    json_object_set_new(o, "num_hidden_layers", json_integer(h->num_hidden_layers));
    json_object_set_new(o, "num_attention_heads", json_integer(h->num_attention_heads));
    json_object_set_new(o, "num_key_value_heads", json_integer(h->num_key_value_heads));
    json_object_set_new(o, "head_dim", json_integer(h->hidden_size / h->num_attention_heads));
    json_object_set_new(o, "hidden_act", json_string(h->act == LB_FFN_RELU2 ? "relu2" : "silu"));
    json_object_set_new(o, "max_position_embeddings", json_integer(h->max_position_embeddings));
    json_object_set_new(o, "initializer_range", json_real(h->initializer_range));
    json_object_set_new(o, "rms_norm_eps", json_real(h->rms_norm_eps));
    json_object_set_new(o, "rope_theta", json_real(h->rope_theta));
    json_object_set_new(o, "rope_scaling", json_null());
    json_object_set_new(o, "attention_bias", json_false());
    json_object_set_new(o, "attention_dropout", json_real(0.0));
    if (h->arch == LB_HF_LLAMA) json_object_set_new(o, "mlp_bias", json_false());
    json_object_set_new(o, "tie_word_embeddings", json_boolean(h->tie_word_embeddings));
    json_object_set_new(o, "torch_dtype", json_string(dtype));
    json_object_set_new(o, "use_cache", json_true());
    if (h->quant == LB_HF_QUANT_ONLINE || h->quant == LB_HF_QUANT_PACKED)
        json_object_set_new(o, "quantization_config",
                            json_pack("{s:s, s:s, s:s}", "quant_method", "bitnet", "linear_class", "autobitlinear",
                                      "quantization_mode", h->quant == LB_HF_QUANT_ONLINE ? "online" : "offline"));
    else if (h->quant == LB_HF_QUANT_PACKED_INV)
        json_object_set_new(o, "quantization_config",
                            json_pack("{s:s, s:s}", "quant_method", "bitnet", "linear_class", "bitlinear"));
    char *text = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17));
    json_decref(o);
    if (!text) return lb_error(LB_ENOMEM, "config.json");
    size_t n = strlen(text);
    *out = malloc(n + 2);
    if (!*out) {
        free(text);
        return lb_error(LB_ENOMEM, "config.json");
    }
    memcpy(*out, text, n);
    (*out)[n] = '\n';
    (*out)[n + 1] = '\0';
    free(text);
    return LB_OK;
}
