/* lowbit model → GGUF (see gguf_export.h and docs/export.md).
 *
 * Keys and tensor names are those llama.cpp's loader reads (llama-arch.cpp,
 * llama-model.cpp load_hparams / load_tensors, llama-vocab.cpp load); which
 * tensor gets which type follows convert_hf_to_gguf.py's prepare_tensors. */
#include "interop/gguf_export.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/hf_tokenizer.h"
#include "data/utf8.h"
#include "io/gguf.h"
#include "quant/quantize.h"

const char *const lb_gguf_arch_names[LB_GGUF_ARCH_COUNT] = {[LB_GGUF_ARCH_BITNET] = "bitnet",
                                                           [LB_GGUF_ARCH_LLAMA] = "llama"};

static const lb_dtype EXPORT_TYPES[] = {LB_DT_TQ2_0, LB_DT_TQ1_0, LB_DT_Q8_0, LB_DT_Q4_0, LB_DT_F16, LB_DT_F32};
enum { N_EXPORT_TYPES = sizeof EXPORT_TYPES / sizeof EXPORT_TYPES[0] };

lb_status lb_gguf_export_type(const char *name, lb_dtype *out) {
    for (int i = 0; i < N_EXPORT_TYPES; i++)
        if (!strcmp(name, lb_dtype_info(EXPORT_TYPES[i])->name)) {
            *out = EXPORT_TYPES[i];
            return LB_OK;
        }
    return lb_error(LB_ECONFIG, "export type '%s' is not one of " LB_GGUF_EXPORT_TYPES, name);
}

/* llama.cpp's llama_ftype of a file whose matrices are `type` (general.file_type). */
static uint32_t file_type_of(lb_dtype type) {
    switch (type) {
    case LB_DT_F32: return 0;    /* LLAMA_FTYPE_ALL_F32 */
    case LB_DT_F16: return 1;    /* MOSTLY_F16 */
    case LB_DT_Q4_0: return 2;   /* MOSTLY_Q4_0 */
    case LB_DT_Q8_0: return 7;   /* MOSTLY_Q8_0 */
    case LB_DT_TQ1_0: return 36; /* MOSTLY_TQ1_0 */
    case LB_DT_TQ2_0: return 37; /* MOSTLY_TQ2_0 */
    default: return 0;
    }
}

lb_status lb_gguf_arch_of(const lb_model_config *c, lb_gguf_arch *out) {
    if (c->norm != LB_NORM_RMS)
        return lb_error(LB_EINVAL, "llama.cpp's bitnet and llama graphs use RMSNorm; model.norm is %s",
                        lb_norm_kind_names[c->norm]);
    if (c->ffn_act != LB_FFN_SWIGLU)
        return lb_error(LB_EINVAL, "llama.cpp's bitnet and llama graphs use SwiGLU (silu(gate)·up); model.ffn_act is %s",
                        lb_ffn_act_names[c->ffn_act]);
    if (c->sub_norm) {
        if (!c->tie_embeddings)
            return lb_error(LB_EINVAL, "llama.cpp's bitnet graph ties the LM head to token_embd; this model's "
                                       "head is untied (model.tie_embeddings: false)");
        *out = LB_GGUF_ARCH_BITNET;
    } else {
        *out = LB_GGUF_ARCH_LLAMA;
    }
    return LB_OK;
}

lb_dtype lb_gguf_export_param_type(const lb_param *p, lb_dtype type) {
    const lb_param_role_info *r = lb_param_role_of(p->role);
    if (r->kind == LB_PARAM_NORM || p->t->ndim < 2) return LB_DT_F32;
    if (r->kind == LB_PARAM_EMBEDDING || p->role == LB_ROLE_OUTPUT) {
        /* convert_hf_to_gguf.py writes token_embd and output as f16 for the TQ types;
           llama-quantize keeps the head wider than q4_0 (q6_k, which lowbit lacks: q8_0). */
        if (type == LB_DT_TQ1_0 || type == LB_DT_TQ2_0) return LB_DT_F16;
        if (type == LB_DT_Q4_0) return LB_DT_Q8_0;
    }
    return type;
}

lb_status lb_export_effective_weights(const lb_model *m, int param, float *dst) {
    const lb_param *p = &m->params[param];
    const lb_tensor *t = p->t;
    size_t n = t->n;
    size_t cols = (size_t)t->shape[t->ndim - 1], rows = n / cols;
    const lb_qspec *spec = &p->weight;
    if (p->role == LB_ROLE_TOKEN_EMBD && m->output == m->token_embd &&
        !(lb_qspec_is_none(&m->q_embd) && lb_qspec_is_none(&m->q_head.weight)) &&
        memcmp(&m->q_embd, &m->q_head.weight, sizeof m->q_embd) != 0)
        return lb_error(LB_EINVAL, "token_embd.weight: the tied head quantizes it as model.quant.head says and the "
                                   "lookup as model.quant.embedding says; one exported tensor cannot be both");
    if (lb_qspec_is_none(spec)) {
        memcpy(dst, t->data, n * sizeof *dst);
        return LB_OK;
    }
    if (spec->lsq) {
        int s = m->weight_step[param];
        if (s < 0) return lb_error(LB_EINVAL, "%s: an lsq spec without its step sizes", t->name);
        lb_lsq_forward(spec, t->data, dst, rows, cols, m->params[s].t->data, 1.0f);
        return LB_OK;
    }
    lb_status st = lb_fake_quantize(spec, t->data, dst, rows, cols, NULL);
    return st == LB_OK ? LB_OK : lb_error(st, "%s: %s", t->name, lb_errmsg());
}

void lb_rope_permute_rows(const float *src, float *dst, int n_heads, int head_dim, int cols, int inverse) {
    /* convert_hf_to_gguf.py: w.reshape(n_head, 2, Dh/2, cols).swapaxes(1, 2): new row 2i + h of a
       head is old row h·Dh/2 + i. */
    int half = head_dim / 2;
    for (int hd = 0; hd < n_heads; hd++)
        for (int i = 0; i < half; i++)
            for (int h = 0; h < 2; h++) {
                size_t interleaved = (size_t)hd * head_dim + 2 * i + h, halves = (size_t)hd * head_dim + h * half + i;
                size_t to = inverse ? halves : interleaved, from = inverse ? interleaved : halves;
                memcpy(dst + to * cols, src + from * cols, (size_t)cols * sizeof *dst);
            }
}

/* --- tensors ----------------------------------------------------------------- */

typedef struct export_tensor {
    const lb_model *m;
    int param;
    lb_dtype type;
    lb_gguf_arch arch;
} export_tensor;

/* Produces one tensor's bytes at commit time: effective weights, RoPE pairing, encoding. */
static lb_status produce_tensor(void *ctx, void *dst, size_t nbytes) {
    const export_tensor *e = ctx;
    const lb_model *m = e->m;
    const lb_param *p = &m->params[e->param];
    size_t n = p->t->n;
    int cols = p->t->shape[p->t->ndim - 1];
    float *w = malloc(n * sizeof *w), *tmp = NULL;
    if (!w) return lb_error(LB_ENOMEM, "%s: out of memory", p->t->name);
    lb_status s = lb_export_effective_weights(m, e->param, w);
    if (s == LB_OK && e->arch == LB_GGUF_ARCH_LLAMA && (p->role == LB_ROLE_ATTN_Q || p->role == LB_ROLE_ATTN_K)) {
        int heads = p->role == LB_ROLE_ATTN_Q ? m->cfg.n_heads : m->cfg.n_kv_heads;
        if (!(tmp = malloc(n * sizeof *tmp))) {
            s = lb_error(LB_ENOMEM, "%s: out of memory", p->t->name);
        } else {
            lb_rope_permute_rows(w, tmp, heads, m->head_dim, cols, 0);
            float *swap = w;
            w = tmp;
            tmp = swap;
        }
    }
    if (s == LB_OK) {
        if (lb_dtype_row_bytes(e->type, n) != nbytes)
            s = lb_error(LB_EINVAL, "%s: %zu bytes expected for %zu %s elements, the writer asks for %zu", p->t->name,
                         lb_dtype_row_bytes(e->type, n), n, lb_dtype_info(e->type)->name, nbytes);
        else
            lb_dtype_info(e->type)->from_f32(w, dst, n);
    }
    free(w);
    free(tmp);
    return s;
}

/* A row width that the type's blocks do not divide: the error suggests the smallest type that fits. */
static lb_status check_rows(const lb_param *p, lb_dtype type) {
    const lb_dtype_traits *ti = lb_dtype_info(type);
    int cols = p->t->shape[p->t->ndim - 1];
    if (cols % ti->block == 0) return LB_OK;
    const char *fits = cols % 32 == 0 ? "q8_0 or q4_0 (blocks of 32)" : "f16 or f32";
    return lb_error(LB_EINVAL, "%s: rows of %d weights are not a multiple of %s's block of %d; use --type %s",
                    p->t->name, cols, ti->name, ti->block, fits);
}

/* --- tokenizer ------------------------------------------------------------- */

/* llama.cpp's llama_token_type (tokenizer.ggml.token_type). */
enum { TOKEN_NORMAL = 1, TOKEN_CONTROL = 3, TOKEN_USER_DEFINED = 4 };

/* The byte tokenizer as a byte-level BPE without merges: its 256 tokens are GPT-2's byte
   characters (bytes_to_unicode), so llama.cpp maps every byte of a text to its own id exactly as
   lowbit does. A SentencePiece vocabulary of <0xNN> byte tokens loads as well but is not the
   same tokenizer: llama.cpp's SentencePiece path writes every ' ' as ▁ (U+2581) before it falls
   back to bytes, so a space would become the three tokens E2 96 81. */
static lb_status write_byte_vocab(lb_gguf_writer *w) {
    LB_TRY(lb_gguf_set_str(w, "tokenizer.ggml.model", "gpt2"));
    LB_TRY(lb_gguf_set_str(w, "tokenizer.ggml.pre", "gpt-2"));
    LB_TRY(lb_gguf_begin_array(w, "tokenizer.ggml.tokens", LB_GGUF_STRING, 256));
    for (int b = 0; b < 256; b++) {
        char buf[4];
        int len = lb_utf8_encode(lb_byte_level_char((unsigned char)b), buf);
        LB_TRY(lb_gguf_push_str(w, buf, (uint64_t)len));
    }
    LB_TRY(lb_gguf_end_array(w));
    int32_t types[256];
    for (int b = 0; b < 256; b++) types[b] = TOKEN_NORMAL;
    LB_TRY(lb_gguf_set_array(w, "tokenizer.ggml.token_type", LB_GGUF_I32, 256, types));
    LB_TRY(lb_gguf_set_str_array(w, "tokenizer.ggml.merges", 0, NULL));
    LB_TRY(lb_gguf_set_bool(w, "tokenizer.ggml.add_bos_token", 0));
    return lb_gguf_set_bool(w, "tokenizer.ggml.add_eos_token", 0);
}

/* llama.cpp's tokenizer.ggml.pre for a tokenizer.json pipeline, or an error naming what it has. */
static lb_status bpe_pre_name(const lb_hf *hf, const char **out) {
    static const char *const kinds[] = {"Split", "ByteLevel", "Metaspace", "Digits"};
    if (hf->n_norm == 0 && hf->n_pre == 1 && hf->pre[0].kind == HF_PRE_BYTE_LEVEL && hf->pre[0].pattern &&
        !hf->pre[0].add_prefix_space && !hf->model.byte_fallback) {
        *out = "gpt-2"; /* LLAMA_VOCAB_PRE_TYPE_GPT2: the GPT-2 regex, byte-level */
        return LB_OK;
    }
    char list[160] = "";
    for (int i = 0; i < hf->n_pre && strlen(list) < sizeof list - 16; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "", kinds[hf->pre[i].kind]);
    return lb_error(LB_EINVAL,
                    "tokenizer.json: llama.cpp needs the name of its pre-tokenizer (tokenizer.ggml.pre) and lowbit "
                    "knows it only for GPT-2's byte-level BPE (ByteLevel with its regex, no normalizer, no byte "
                    "fallback: \"gpt-2\"); this one has %d normalizer(s) and pre-tokenizers [%s]%s — llama.cpp would "
                    "need the name of the model it comes from (\"llama-bpe\" for Llama 3, \"qwen2\", ...)",
                    hf->n_norm, list, hf->model.byte_fallback ? " with byte fallback" : "");
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static lb_status write_bpe_vocab(lb_gguf_writer *w, const lb_tokenizer *tok) {
    const lb_hf *hf = tok->hf;
    const char *pre;
    LB_TRY(bpe_pre_name(hf, &pre));
    int n = tok->vocab_size;
    size_t len;
    for (int i = 0; i < n; i++)
        if (!lb_hf_token(hf, i, &len))
            return lb_error(LB_EINVAL, "tokenizer.json: id %d names no token; llama.cpp needs every id below the "
                                       "vocabulary size %d", i, n);
    LB_TRY(lb_gguf_set_str(w, "tokenizer.ggml.model", "gpt2"));
    LB_TRY(lb_gguf_set_str(w, "tokenizer.ggml.pre", pre));
    LB_TRY(lb_gguf_begin_array(w, "tokenizer.ggml.tokens", LB_GGUF_STRING, (uint64_t)n));
    for (int i = 0; i < n; i++) {
        const char *s = lb_hf_token(hf, i, &len);
        LB_TRY(lb_gguf_push_str(w, s, len));
    }
    LB_TRY(lb_gguf_end_array(w));
    int first_special = -1;
    LB_TRY(lb_gguf_begin_array(w, "tokenizer.ggml.token_type", LB_GGUF_I32, (uint64_t)n));
    for (int i = 0; i < n; i++) {
        int a = hf->added_of_id[i];
        int32_t type = a < 0 ? TOKEN_NORMAL : hf->added[a].special ? TOKEN_CONTROL : TOKEN_USER_DEFINED;
        if (type == TOKEN_CONTROL && first_special < 0) first_special = i;
        LB_TRY(lb_gguf_push(w, &type));
    }
    LB_TRY(lb_gguf_end_array(w));

    /* merges in rank order, "left right" */
    const lb_u64map *mm = &hf->model.merges;
    uint64_t *order = malloc((mm->n + 1) * sizeof *order);
    if (!order) return lb_error(LB_ENOMEM, "tokenizer merges: out of memory");
    size_t k = 0;
    for (size_t i = 0; mm->keys && i <= mm->mask; i++)
        if (mm->keys[i] != UINT64_MAX) order[k++] = (mm->values[i] >> 32) << 32 | (uint64_t)i; /* rank, slot */
    qsort(order, k, sizeof *order, cmp_u64);
    lb_status s = lb_gguf_begin_array(w, "tokenizer.ggml.merges", LB_GGUF_STRING, (uint64_t)k);
    char *buf = NULL;
    size_t cap = 0;
    for (size_t i = 0; s == LB_OK && i < k; i++) {
        uint64_t key = mm->keys[order[i] & 0xffffffffu];
        size_t la, lb;
        const char *a = lb_hf_token(hf, (int)(key >> 32), &la), *b = lb_hf_token(hf, (int)(key & 0xffffffffu), &lb);
        if (!a || !b) {
            s = lb_error(LB_EINVAL, "tokenizer.json: merge %zu names an id without a token", i);
            break;
        }
        if (la + lb + 1 > cap) {
            cap = 2 * (la + lb + 1);
            char *nb = realloc(buf, cap);
            if (!nb) {
                s = lb_error(LB_ENOMEM, "tokenizer merges: out of memory");
                break;
            }
            buf = nb;
        }
        memcpy(buf, a, la);
        buf[la] = ' ';
        memcpy(buf + la + 1, b, lb);
        s = lb_gguf_push_str(w, buf, la + lb + 1);
    }
    if (s == LB_OK) s = lb_gguf_end_array(w);
    free(buf);
    free(order);
    LB_TRY(s);
    if (first_special >= 0) {
        LB_TRY(lb_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)first_special));
        LB_TRY(lb_gguf_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)first_special));
    }
    LB_TRY(lb_gguf_set_bool(w, "tokenizer.ggml.add_bos_token", 0));
    LB_TRY(lb_gguf_set_bool(w, "tokenizer.ggml.add_eos_token", 0));
    /* the pipeline itself, for readers that run tokenizer.json (lowbit's GGUF reader) */
    return lb_gguf_set_str(w, "tokenizer.huggingface.json", tok->json);
}

static lb_status write_vocab(lb_gguf_writer *w, const lb_tokenizer *tok) {
    LB_TRY(lb_gguf_set_str(w, "lowbit.tokenizer", lb_tokenizer_kind_name(tok->kind)));
    switch (tok->kind) {
    case LB_TOKENIZER_BYTE: return write_byte_vocab(w);
    case LB_TOKENIZER_CHAR:
        /* llama.cpp has no character tokenizer. As a SentencePiece ("llama") vocabulary of one-character
           tokens it loads, but any character outside the vocabulary then makes llama.cpp throw
           std::out_of_range (its byte fallback looks for <0xNN> tokens), and node-llama-cpp probes
           such text as it loads a model. */
        return lb_error(LB_EINVAL, "char tokenizer: llama.cpp has no character tokenizer (as a SentencePiece vocabulary "
                                   "without byte tokens it aborts on any character outside it); train with "
                                   "data.tokenizer byte or bpe to export");
    case LB_TOKENIZER_BPE:
    case LB_TOKENIZER_HF: return write_bpe_vocab(w, tok);
    }
    return lb_error(LB_EINVAL, "tokenizer kind %d unknown", (int)tok->kind);
}

/* --- the file ---------------------------------------------------------------- */

static lb_status write_hparams(lb_gguf_writer *w, const lb_model *m, lb_gguf_arch arch, lb_dtype type,
                               const lb_tokenizer *tok) {
    const lb_model_config *c = &m->cfg;
    const char *a = lb_gguf_arch_names[arch];
    char key[96];
#define KEY(suffix) (snprintf(key, sizeof key, "%s." suffix, a), key)
    LB_TRY(lb_gguf_set_str(w, "general.architecture", a));
    LB_TRY(lb_gguf_set_str(w, "general.name", "lowbit"));
    LB_TRY(lb_gguf_set_u32(w, "general.file_type", file_type_of(type)));
    LB_TRY(lb_gguf_set_u32(w, "general.quantization_version", 2));
    LB_TRY(lb_gguf_set_u32(w, KEY("vocab_size"), (uint32_t)c->vocab_size));
    LB_TRY(lb_gguf_set_u32(w, KEY("context_length"), (uint32_t)c->max_seq_len));
    LB_TRY(lb_gguf_set_u32(w, KEY("embedding_length"), (uint32_t)c->dim));
    LB_TRY(lb_gguf_set_u32(w, KEY("block_count"), (uint32_t)c->n_layers));
    LB_TRY(lb_gguf_set_u32(w, KEY("feed_forward_length"), (uint32_t)c->ffn_dim));
    LB_TRY(lb_gguf_set_u32(w, KEY("attention.head_count"), (uint32_t)c->n_heads));
    LB_TRY(lb_gguf_set_u32(w, KEY("attention.head_count_kv"), (uint32_t)c->n_kv_heads));
    LB_TRY(lb_gguf_set_f32(w, KEY("rope.freq_base"), c->rope_theta));
    LB_TRY(lb_gguf_set_u32(w, KEY("rope.dimension_count"), (uint32_t)m->head_dim));
    LB_TRY(lb_gguf_set_f32(w, KEY("attention.layer_norm_rms_epsilon"), c->norm_eps));
#undef KEY
    if (tok->vocab_size > c->vocab_size)
        return lb_error(LB_EINVAL, "the tokenizer has %d ids, the model's vocabulary %d", tok->vocab_size,
                        c->vocab_size);
    if (tok->vocab_size != c->vocab_size)
        return lb_error(LB_EINVAL, "llama.cpp needs one token per row of token_embd: the model has %d rows, the "
                                   "tokenizer %d ids", c->vocab_size, tok->vocab_size);
    return write_vocab(w, tok);
}

lb_status lb_gguf_export(const lb_model *m, const lb_tokenizer *tok, const char *config_yaml, lb_dtype type,
                         const char *path) {
    lb_gguf_arch arch = LB_GGUF_ARCH_LLAMA;
    LB_TRY(lb_gguf_arch_of(&m->cfg, &arch));
    int ok_type = 0;
    for (int i = 0; i < N_EXPORT_TYPES; i++) ok_type |= EXPORT_TYPES[i] == type;
    if (!ok_type)
        return lb_error(LB_EINVAL, "export type %s is not one of " LB_GGUF_EXPORT_TYPES, lb_dtype_info(type)->name);
    /* every check that can fail before the file is begun */
    for (int i = 0; i < m->n_params; i++) {
        const lb_param *p = &m->params[i];
        if (p->role == LB_ROLE_WEIGHT_STEP) continue; /* folded into the weights */
        if (p->role == LB_ROLE_ACT_STEP)
            return lb_error(LB_EINVAL, "%s: learned input step sizes (lsq activations) have no place in llama.cpp's "
                                       "graph", p->t->name);
        LB_TRY(check_rows(p, lb_gguf_export_param_type(p, type)));
    }
    export_tensor *ctx = calloc((size_t)m->n_params, sizeof *ctx);
    if (!ctx) return lb_error(LB_ENOMEM, "export: out of memory");
    lb_gguf_writer *w;
    lb_status s = lb_gguf_writer_begin(path, &w);
    if (s != LB_OK) {
        free(ctx);
        return s;
    }
    s = write_hparams(w, m, arch, type, tok);
    if (s == LB_OK && config_yaml) s = lb_gguf_set_str(w, "lowbit.config", config_yaml);
    for (int i = 0; s == LB_OK && i < m->n_params; i++) {
        const lb_param *p = &m->params[i];
        if (lb_param_role_of(p->role)->kind == LB_PARAM_QSTEP) continue;
        ctx[i] = (export_tensor){.m = m, .param = i, .type = lb_gguf_export_param_type(p, type), .arch = arch};
        int64_t shape[LB_GGUF_MAX_DIMS];
        for (int d = 0; d < p->t->ndim; d++) shape[d] = p->t->shape[d];
        s = lb_gguf_add_tensor_fn(w, p->t->name, lb_dtype_info(ctx[i].type)->gguf_type, p->t->ndim, shape,
                                  produce_tensor, &ctx[i]);
    }
    if (s != LB_OK) {
        lb_gguf_writer_abort(w);
        free(ctx);
        return s;
    }
    s = lb_gguf_writer_commit(w);
    free(ctx);
    return s;
}
