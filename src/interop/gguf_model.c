/* GGUF → lowbit model (see gguf_model.h). */
#include "interop/gguf_model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/hf_tokenizer.h"
#include "data/utf8.h"
#include "interop/gguf_export.h"
#include "io/gguf.h"
#include "layers/linear.h"

/* Upper bounds on hyperparameters, far above any model lowbit trains; they keep a lying
   header from asking for absurd allocations before the tensors are compared with it. */
#define MAX_HPARAM (1 << 24)

static lb_status get_hparam(const lb_gguf *g, const char *path, const char *arch, const char *name, int required,
                            int64_t dflt, int *out) {
    char key[96];
    snprintf(key, sizeof key, "%s.%s", arch, name);
    int64_t v = dflt;
    if (lb_gguf_find(g, key) || required) LB_TRY(lb_gguf_get_int(g, key, &v));
    if (v < 1 || v > MAX_HPARAM)
        return lb_error(LB_EFORMAT, "%s: %s is %lld; expected 1..%d", path, key, (long long)v, MAX_HPARAM);
    *out = (int)v;
    return LB_OK;
}

static lb_status get_hparam_f(const lb_gguf *g, const char *path, const char *arch, const char *name, double dflt,
                              float *out) {
    char key[96];
    snprintf(key, sizeof key, "%s.%s", arch, name);
    double v = dflt;
    if (lb_gguf_find(g, key)) LB_TRY(lb_gguf_get_float(g, key, &v));
    if (!(v > 0.0 && v < 1e30))
        return lb_error(LB_EFORMAT, "%s: %s is %g; expected a positive number", path, key, v);
    *out = (float)v;
    return LB_OK;
}

/* The model config the file describes, on top of the stored (or default) one. */
static lb_status read_model_config(const lb_gguf *g, const char *path, lb_gguf_arch arch, lb_model_config *c) {
    const char *a = lb_gguf_arch_names[arch];
    LB_TRY(get_hparam(g, path, a, "embedding_length", 1, 0, &c->dim));
    LB_TRY(get_hparam(g, path, a, "block_count", 1, 0, &c->n_layers));
    LB_TRY(get_hparam(g, path, a, "feed_forward_length", 1, 0, &c->ffn_dim));
    LB_TRY(get_hparam(g, path, a, "attention.head_count", 1, 0, &c->n_heads));
    LB_TRY(get_hparam(g, path, a, "attention.head_count_kv", 0, c->n_heads, &c->n_kv_heads));
    LB_TRY(get_hparam(g, path, a, "context_length", 1, 0, &c->max_seq_len));
    LB_TRY(get_hparam_f(g, path, a, "rope.freq_base", 10000.0, &c->rope_theta));
    LB_TRY(get_hparam_f(g, path, a, "attention.layer_norm_rms_epsilon", 1e-5, &c->norm_eps));
    if (c->n_heads > c->dim || c->dim % c->n_heads)
        return lb_error(LB_EFORMAT, "%s: %s.attention.head_count %d does not divide embedding_length %d", path, a,
                        c->n_heads, c->dim);
    int rot = 0;
    LB_TRY(get_hparam(g, path, a, "rope.dimension_count", 0, c->dim / c->n_heads, &rot));
    if (rot != c->dim / c->n_heads)
        return lb_error(LB_EFORMAT, "%s: %s.rope.dimension_count is %d; lowbit rotates whole heads of %d", path, a, rot,
                        c->dim / c->n_heads);
    const lb_gguf_tensor *emb = lb_gguf_find_tensor(g, "token_embd.weight");
    if (!emb || emb->ndim != 2 || emb->shape[1] != c->dim || emb->shape[0] > MAX_HPARAM)
        return lb_error(LB_EFORMAT, "%s: token_embd.weight %s; expected [vocab, %d]", path,
                        emb ? "has another shape" : "is missing", c->dim);
    c->vocab_size = (int)emb->shape[0];
    /* every block must be in the file before the model is allocated for that many */
    char name[64];
    snprintf(name, sizeof name, "blk.%d.ffn_down.weight", c->n_layers - 1);
    if (!lb_gguf_find_tensor(g, name))
        return lb_error(LB_EFORMAT, "%s: %s.block_count is %d but %s is missing", path, a, c->n_layers, name);
    c->norm = LB_NORM_RMS;
    c->ffn_act = LB_FFN_SWIGLU;
    c->sub_norm = arch == LB_GGUF_ARCH_BITNET;
    c->tie_embeddings = lb_gguf_find_tensor(g, "output.weight") == NULL;
    if (arch == LB_GGUF_ARCH_BITNET && !c->tie_embeddings)
        return lb_error(LB_EFORMAT, "%s: a bitnet model with an output.weight (llama.cpp's bitnet ties the head)", path);
    /* The weights are already quantized: keep the input quantizers, drop the weight ones. */
    lb_linear_quant *lq[] = {&c->attn, &c->ffn, &c->head};
    static const char *const what[] = {"attn", "ffn", "head"};
    for (int i = 0; i < 3; i++) {
        lb_linear_quant r;
        LB_TRY(lb_linear_quant_resolve(lq[i], &r, what[i]));
        if (r.activation.lsq)
            return lb_error(LB_EFORMAT, "%s: model.quant.%s learns its input step sizes (lsq), which a GGUF does "
                                        "not hold", path, what[i]);
        lq[i]->mode = LB_LINEAR_CUSTOM;
        lq[i]->weight = lb_qspec_none();
        lq[i]->activation = r.activation;
    }
    c->embedding = lb_qspec_none();
    return lb_model_config_validate(c);
}

static lb_status load_weights(const lb_gguf *g, const char *path, lb_gguf_arch arch, lb_model *m) {
    for (int i = 0; i < m->n_params; i++) {
        lb_tensor *t = m->params[i].t;
        const lb_gguf_tensor *gt = lb_gguf_find_tensor(g, t->name);
        if (!gt) return lb_error(LB_EFORMAT, "%s: tensor %s is missing", path, t->name);
        int same = gt->ndim == t->ndim;
        for (int d = 0; same && d < t->ndim; d++) same = gt->shape[d] == t->shape[d];
        if (!same) {
            char want[64] = "", got[64] = "";
            for (int d = 0; d < t->ndim; d++)
                snprintf(want + strlen(want), sizeof want - strlen(want), "%s%d", d ? ", " : "", t->shape[d]);
            for (int d = 0; d < gt->ndim; d++)
                snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", d ? ", " : "", (long long)gt->shape[d]);
            return lb_error(LB_EFORMAT, "%s: tensor %s has shape [%s]; the hyperparameters say [%s]", path, t->name,
                            got, want);
        }
        LB_TRY(lb_gguf_tensor_to_f32(g, gt, t->data, t->n));
        lb_param_role r = m->params[i].role;
        if (arch == LB_GGUF_ARCH_LLAMA && (r == LB_ROLE_ATTN_Q || r == LB_ROLE_ATTN_K)) {
            float *tmp = malloc(t->n * sizeof *tmp);
            if (!tmp) return lb_error(LB_ENOMEM, "%s: out of memory", t->name);
            lb_rope_permute_rows(t->data, tmp, r == LB_ROLE_ATTN_Q ? m->cfg.n_heads : m->cfg.n_kv_heads, m->head_dim,
                                 t->shape[1], 1);
            memcpy(t->data, tmp, t->n * sizeof *tmp);
            free(tmp);
        }
    }
    size_t expected = (size_t)m->n_params;
    if (lb_gguf_tensor_count(g) != expected)
        return lb_error(LB_EFORMAT, "%s: %zu tensors, the model has %zu", path, lb_gguf_tensor_count(g), expected);
    return LB_OK;
}

/* The byte tokenizer: GPT-2's 256 byte characters in byte order, no merges. */
static int is_byte_vocab(const lb_gguf *g) {
    const lb_gguf_value *toks = lb_gguf_find(g, "tokenizer.ggml.tokens");
    const lb_gguf_value *merges = lb_gguf_find(g, "tokenizer.ggml.merges");
    if (!toks || toks->type != LB_GGUF_ARRAY || toks->elem != LB_GGUF_STRING || toks->n != 256) return 0;
    if (merges && merges->n != 0) return 0;
    for (int b = 0; b < 256; b++) {
        char want[4];
        int len = lb_utf8_encode(lb_byte_level_char((unsigned char)b), want);
        if (toks->strs[b].len != (uint64_t)len || memcmp(toks->strs[b].s, want, (size_t)len)) return 0;
    }
    return 1;
}

static lb_status read_tokenizer(const lb_gguf *g, const char *path, int vocab, lb_tokenizer **out) {
    lb_tokenizer_kind kind = LB_TOKENIZER_HF;
    if (lb_gguf_find(g, "lowbit.tokenizer")) {
        lb_gguf_str k;
        LB_TRY(lb_gguf_get_str(g, "lowbit.tokenizer", &k));
        char name[16] = "";
        if (k.len < sizeof name) memcpy(name, k.s, k.len);
        if (lb_tokenizer_kind_from_name(name, &kind) != LB_OK)
            return lb_error(LB_EFORMAT, "%s: lowbit.tokenizer is not byte, char, bpe or hf", path);
    }
    lb_tokenizer *t = NULL;
    if (lb_gguf_find(g, "tokenizer.huggingface.json")) {
        lb_gguf_str js;
        LB_TRY(lb_gguf_get_str(g, "tokenizer.huggingface.json", &js));
        if (kind != LB_TOKENIZER_BPE) kind = LB_TOKENIZER_HF;
        t = lb_tokenizer_from_json(js.s, js.len, path, kind);
    } else {
        lb_gguf_str model;
        LB_TRY(lb_gguf_get_str(g, "tokenizer.ggml.model", &model));
        int gpt2 = model.len == 4 && !memcmp(model.s, "gpt2", 4);
        if (!gpt2 || !is_byte_vocab(g))
            return lb_error(LB_EFORMAT, "%s: tokenizer.ggml.model '%.*s' without tokenizer.huggingface.json; lowbit "
                                        "reads a tokenizer.json or its own byte vocabulary (gpt2, 256 byte tokens)",
                            path, (int)(model.len > 32 ? 32 : model.len), model.s);
        t = lb_tokenizer_byte();
    }
    if (!t) return lb_errcode();
    if (t->vocab_size > vocab) {
        int n = t->vocab_size;
        lb_tokenizer_free(t);
        return lb_error(LB_EFORMAT, "%s: the tokenizer has %d ids, token_embd.weight %d rows", path, n, vocab);
    }
    *out = t;
    return LB_OK;
}

lb_status lb_gguf_model_load(const char *path, lb_config *cfg, int *has_config, lb_tokenizer **tok, lb_model **model) {
    *tok = NULL;
    *model = NULL;
    lb_gguf *g;
    LB_TRY(lb_gguf_open(path, &g));
    lb_status s = LB_OK;
    lb_gguf_str arch_name;
    lb_gguf_arch arch = LB_GGUF_ARCH_COUNT;
    s = lb_gguf_get_str(g, "general.architecture", &arch_name);
    for (int a = 0; s == LB_OK && a < LB_GGUF_ARCH_COUNT; a++)
        if (arch_name.len == strlen(lb_gguf_arch_names[a]) && !memcmp(arch_name.s, lb_gguf_arch_names[a], arch_name.len))
            arch = (lb_gguf_arch)a;
    if (s == LB_OK && arch == LB_GGUF_ARCH_COUNT)
        s = lb_error(LB_EFORMAT, "%s: general.architecture '%.*s'; lowbit reads bitnet and llama", path,
                     (int)(arch_name.len > 32 ? 32 : arch_name.len), arch_name.s);
    int stored = 0;
    if (s == LB_OK && lb_gguf_find(g, "lowbit.config")) {
        lb_gguf_str y;
        s = lb_gguf_get_str(g, "lowbit.config", &y);
        char *yaml = s == LB_OK ? malloc(y.len + 1) : NULL;
        if (s == LB_OK && !yaml) s = lb_error(LB_ENOMEM, "%s: out of memory", path);
        if (s == LB_OK) {
            memcpy(yaml, y.s, y.len);
            yaml[y.len] = '\0';
            s = lb_config_load_string(yaml, path, cfg);
            if (s != LB_OK) s = lb_error(LB_EFORMAT, "%s: lowbit.config: %s", path, lb_errmsg());
            free(yaml);
            stored = 1;
        }
    } else if (s == LB_OK) {
        lb_config_defaults(cfg);
    }
    if (s == LB_OK) s = read_model_config(g, path, arch, &cfg->model);
    if (s == LB_OK) s = read_tokenizer(g, path, cfg->model.vocab_size, tok);
    if (s == LB_OK && !(*model = lb_model_create(&cfg->model, 0))) s = lb_errcode();
    if (s == LB_OK) s = load_weights(g, path, arch, *model);
    lb_gguf_close(g);
    if (s != LB_OK) {
        if (*model) lb_model_free(*model);
        if (*tok) lb_tokenizer_free(*tok);
        *model = NULL;
        *tok = NULL;
        return s;
    }
    if (has_config) *has_config = stored;
    return LB_OK;
}
