/* Hugging Face model directories into lowbit models (hf_import.h). */
#include "interop/hf_import.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "interop/hf_names.h"
#include "io/safetensors.h"

int lb_hf_is_model_dir(const char *path) {
    struct stat sb;
    char p[PATH_MAX];
    if (stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode)) return 0;
    snprintf(p, sizeof p, "%s/config.json", path);
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

lb_status lb_hf_read_config(const char *dir, lb_hf_config *h) {
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/config.json", dir);
    return lb_hf_config_read(p, h);
}

static int is_packed(const lb_hf_config *h, const lb_param *p) {
    return (h->quant == LB_HF_QUANT_PACKED || h->quant == LB_HF_QUANT_PACKED_INV) && p->role != LB_ROLE_OUTPUT &&
           lb_param_role_of(p->role)->kind == LB_PARAM_LINEAR;
}

static void shape_text(int ndim, const int64_t *shape, char *buf, size_t size) {
    size_t n = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < ndim && n < size; i++) n += (size_t)snprintf(buf + n, size - n, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (n < size) snprintf(buf + n, size - n, "]");
}

/* The tensor `name` with dtype `dtype` ("U8") or, for NULL, a float dtype
 * (the config's torch_dtype when it names one) and the given shape. */
static lb_status find_checked(const lb_st *st, const char *dir, const lb_hf_config *h, const char *name,
                              const char *dtype, int ndim, const int64_t *shape, const lb_st_tensor **out) {
    char want[96], got[96];
    shape_text(ndim, shape, want, sizeof want);
    const lb_st_tensor *t = lb_st_find(st, name);
    if (!t)
        return lb_error(LB_EFORMAT, "%s: tensor '%s' is missing (expected %s %s from config.json)", dir, name,
                        dtype ? dtype : h->dtype >= 0 ? lb_dtype_info((lb_dtype)h->dtype)->safetensors : "a float",
                        want);
    if (dtype) {
        if (strcmp(t->dtype, dtype) != 0)
            return lb_error(LB_EFORMAT, "%s: tensor '%s' has dtype %s, expected %s", t->file, name, t->dtype, dtype);
    } else if (h->dtype >= 0) {
        if (t->dt != h->dtype)
            return lb_error(LB_EFORMAT, "%s: tensor '%s' has dtype %s, expected %s (torch_dtype in config.json)",
                            t->file, name, t->dtype, lb_dtype_info((lb_dtype)h->dtype)->safetensors);
    } else if (t->dt != LB_DT_F32 && t->dt != LB_DT_F16 && t->dt != LB_DT_BF16) {
        return lb_error(LB_EFORMAT, "%s: tensor '%s' has dtype %s, expected F32, F16 or BF16", t->file, name, t->dtype);
    }
    int same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = t->shape[i] == shape[i];
    if (!same) {
        shape_text(t->ndim, t->shape, got, sizeof got);
        return lb_error(LB_EFORMAT, "%s: tensor '%s' has shape %s, expected %s from config.json", t->file, name, got,
                        want);
    }
    *out = t;
    return LB_OK;
}

/* A packed projection [out, in]: codes [out/4, in] and its weight_scale,
 * unpacked as integrations/bitnet.py's unpack_weights does (row r of the
 * weight is bits 2i..2i+1 of packed row r mod out/4, i = r div out/4; the
 * code minus one is the weight), then W = T·s/f (hf_import.h). */
static lb_status load_packed(const lb_st *st, const char *dir, const lb_hf_config *h, const lb_param *p) {
    char name[160], scale_name[160];
    LB_TRY(lb_hf_tensor_name(p, "weight", name, sizeof name));
    LB_TRY(lb_hf_tensor_name(p, "weight_scale", scale_name, sizeof scale_name));
    int out = p->t->shape[0], in = p->t->shape[1];
    if (out % 4 != 0)
        return lb_error(LB_EFORMAT, "%s: tensor '%s': %d output rows do not pack four to a byte", dir, name, out);
    int64_t shape[2] = {out / 4, in}, one = 1;
    const lb_st_tensor *w, *s;
    LB_TRY(find_checked(st, dir, h, name, "U8", 2, shape, &w));
    LB_TRY(find_checked(st, dir, h, scale_name, NULL, 1, &one, &s));
    float scale;
    LB_TRY(lb_st_to_f32(st, s, &scale, 1));
    if (!(scale > 0) || scale > 3.4e38f)
        return lb_error(LB_EFORMAT, "%s: tensor '%s' is %g, expected a positive finite scale", s->file, scale_name,
                        (double)scale);
    if (h->quant == LB_HF_QUANT_PACKED_INV) scale = 1.0f / scale; /* BitLinear divides the product by it */
    const uint8_t *codes = w->data;
    float *dst = p->t->data;
    int rows = out / 4;
    size_t nonzero = 0;
    for (int r = 0; r < out; r++) {
        const uint8_t *src = codes + (size_t)(r % rows) * (size_t)in;
        int shift = 2 * (r / rows);
        for (int k = 0; k < in; k++) {
            int code = (src[k] >> shift) & 3;
            if (code == 3)
                return lb_error(LB_EFORMAT, "%s: tensor '%s': code 3 at packed row %d, column %d (bits %d..%d) is "
                                            "not a ternary weight (codes are 0, 1, 2 for -1, 0, 1)",
                                w->file, name, r % rows, k, shift, shift + 1);
            dst[(size_t)r * (size_t)in + (size_t)k] = (float)(code - 1);
            nonzero += code != 1;
        }
    }
    float m = nonzero ? (float)((double)scale * (double)out * (double)in / (double)nonzero) : 0.0f;
    for (size_t i = 0; i < p->t->n; i++) dst[i] *= m;
    return LB_OK;
}

static lb_status load_float(const lb_st *st, const char *dir, const lb_hf_config *h, const lb_param *p) {
    char name[160];
    LB_TRY(lb_hf_tensor_name(p, "weight", name, sizeof name));
    int64_t shape[8];
    for (int i = 0; i < p->t->ndim; i++) shape[i] = p->t->shape[i];
    const lb_st_tensor *t;
    LB_TRY(find_checked(st, dir, h, name, NULL, p->t->ndim, shape, &t));
    LB_TRY(lb_st_to_f32(st, t, p->t->data, p->t->n));
    size_t bad = lb_find_nonfinite(p->t->data, p->t->n);
    if (bad) return lb_error(LB_EFORMAT, "%s: tensor '%s' holds a non-finite value at element %zu", t->file, name, bad - 1);
    return LB_OK;
}

/* A checkpoint of a tied model may still hold lm_head.weight: only a copy of the embedding is accepted. */
static lb_status check_tied_head(const lb_st *st, const lb_model *m, const lb_st_tensor *t) {
    const float *e = m->token_embd->data;
    size_t n = m->token_embd->n;
    if (t->nelements != n)
        return lb_error(LB_EFORMAT, "%s: tensor 'lm_head.weight' present although tie_word_embeddings is true, and of "
                                    "another size than the embedding",
                        t->file);
    float *v = malloc(n * sizeof *v);
    if (!v) return lb_error(LB_ENOMEM, "lm_head.weight");
    lb_status s = lb_st_to_f32(st, t, v, n);
    if (s == LB_OK && memcmp(v, e, n * sizeof *v) != 0)
        s = lb_error(LB_EFORMAT, "%s: tensor 'lm_head.weight' differs from model.embed_tokens.weight although "
                                 "tie_word_embeddings is true in config.json",
                     t->file);
    free(v);
    return s;
}

static int ends_with(const char *s, const char *tail) {
    size_t a = strlen(s), b = strlen(tail);
    return a >= b && strcmp(s + a - b, tail) == 0;
}

/* Every tensor of the files is one the model reads. */
static lb_status check_extra(const lb_st *st, const lb_hf_config *h, const lb_model *m) {
    int n;
    const lb_param *params = lb_model_params(m, &n);
    char name[160];
    for (size_t i = 0; i < lb_st_count(st); i++) {
        const lb_st_tensor *t = lb_st_at(st, i);
        if (ends_with(t->name, ".rotary_emb.inv_freq")) continue; /* a buffer older transformers saved; recomputed */
        if (m->cfg.tie_embeddings && !strcmp(t->name, "lm_head.weight")) {
            LB_TRY(check_tied_head(st, m, t));
            continue;
        }
        int known = 0;
        for (int j = 0; j < n && !known; j++) {
            if (!lb_hf_module_of(params[j].role)) continue;
            LB_TRY(lb_hf_tensor_name(&params[j], "weight", name, sizeof name));
            known = !strcmp(name, t->name);
            if (!known && is_packed(h, &params[j])) {
                LB_TRY(lb_hf_tensor_name(&params[j], "weight_scale", name, sizeof name));
                known = !strcmp(name, t->name);
            }
        }
        if (!known)
            return lb_error(LB_EFORMAT, "%s: tensor '%s' is not part of a %s with the sizes of config.json%s", t->file,
                            t->name, lb_hf_arch_names[h->arch],
                            strstr(t->name, "bias") ? " (biases are not supported)" : "");
    }
    return LB_OK;
}

lb_status lb_hf_load_weights(const char *dir, const lb_hf_config *h, lb_model *m) {
    lb_st *st;
    LB_TRY(lb_st_open(dir, &st));
    int n;
    const lb_param *params = lb_model_params(m, &n);
    lb_status s = LB_OK;
    for (int i = 0; i < n && s == LB_OK; i++) {
        if (!lb_hf_module_of(params[i].role)) continue; /* step sizes: initialised below */
        s = is_packed(h, &params[i]) ? load_packed(st, dir, h, &params[i]) : load_float(st, dir, h, &params[i]);
    }
    if (s == LB_OK) s = check_extra(st, h, m);
    lb_st_close(st);
    if (s == LB_OK) lb_model_init_steps(m);
    return s;
}

lb_status lb_hf_load_tokenizer(const char *dir, int vocab_size, lb_tokenizer **tok) {
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    *tok = lb_tokenizer_load_json(p);
    if (!*tok) return lb_errcode();
    if ((*tok)->vocab_size > vocab_size) {
        lb_status s = lb_error(LB_EFORMAT, "%s: %d tokens, more than vocab_size %d in config.json", p,
                               (*tok)->vocab_size, vocab_size);
        lb_tokenizer_free(*tok);
        *tok = NULL;
        return s;
    }
    return LB_OK;
}

lb_status lb_hf_import(const char *dir, lb_hf_config *h, lb_model **model, lb_tokenizer **tok) {
    *model = NULL;
    *tok = NULL;
    LB_TRY(lb_hf_read_config(dir, h));
    lb_model_config mc;
    lb_hf_config_to_model(h, &mc);
    lb_model *m = lb_model_create(&mc, 0);
    if (!m) {
        lb_error_prefix("%s/config.json", dir);
        return lb_errcode();
    }
    lb_status s = lb_hf_load_weights(dir, h, m);
    if (s == LB_OK) s = lb_hf_load_tokenizer(dir, h->vocab_size, tok);
    if (s != LB_OK) {
        lb_model_free(m);
        return s;
    }
    *model = m;
    return LB_OK;
}
