/* lowbit models as Hugging Face model directories (hf_export.h). */
#include "interop/hf_export.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/hf_tokenizer.h"
#include "data/utf8.h"
#include "interop/hf_config.h"
#include "interop/hf_names.h"
#include "io/fileio.h"
#include "io/safetensors.h"
#include "quant/quantize.h"

/* ---- tokenizer.json ------------------------------------------------------------------- */

static json_t *bpe_model(json_t *vocab) {
    return json_pack("{s:s, s:n, s:n, s:n, s:n, s:b, s:b, s:b, s:o, s:[]}", "type", "BPE", "dropout", "unk_token",
                     "continuing_subword_prefix", "end_of_word_suffix", "fuse_unk", 0, "byte_fallback", 0,
                     "ignore_merges", 0, "vocab", vocab, "merges");
}

static lb_status tokenizer_for(const lb_tokenizer *tok, json_t **out) {
    json_t *vocab = json_object();
    char piece[8];
    json_t *pre = json_null(), *dec;
    if (tok->kind == LB_TOKENIZER_BYTE) {
        for (int b = 0; b < 256; b++) {
            piece[lb_utf8_encode(lb_byte_level_char((unsigned char)b), piece)] = '\0';
            json_object_set_new(vocab, piece, json_integer(b));
        }
        /* One pre-token for the whole text: its bytes as characters, each a token. */
        pre = json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space", 0, "trim_offsets", 0,
                        "use_regex", 0);
        dec = json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space", 0, "trim_offsets", 0,
                        "use_regex", 0);
    } else {
        for (int i = 0; i < tok->vocab_size; i++) {
            uint32_t cp = tok->codepoints[i];
            if (cp >= 0xD800 && cp <= 0xDFFF) {
                json_decref(vocab);
                return lb_error(LB_EINVAL,
                                "char tokenizer: id %d is the escape of the invalid UTF-8 byte 0x%02X, which a "
                                "tokenizer.json (JSON text) cannot hold",
                                i, (unsigned)(cp - 0xDC00));
            }
            piece[lb_utf8_encode(cp, piece)] = '\0';
            json_object_set_new(vocab, piece, json_integer(i));
        }
        dec = json_pack("{s:s}", "type", "Fuse"); /* characters put back together, no spaces between */
    }
    *out = json_pack("{s:s, s:n, s:n, s:[], s:n, s:o, s:n, s:o, s:o}", "version", "1.0", "truncation", "padding",
                     "added_tokens", "normalizer", "pre_tokenizer", pre, "post_processor", "decoder", dec, "model",
                     bpe_model(vocab));
    return *out ? LB_OK : lb_error(LB_ENOMEM, "tokenizer.json");
}

lb_status lb_hf_tokenizer_json(const lb_tokenizer *tok, char **json, size_t *len) {
    *json = NULL;
    if (tok->json) {
        if (!(*json = malloc(tok->json_len + 1))) return lb_error(LB_ENOMEM, "tokenizer.json");
        memcpy(*json, tok->json, tok->json_len);
        (*json)[tok->json_len] = '\0';
        *len = tok->json_len;
        return LB_OK;
    }
    json_t *root;
    LB_TRY(tokenizer_for(tok, &root));
    *json = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (!*json) return lb_error(LB_ENOMEM, "tokenizer.json");
    *len = strlen(*json);
    return LB_OK;
}

/* ---- tensors ------------------------------------------------------------------------------ */

/* What one tensor of the file is made of, produced when the writer commits. */
typedef struct tensor_src {
    const float *src;
    size_t n;
    lb_dtype dt;
} tensor_src;

static lb_status produce_float(void *ctx, void *dst, size_t nbytes) {
    const tensor_src *t = ctx;
    (void)nbytes;
    lb_dtype_info(t->dt)->from_f32(t->src, dst, t->n);
    return LB_OK;
}

/* The ternary codes of a b1.58 weight [out, in] by lowbit's own quantizer,
 * packed as integrations/bitnet.py's pack_weights: row r into packed row
 * r mod out/4 at bits 2·(r div out/4), code + 1. *scale receives γ. */
static lb_status pack_bitnet(const lb_param *p, uint8_t **packed, float *scale) {
    int out = p->t->shape[0], in = p->t->shape[1];
    if (out % 4 != 0)
        return lb_error(LB_EINVAL, "parameter '%s': %d output rows do not pack four to a byte (--bitnet-packed)",
                        p->t->name, out);
    if (lb_quant_n_blocks(&p->weight, (size_t)out, (size_t)in) != 1)
        return lb_error(LB_EINVAL, "parameter '%s': the packed BitNet layout has one scale per tensor", p->t->name);
    int8_t *codes = malloc(p->t->n);
    *packed = calloc(p->t->n / 4, 1);
    lb_status s = codes && *packed ? LB_OK : lb_error(LB_ENOMEM, "packing '%s'", p->t->name);
    if (s == LB_OK) s = lb_quantize(&p->weight, p->t->data, (size_t)out, (size_t)in, codes, scale, NULL);
    int rows = out / 4;
    for (int r = 0; s == LB_OK && r < out; r++)
        for (int k = 0; k < in; k++)
            (*packed)[(size_t)(r % rows) * (size_t)in + (size_t)k] |=
                (uint8_t)((codes[(size_t)r * (size_t)in + (size_t)k] + 1) << (2 * (r / rows)));
    free(codes);
    if (s != LB_OK) {
        free(*packed);
        *packed = NULL;
    }
    return s;
}

static lb_status write_tensors(const lb_model *m, const lb_hf_config *h, const char *path, lb_dtype dt) {
    int n;
    const lb_param *params = lb_model_params(m, &n);
    const char *st_dtype = lb_dtype_info(dt)->safetensors;
    tensor_src *srcs = calloc((size_t)n, sizeof *srcs);
    uint8_t **packed = calloc((size_t)n, sizeof *packed);
    float *scales = calloc((size_t)n, sizeof *scales);
    lb_st_writer *w = NULL;
    lb_status s = srcs && packed && scales ? lb_st_writer_begin(path, &w) : lb_error(LB_ENOMEM, "export");
    if (s == LB_OK) s = lb_st_writer_set_metadata(w, "format", "pt");
    char name[160];
    for (int i = 0; i < n && s == LB_OK; i++) {
        const lb_param *p = &params[i];
        if (!lb_hf_module_of(p->role)) {
            s = lb_error(LB_EINVAL, "parameter '%s': learned step sizes have no Hugging Face form", p->t->name);
            break;
        }
        if (p->role == LB_ROLE_OUTPUT && m->cfg.tie_embeddings) continue;
        int64_t shape[8];
        for (int d = 0; d < p->t->ndim; d++) shape[d] = p->t->shape[d];
        if ((s = lb_hf_tensor_name(p, "weight", name, sizeof name)) != LB_OK) break;
        int quantized_linear = lb_param_role_of(p->role)->kind == LB_PARAM_LINEAR && p->role != LB_ROLE_OUTPUT;
        if (h->quant == LB_HF_QUANT_PACKED && quantized_linear) {
            if ((s = pack_bitnet(p, &packed[i], &scales[i])) != LB_OK) break;
            shape[0] /= 4;
            if ((s = lb_st_writer_add(w, name, "U8", 2, shape, packed[i])) != LB_OK) break;
            srcs[i] = (tensor_src){&scales[i], 1, dt};
            int64_t one = 1;
            if ((s = lb_hf_tensor_name(p, "weight_scale", name, sizeof name)) != LB_OK) break;
            s = lb_st_writer_add_fn(w, name, st_dtype, 1, &one, produce_float, &srcs[i]);
        } else {
            srcs[i] = (tensor_src){p->t->data, p->t->n, dt};
            s = lb_st_writer_add_fn(w, name, st_dtype, p->t->ndim, shape, produce_float, &srcs[i]);
        }
    }
    if (w) {
        if (s == LB_OK) s = lb_st_writer_commit(w);
        else lb_st_writer_abort(w);
    }
    for (int i = 0; packed && i < n; i++) free(packed[i]);
    free(packed);
    free(scales);
    free(srcs);
    return s;
}

/* ---- the directory ------------------------------------------------------------------------ */

static lb_status write_text(const char *dir, const char *file, const char *text, size_t len) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    lb_atomic_file af;
    LB_TRY(lb_atomic_begin(path, &af));
    lb_status s = lb_atomic_write(&af, text, len);
    if (s != LB_OK) {
        lb_atomic_abort(&af);
        return s;
    }
    return lb_atomic_commit(&af);
}

static void remove_tree(const char *dir) {
    static const char *const FILES[] = {"config.json", "tokenizer.json", "model.safetensors"};
    char path[PATH_MAX];
    for (size_t i = 0; i < sizeof FILES / sizeof *FILES; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, FILES[i]);
        unlink(path);
    }
    rmdir(dir);
}

static lb_status sync_parent(const char *dir) {
    char parent[PATH_MAX];
    snprintf(parent, sizeof parent, "%s", dir);
    char *slash = strrchr(parent, '/');
    if (!slash) snprintf(parent, sizeof parent, ".");
    else if (slash == parent) parent[1] = '\0';
    else *slash = '\0';
    int fd = open(parent, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return lb_error(LB_EIO, "cannot open directory '%s': %s", parent, strerror(errno));
    int ok = fsync(fd) == 0;
    close(fd);
    return ok ? LB_OK : lb_error(LB_EIO, "cannot sync directory '%s': %s", parent, strerror(errno));
}

lb_status lb_hf_export(const lb_model *m, const lb_tokenizer *tok, const char *dir, const lb_hf_export_options *o) {
    lb_hf_config h;
    LB_TRY(lb_hf_config_from_model(&m->cfg, o->dtype, o->packed, &h));
    struct stat sb;
    if (stat(dir, &sb) == 0)
        return lb_error(LB_EIO, "'%s' exists: the export writes a new directory and replaces nothing", dir);
    char *config = NULL, *tokenizer = NULL;
    size_t tok_len = 0;
    LB_TRY(lb_hf_config_to_json(&h, &config));
    lb_status s = lb_hf_tokenizer_json(tok, &tokenizer, &tok_len);
    char tmp[PATH_MAX - 64]; /* room for the file names inside */
    if (s == LB_OK && (size_t)snprintf(tmp, sizeof tmp, "%s.tmp-XXXXXX", dir) >= sizeof tmp)
        s = lb_error(LB_EINVAL, "path too long: '%s'", dir);
    if (s == LB_OK && !mkdtemp(tmp)) s = lb_error(LB_EIO, "cannot create a directory next to '%s': %s", dir, strerror(errno));
    if (s != LB_OK) {
        free(config);
        free(tokenizer);
        return s;
    }
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/model.safetensors", tmp);
    s = write_tensors(m, &h, path, o->dtype);
    if (s == LB_OK) s = write_text(tmp, "config.json", config, strlen(config));
    if (s == LB_OK) s = write_text(tmp, "tokenizer.json", tokenizer, tok_len);
    if (s == LB_OK) {
        chmod(tmp, 0755); /* mkdtemp made it 0700 */
        if (rename(tmp, dir) != 0) s = lb_error(LB_EIO, "cannot rename '%s' to '%s': %s", tmp, dir, strerror(errno));
    }
    if (s == LB_OK) s = sync_parent(dir);
    else remove_tree(tmp);
    free(config);
    free(tokenizer);
    return s;
}
