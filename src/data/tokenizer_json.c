/* Reading tokenizer.json into an lb_hf pipeline.
 *
 * Everything lowbit does not implement is an error naming the file, the JSON
 * path and the value, rather than an encoding that differs from the library's:
 * an unknown key is refused too. Keys the library itself ignores for encoding
 * and decoding (trim_offsets, the pair template, str_rep) are accepted. */
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/hf_tokenizer.h"
#include "data/utf8.h"

#define GPT2_PATTERN "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"
/* Rust's regex \w (Unicode word characters), for single_word added tokens. */
#define WORD_CHAR_PATTERN "[\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\x{200C}\\x{200D}]"

typedef struct loader {
    const char *name;  /* file name for messages */
    lb_hf *t;
    int seen_template; /* TemplateProcessing read already */
} loader;

static lb_status bad(const loader *L, const char *path, const char *fmt, ...) LB_PRINTF(3, 4);
static lb_status bad(const loader *L, const char *path, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return lb_error(LB_EFORMAT, "%s: %s: %s", L->name, path, msg);
}

/* The JSON text of v, shortened, for messages (static buffer per thread). */
static const char *show(const json_t *v) {
    static _Thread_local char out[160];
    char *s = v ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    snprintf(out, sizeof out, "%s", s ? s : "null");
    if (s && strlen(s) >= sizeof out) memcpy(out + sizeof out - 4, "...", 4);
    free(s);
    return out;
}

static void path_join(char *dst, size_t size, const char *path, const char *key) {
    snprintf(dst, size, "%s%s%s", path, path[0] ? "." : "", key);
}

/* Fails on a key of obj outside the NULL-terminated list `known`. */
static lb_status only_keys(const loader *L, const char *path, const json_t *obj, const char *const *known) {
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)obj, key, v) {
        int ok = 0;
        for (const char *const *k = known; *k; k++) ok |= strcmp(*k, key) == 0;
        if (!ok) {
            char p[512];
            path_join(p, sizeof p, path, key);
            return bad(L, p, "is not supported by lowbit (value %s)", show(v));
        }
    }
    return LB_OK;
}

static lb_status get_bool(const loader *L, const char *path, const json_t *obj, const char *key, int dflt, int *out) {
    json_t *v = json_object_get(obj, key);
    *out = dflt;
    if (!v || json_is_null(v)) return LB_OK;
    char p[512];
    path_join(p, sizeof p, path, key);
    if (!json_is_boolean(v)) return bad(L, p, "expected true or false, found %s", show(v));
    *out = json_is_true(v);
    return LB_OK;
}

/* A string member (NULL when absent or null); *n receives its length. */
static lb_status get_str(const loader *L, const char *path, const json_t *obj, const char *key, const char **out,
                         size_t *n) {
    json_t *v = json_object_get(obj, key);
    *out = NULL, *n = 0;
    if (!v || json_is_null(v)) return LB_OK;
    char p[512];
    path_join(p, sizeof p, path, key);
    if (!json_is_string(v)) return bad(L, p, "expected a string, found %s", show(v));
    *out = json_string_value(v);
    *n = json_string_length(v);
    return LB_OK;
}

/* A member holding exactly one character (Metaspace's replacement, Strip's content). */
static lb_status get_char(const loader *L, const char *path, const json_t *obj, const char *key, uint32_t dflt,
                          uint32_t *out) {
    const char *s;
    size_t n;
    LB_TRY(get_str(L, path, obj, key, &s, &n));
    *out = dflt;
    if (!s) return LB_OK;
    char p[512];
    path_join(p, sizeof p, path, key);
    uint32_t cp;
    if (n == 0 || lb_utf8_decode((const unsigned char *)s, n, &cp, NULL) != n)
        return bad(L, p, "expected a single character, found \"%s\"", s);
    *out = cp;
    return LB_OK;
}

static lb_status get_size(const loader *L, const char *path, const json_t *obj, const char *key, size_t *out) {
    json_t *v = json_object_get(obj, key);
    char p[512];
    path_join(p, sizeof p, path, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return bad(L, p, "expected a non-negative integer, found %s", show(v));
    *out = (size_t)json_integer_value(v);
    return LB_OK;
}

static char *dup_bytes(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

/* The "type" of a component, required. */
static lb_status get_type(const loader *L, const char *path, const json_t *obj, const char **type) {
    if (!json_is_object(obj)) return bad(L, path, "expected an object, found %s", show(obj));
    json_t *t = json_object_get(obj, "type");
    if (!json_is_string(t)) return bad(L, path, "has no \"type\" (untagged components are not supported): %s", show(obj));
    *type = json_string_value(t);
    return LB_OK;
}

/* {"String": "..."} or {"Regex": "..."} */
static lb_status get_pattern(const loader *L, const char *path, const json_t *obj, lb_pattern **out) {
    char p[512];
    path_join(p, sizeof p, path, "pattern");
    json_t *v = json_object_get(obj, "pattern");
    json_t *s = json_object_get(v, "String"), *r = json_object_get(v, "Regex");
    if (!json_is_object(v) || json_object_size(v) != 1 || (!json_is_string(s) && !json_is_string(r)))
        return bad(L, p, "expected {\"String\": ...} or {\"Regex\": ...}, found %s", show(v));
    char where[700];
    snprintf(where, sizeof where, "%s: %s.%s", L->name, p, s ? "String" : "Regex");
    *out = s ? lb_pattern_literal(json_string_value(s), json_string_length(s), where)
             : lb_pattern_regex(json_string_value(r), json_string_length(r), where);
    return *out ? LB_OK : lb_errcode();
}


/* Appends one item of `size` bytes to the array *(T **)arr of *n items. */
static lb_status append(const loader *L, const char *path, void *arr, int *n, const void *item, size_t size) {
    void **a = arr;
    char *v = realloc(*a, (size_t)(*n + 1) * size);
    if (!v) return lb_error(LB_ENOMEM, "%s: %s: out of memory", L->name, path);
    memcpy(v + (size_t)*n * size, item, size);
    *a = v;
    (*n)++;
    return LB_OK;
}

typedef lb_status (*component_fn)(loader *L, const char *path, const json_t *obj);

/* A Sequence: {"type": "Sequence", key: [components]}, each loaded in order. */
static lb_status load_sequence(loader *L, const char *path, const json_t *obj, const char *key, component_fn load) {
    const char *const keys[] = {"type", key, NULL};
    LB_TRY(only_keys(L, path, obj, keys));
    json_t *list = json_object_get(obj, key);
    if (!json_is_array(list)) return bad(L, path, "\"%s\" must be a list, found %s", key, show(list));
    for (size_t i = 0; i < json_array_size(list); i++) {
        char p[512];
        snprintf(p, sizeof p, "%s.%s[%zu]", path, key, i);
        LB_TRY(load(L, p, json_array_get(list, i)));
    }
    return LB_OK;
}

/* ---- normalizers ------------------------------------------------------------- */

static lb_status add_normalizer(loader *L, const char *path, hf_normalizer nz) {
    lb_status st = append(L, path, &L->t->norm, &L->t->n_norm, &nz, sizeof nz);
    if (st != LB_OK) {
        free(nz.text);
        lb_pattern_free(nz.pattern);
    }
    return st;
}

static lb_status load_normalizer(loader *L, const char *path, const json_t *obj) {
    if (json_is_null(obj)) return LB_OK;
    const char *type = NULL;
    LB_TRY(get_type(L, path, obj, &type));
    hf_normalizer nz = {0};
    if (strcmp(type, "Sequence") == 0) return load_sequence(L, path, obj, "normalizers", load_normalizer);
    if (strcmp(type, "Prepend") == 0) {
        static const char *const keys[] = {"type", "prepend", NULL};
        LB_TRY(only_keys(L, path, obj, keys));
        const char *s;
        size_t n;
        LB_TRY(get_str(L, path, obj, "prepend", &s, &n));
        if (!s) return bad(L, path, "Prepend needs a \"prepend\" string");
        nz.kind = HF_NORM_PREPEND;
        if (!(nz.text = dup_bytes(s, n))) return lb_error(LB_ENOMEM, "out of memory");
        nz.text_len = n;
        return add_normalizer(L, path, nz);
    }
    if (strcmp(type, "Replace") == 0) {
        static const char *const keys[] = {"type", "pattern", "content", NULL};
        LB_TRY(only_keys(L, path, obj, keys));
        const char *s;
        size_t n;
        LB_TRY(get_str(L, path, obj, "content", &s, &n));
        if (!s) return bad(L, path, "Replace needs a \"content\" string");
        LB_TRY(get_pattern(L, path, obj, &nz.pattern));
        nz.kind = HF_NORM_REPLACE;
        if (!(nz.text = dup_bytes(s, n))) {
            lb_pattern_free(nz.pattern);
            return lb_error(LB_ENOMEM, "out of memory");
        }
        nz.text_len = n;
        return add_normalizer(L, path, nz);
    }
    if (strcmp(type, "Strip") == 0) {
        static const char *const keys[] = {"type", "strip_left", "strip_right", NULL};
        LB_TRY(only_keys(L, path, obj, keys));
        nz.kind = HF_NORM_STRIP;
        LB_TRY(get_bool(L, path, obj, "strip_left", 0, &nz.left));
        LB_TRY(get_bool(L, path, obj, "strip_right", 0, &nz.right));
        return add_normalizer(L, path, nz);
    }
    static const struct { const char *name; hf_norm_kind kind; } forms[] = {
        {"NFC", HF_NORM_NFC}, {"NFD", HF_NORM_NFD}, {"NFKC", HF_NORM_NFKC}, {"NFKD", HF_NORM_NFKD}};
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++)
        if (strcmp(type, forms[i].name) == 0) {
            static const char *const keys[] = {"type", NULL};
            LB_TRY(only_keys(L, path, obj, keys));
            nz.kind = forms[i].kind;
            return add_normalizer(L, path, nz);
        }
    return bad(L, path, "normalizer \"%s\" is not supported by lowbit (supported: Sequence, Prepend, Replace, "
               "Strip, NFC, NFD, NFKC, NFKD)", type);
}

/* ---- pre-tokenizers ------------------------------------------------------------ */

static lb_status add_pretok(loader *L, const char *path, hf_pretok p) {
    lb_status st = append(L, path, &L->t->pre, &L->t->n_pre, &p, sizeof p);
    if (st != LB_OK) lb_pattern_free(p.pattern);
    return st;
}

static lb_status get_prepend_scheme(const loader *L, const char *path, const json_t *obj, hf_prepend *out) {
    const char *s;
    size_t n;
    LB_TRY(get_str(L, path, obj, "prepend_scheme", &s, &n));
    *out = HF_PREPEND_ALWAYS; /* the library's default */
    if (s) {
        if (strcmp(s, "always") == 0) *out = HF_PREPEND_ALWAYS;
        else if (strcmp(s, "first") == 0) *out = HF_PREPEND_FIRST;
        else if (strcmp(s, "never") == 0) *out = HF_PREPEND_NEVER;
        else return bad(L, path, "prepend_scheme \"%s\": expected always, first or never", s);
    }
    /* older files: add_prefix_space false means never, and contradicts any other scheme */
    int aps;
    LB_TRY(get_bool(L, path, obj, "add_prefix_space", 1, &aps));
    if (!aps) {
        if (*out != HF_PREPEND_NEVER) return bad(L, path, "add_prefix_space does not match declared prepend_scheme");
        *out = HF_PREPEND_NEVER;
    }
    return LB_OK;
}

static lb_status load_pre_tokenizer(loader *L, const char *path, const json_t *obj) {
    if (json_is_null(obj)) return LB_OK;
    const char *type = NULL;
    LB_TRY(get_type(L, path, obj, &type));
    hf_pretok p = {0};
    if (strcmp(type, "Sequence") == 0) return load_sequence(L, path, obj, "pretokenizers", load_pre_tokenizer);
    if (strcmp(type, "Split") == 0) {
        static const char *const keys[] = {"type", "pattern", "behavior", "invert", NULL};
        static const char *const behaviors[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext",
                                                "Contiguous"};
        LB_TRY(only_keys(L, path, obj, keys));
        const char *b;
        size_t n;
        LB_TRY(get_str(L, path, obj, "behavior", &b, &n));
        int found = -1;
        for (int i = 0; b && i < 5; i++)
            if (strcmp(b, behaviors[i]) == 0) found = i;
        if (found < 0)
            return bad(L, path, "behavior %s: expected Removed, Isolated, MergedWithPrevious, MergedWithNext or "
                       "Contiguous", show(json_object_get(obj, "behavior")));
        p.kind = HF_PRE_SPLIT;
        p.behavior = (hf_behavior)found;
        LB_TRY(get_bool(L, path, obj, "invert", 0, &p.invert));
        LB_TRY(get_pattern(L, path, obj, &p.pattern));
        return add_pretok(L, path, p);
    }
    if (strcmp(type, "ByteLevel") == 0) {
        static const char *const keys[] = {"type", "add_prefix_space", "trim_offsets", "use_regex", NULL};
        LB_TRY(only_keys(L, path, obj, keys));
        int use_regex;
        p.kind = HF_PRE_BYTE_LEVEL;
        LB_TRY(get_bool(L, path, obj, "add_prefix_space", 1, &p.add_prefix_space));
        LB_TRY(get_bool(L, path, obj, "use_regex", 1, &use_regex));
        if (use_regex) {
            char where[600];
            snprintf(where, sizeof where, "%s: %s (the GPT-2 regex)", L->name, path);
            if (!(p.pattern = lb_pattern_regex(GPT2_PATTERN, strlen(GPT2_PATTERN), where))) return lb_errcode();
        }
        return add_pretok(L, path, p);
    }
    if (strcmp(type, "Metaspace") == 0) {
        static const char *const keys[] = {"type", "replacement", "prepend_scheme", "split", "add_prefix_space",
                                           "str_rep", NULL};
        LB_TRY(only_keys(L, path, obj, keys));
        p.kind = HF_PRE_METASPACE;
        if (!json_object_get(obj, "replacement")) return bad(L, path, "Metaspace needs a \"replacement\"");
        LB_TRY(get_char(L, path, obj, "replacement", 0x2581, &p.replacement));
        LB_TRY(get_prepend_scheme(L, path, obj, &p.prepend));
        LB_TRY(get_bool(L, path, obj, "split", 1, &p.split));
        return add_pretok(L, path, p);
    }
    if (strcmp(type, "Digits") == 0) {
        static const char *const keys[] = {"type", "individual_digits", NULL};
        LB_TRY(only_keys(L, path, obj, keys));
        p.kind = HF_PRE_DIGITS;
        LB_TRY(get_bool(L, path, obj, "individual_digits", 0, &p.individual_digits));
        return add_pretok(L, path, p);
    }
    return bad(L, path, "pre-tokenizer \"%s\" is not supported by lowbit (supported: Sequence, Split, ByteLevel, "
               "Metaspace, Digits)", type);
}

/* ---- decoders ------------------------------------------------------------------ */

static lb_status add_decoder(loader *L, const char *path, hf_decoder d) {
    lb_status st = append(L, path, &L->t->dec, &L->t->n_dec, &d, sizeof d);
    if (st != LB_OK) {
        lb_pattern_free(d.pattern);
        free(d.content);
    }
    return st;
}

static lb_status load_decoder(loader *L, const char *path, const json_t *obj) {
    if (json_is_null(obj)) return LB_OK;
    const char *type = NULL;
    LB_TRY(get_type(L, path, obj, &type));
    L->t->has_decoder = 1;
    hf_decoder d = {0};
    if (strcmp(type, "Sequence") == 0) return load_sequence(L, path, obj, "decoders", load_decoder);
    if (strcmp(type, "ByteLevel") == 0) {
        static const char *const keys[] = {"type", "add_prefix_space", "trim_offsets", "use_regex", NULL};
        LB_TRY(only_keys(L, path, obj, keys));
        d.kind = HF_DEC_BYTE_LEVEL;
        return add_decoder(L, path, d);
    }
    if (strcmp(type, "ByteFallback") == 0 || strcmp(type, "Fuse") == 0) {
        static const char *const keys[] = {"type", NULL};
        LB_TRY(only_keys(L, path, obj, keys));
        d.kind = type[0] == 'B' ? HF_DEC_BYTE_FALLBACK : HF_DEC_FUSE;
        return add_decoder(L, path, d);
    }
    if (strcmp(type, "Replace") == 0) {
        static const char *const keys[] = {"type", "pattern", "content", NULL};
        LB_TRY(only_keys(L, path, obj, keys));
        const char *s;
        size_t n;
        LB_TRY(get_str(L, path, obj, "content", &s, &n));
        if (!s) return bad(L, path, "Replace needs a \"content\" string");
        d.kind = HF_DEC_REPLACE;
        LB_TRY(get_pattern(L, path, obj, &d.pattern));
        if (!(d.content = dup_bytes(s, n))) {
            lb_pattern_free(d.pattern);
            return lb_error(LB_ENOMEM, "out of memory");
        }
        d.content_len = n;
        return add_decoder(L, path, d);
    }
    if (strcmp(type, "Strip") == 0) {
        static const char *const keys[] = {"type", "content", "start", "stop", NULL};
        LB_TRY(only_keys(L, path, obj, keys));
        d.kind = HF_DEC_STRIP;
        if (!json_object_get(obj, "content")) return bad(L, path, "Strip needs a \"content\" character");
        LB_TRY(get_char(L, path, obj, "content", ' ', &d.ch));
        LB_TRY(get_size(L, path, obj, "start", &d.start));
        LB_TRY(get_size(L, path, obj, "stop", &d.stop));
        return add_decoder(L, path, d);
    }
    if (strcmp(type, "Metaspace") == 0) {
        static const char *const keys[] = {"type", "replacement", "prepend_scheme", "split", "add_prefix_space",
                                           "str_rep", NULL};
        LB_TRY(only_keys(L, path, obj, keys));
        d.kind = HF_DEC_METASPACE;
        hf_prepend scheme;
        if (!json_object_get(obj, "replacement")) return bad(L, path, "Metaspace needs a \"replacement\"");
        LB_TRY(get_char(L, path, obj, "replacement", 0x2581, &d.ch));
        LB_TRY(get_prepend_scheme(L, path, obj, &scheme));
        d.prepend_never = scheme == HF_PREPEND_NEVER;
        return add_decoder(L, path, d);
    }
    return bad(L, path, "decoder \"%s\" is not supported by lowbit (supported: Sequence, ByteLevel, ByteFallback, "
               "Fuse, Replace, Strip, Metaspace)", type);
}

/* ---- post-processor --------------------------------------------------------------- */

static lb_status append_ids(int **v, int *n, const int *ids, int k) {
    int *w = realloc(*v, (size_t)(*n + k + 1) * sizeof *w);
    if (!w) return lb_error(LB_ENOMEM, "out of memory");
    memcpy(w + *n, ids, (size_t)k * sizeof *w);
    *v = w, *n += k;
    return LB_OK;
}

static lb_status load_template(loader *L, const char *path, const json_t *obj) {
    lb_hf *t = L->t;
    static const char *const keys[] = {"type", "single", "pair", "special_tokens", NULL};
    LB_TRY(only_keys(L, path, obj, keys));
    if (L->seen_template++) return bad(L, path, "a second TemplateProcessing is not supported");
    json_t *single = json_object_get(obj, "single"), *specials = json_object_get(obj, "special_tokens");
    if (!json_is_array(single)) return bad(L, path, "\"single\" must be a list, found %s", show(single));
    if (specials && !json_is_object(specials) && !json_is_null(specials))
        return bad(L, path, "\"special_tokens\" must be an object, found %s", show(specials));
    int n_seq = 0;
    for (size_t i = 0; i < json_array_size(single); i++) {
        char p[512];
        snprintf(p, sizeof p, "%s.single[%zu]", path, i);
        json_t *piece = json_array_get(single, i);
        json_t *seq = json_object_get(piece, "Sequence"), *sp = json_object_get(piece, "SpecialToken");
        if (!json_is_object(piece) || json_object_size(piece) != 1 || (!seq && !sp))
            return bad(L, p, "expected {\"Sequence\": ...} or {\"SpecialToken\": ...}, found %s", show(piece));
        if (seq) {
            json_t *id = json_object_get(seq, "id");
            if (!json_is_string(id) || strcmp(json_string_value(id), "A") != 0)
                return bad(L, p, "a single-sequence template can only hold sequence A, found %s", show(seq));
            n_seq++;
            continue;
        }
        json_t *name = json_object_get(sp, "id");
        json_t *entry = json_is_string(name) ? json_object_get(specials, json_string_value(name)) : NULL;
        json_t *ids = json_object_get(entry, "ids");
        if (!json_is_array(ids))
            return bad(L, p, "special token %s is not in %s.special_tokens with a list of \"ids\"", show(name), path);
        for (size_t k = 0; k < json_array_size(ids); k++) {
            json_t *v = json_array_get(ids, k);
            if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > LB_BPE_MAX_ID)
                return bad(L, p, "id %s of special token %s: expected 0..%d", show(v), show(name), LB_BPE_MAX_ID);
            int id = (int)json_integer_value(v);
            LB_TRY(n_seq ? append_ids(&t->suffix, &t->n_suffix, &id, 1) : append_ids(&t->prefix, &t->n_prefix, &id, 1));
        }
    }
    if (n_seq != 1) return bad(L, path, "\"single\" must hold sequence A exactly once, found %d times", n_seq);
    return LB_OK;
}

static lb_status load_post_processor(loader *L, const char *path, const json_t *obj) {
    if (json_is_null(obj)) return LB_OK;
    const char *type = NULL;
    LB_TRY(get_type(L, path, obj, &type));
    if (strcmp(type, "Sequence") == 0) return load_sequence(L, path, obj, "processors", load_post_processor);
    if (strcmp(type, "ByteLevel") == 0) {
        /* only trims offsets: the ids are unchanged */
        static const char *const keys[] = {"type", "add_prefix_space", "trim_offsets", "use_regex", NULL};
        return only_keys(L, path, obj, keys);
    }
    if (strcmp(type, "TemplateProcessing") == 0) return load_template(L, path, obj);
    return bad(L, path, "post-processor \"%s\" is not supported by lowbit (supported: Sequence, ByteLevel, "
               "TemplateProcessing)", type);
}

/* ---- the model ------------------------------------------------------------------- */

static lb_status load_model(loader *L, const json_t *obj) {
    lb_bpe *m = &L->t->model;
    const char *path = "model";
    if (!json_is_object(obj)) return bad(L, path, "expected an object, found %s", show(obj));
    json_t *type = json_object_get(obj, "type");
    if (type && (!json_is_string(type) || strcmp(json_string_value(type), "BPE") != 0))
        return bad(L, "model.type", "model %s is not supported by lowbit (supported: BPE)", show(type));
    static const char *const keys[] = {"type", "dropout", "unk_token", "continuing_subword_prefix",
                                       "end_of_word_suffix", "fuse_unk", "byte_fallback", "ignore_merges",
                                       "vocab", "merges", NULL};
    LB_TRY(only_keys(L, path, obj, keys));
    json_t *dropout = json_object_get(obj, "dropout");
    if (dropout && !json_is_null(dropout) && !(json_is_number(dropout) && json_number_value(dropout) == 0.0))
        return bad(L, "model.dropout", "BPE dropout %s is not supported by lowbit (it makes encoding random)",
                   show(dropout));
    static const char *const affixes[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        const char *s;
        size_t n;
        LB_TRY(get_str(L, path, obj, affixes[i], &s, &n));
        if (s && n > 0) {
            char p[128];
            snprintf(p, sizeof p, "model.%s", affixes[i]);
            return bad(L, p, "\"%s\" is not supported by lowbit (only null or \"\")", s);
        }
    }
    const char *unk;
    size_t unk_n;
    LB_TRY(get_str(L, path, obj, "unk_token", &unk, &unk_n));
    LB_TRY(get_bool(L, path, obj, "fuse_unk", 0, &m->fuse_unk));
    LB_TRY(get_bool(L, path, obj, "byte_fallback", 0, &m->byte_fallback));
    LB_TRY(get_bool(L, path, obj, "ignore_merges", 0, &m->ignore_merges));
    if (unk && !(m->unk_token = dup_bytes(unk, unk_n))) return lb_error(LB_ENOMEM, "out of memory");

    json_t *vocab = json_object_get(obj, "vocab"), *merges = json_object_get(obj, "merges");
    if (!json_is_object(vocab)) return bad(L, "model.vocab", "expected an object of token: id, found %s", show(vocab));
    if (!json_is_array(merges)) return bad(L, "model.merges", "expected a list, found %s", show(merges));
    char where[512];
    snprintf(where, sizeof where, "%s: model.vocab", L->name);
    const char *key;
    json_t *v;
    json_object_foreach(vocab, key, v) {
        if (!json_is_integer(v)) return bad(L, "model.vocab", "token \"%s\": expected an integer id, found %s", key, show(v));
        LB_TRY(lb_bpe_add_token(m, key, strlen(key), json_integer_value(v), where));
    }
    snprintf(where, sizeof where, "%s: model.merges", L->name);
    for (size_t i = 0; i < json_array_size(merges); i++) {
        json_t *e = json_array_get(merges, i);
        const char *a, *b;
        size_t na, nb;
        if (json_is_string(e)) {
            /* "a b": exactly one space (the library's legacy form) */
            const char *s = json_string_value(e), *sp = strchr(s, ' ');
            if (!sp || strchr(sp + 1, ' ') || json_string_length(e) != strlen(s)) {
                char p[64];
                snprintf(p, sizeof p, "model.merges[%zu]", i);
                return bad(L, p, "expected \"left right\" with one space, found %s", show(e));
            }
            a = s, na = (size_t)(sp - s), b = sp + 1, nb = strlen(sp + 1);
        } else if (json_is_array(e) && json_array_size(e) == 2 && json_is_string(json_array_get(e, 0)) &&
                   json_is_string(json_array_get(e, 1))) {
            a = json_string_value(json_array_get(e, 0)), na = json_string_length(json_array_get(e, 0));
            b = json_string_value(json_array_get(e, 1)), nb = json_string_length(json_array_get(e, 1));
        } else {
            char p[64];
            snprintf(p, sizeof p, "model.merges[%zu]", i);
            return bad(L, p, "expected \"left right\" or [\"left\", \"right\"], found %s", show(e));
        }
        if (i > 0 && json_is_string(e) != json_is_string(json_array_get(merges, 0))) {
            char p[64];
            snprintf(p, sizeof p, "model.merges[%zu]", i);
            return bad(L, p, "mixes the \"left right\" and [\"left\", \"right\"] forms");
        }
        LB_TRY(lb_bpe_add_merge(m, a, na, b, nb, (uint32_t)i, where));
    }
    lb_status st = lb_bpe_finish(m);
    if (st != LB_OK) lb_error_prefix("%s", L->name);
    return st;
}

/* ---- added tokens (AddedVocabulary::add_tokens) -------------------------------------------- */

static lb_status load_added_tokens(loader *L, const json_t *list) {
    lb_hf *t = L->t;
    if (!list || json_is_null(list)) return LB_OK;
    if (!json_is_array(list)) return bad(L, "added_tokens", "expected a list, found %s", show(list));
    size_t n = json_array_size(list);
    t->added = calloc(n + 1, sizeof *t->added);
    if (!t->added) return lb_error(LB_ENOMEM, "out of memory");
    hf_added_token *tmp = calloc(n + 1, sizeof *tmp);
    if (!tmp) return lb_error(LB_ENOMEM, "out of memory");
    lb_strmap contents = {0};
    lb_status st = LB_OK;
    /* ids: the model's id of the content, else the next free one after the
     * model's vocabulary (the id written in the file is not used, as in the library) */
    int64_t next_id = (int64_t)t->model.vocab.n;
    size_t n_tmp = 0;
    for (size_t i = 0; i < n && st == LB_OK; i++) {
        char p[64];
        snprintf(p, sizeof p, "added_tokens[%zu]", i);
        json_t *e = json_array_get(list, i);
        static const char *const keys[] = {"id", "content", "single_word", "lstrip", "rstrip", "normalized",
                                           "special", NULL};
        if (!json_is_object(e)) {
            st = bad(L, p, "expected an object, found %s", show(e));
            break;
        }
        if ((st = only_keys(L, p, e, keys)) != LB_OK) break;
        hf_added_token a = {0};
        const char *s;
        size_t len;
        if ((st = get_str(L, p, e, "content", &s, &len)) != LB_OK) break;
        if (!s || len == 0) {
            st = bad(L, p, "expected a non-empty \"content\"");
            break;
        }
        if (lb_strmap_find(&contents, s, len)) {
            st = bad(L, p, "content \"%s\" appears twice", s);
            break;
        }
        if ((st = get_bool(L, p, e, "special", 0, &a.special)) != LB_OK ||
            (st = get_bool(L, p, e, "single_word", 0, &a.single_word)) != LB_OK ||
            (st = get_bool(L, p, e, "lstrip", 0, &a.lstrip)) != LB_OK ||
            (st = get_bool(L, p, e, "rstrip", 0, &a.rstrip)) != LB_OK ||
            (st = get_bool(L, p, e, "normalized", !a.special, &a.normalized)) != LB_OK)
            break;
        lb_strmap_entry *in_model = lb_strmap_find(&t->model.vocab, s, len);
        int64_t id = in_model ? in_model->value : next_id++;
        if (id > LB_BPE_MAX_ID) {
            st = bad(L, p, "token \"%s\" would get id %lld, above %d", s, (long long)id, LB_BPE_MAX_ID);
            break;
        }
        a.id = (int)id;
        a.len = len;
        if (!(a.content = dup_bytes(s, len))) {
            st = lb_error(LB_ENOMEM, "out of memory");
            break;
        }
        if ((st = lb_strmap_put(&contents, s, len, 1, NULL, NULL)) != LB_OK) {
            free(a.content);
            break;
        }
        tmp[n_tmp++] = a;
    }
    /* the library's order: special tokens first, then the others */
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < n_tmp; i++)
            if (tmp[i].special == (pass == 0)) t->added[t->n_added++] = tmp[i];
    if (st != LB_OK)
        for (size_t i = t->n_added; i < n_tmp; i++) free(tmp[i].content);
    free(tmp);
    lb_strmap_free(&contents);
    return st;
}

/* After the normalizer is known: the tries, the special set, the id table. */
static lb_status index_added_tokens(loader *L) {
    lb_hf *t = L->t;
    int max_id = t->model.n_ids - 1;
    for (int i = 0; i < t->n_added; i++) {
        hf_added_token *a = &t->added[i];
        if (a->id > max_id) max_id = a->id;
        if (a->special) LB_TRY(lb_strmap_put(&t->special, a->content, a->len, 1, NULL, NULL));
        if (a->single_word && !t->word_char) {
            char where[300];
            snprintf(where, sizeof where, "%s: single_word", L->name);
            if (!(t->word_char = lb_pattern_regex(WORD_CHAR_PATTERN, strlen(WORD_CHAR_PATTERN), where)))
                return lb_errcode();
        }
        if (!a->normalized) {
            LB_TRY(lb_hf_trie_add(&t->raw, a->content, a->len, i));
            continue;
        }
        /* normalized tokens are matched in normalized text by their normalized content */
        size_t n;
        char *norm = lb_hf_normalize_text(t, a->content, a->len, &n);
        if (!norm) return lb_errcode();
        lb_status st = n > 0 ? lb_hf_trie_add(&t->normalized, norm, n, i)
                             : bad(L, "added_tokens", "token \"%s\" normalizes to nothing", a->content);
        free(norm);
        LB_TRY(st);
    }
    for (int i = 0; i < t->n_prefix; i++) max_id = t->prefix[i] > max_id ? t->prefix[i] : max_id;
    for (int i = 0; i < t->n_suffix; i++) max_id = t->suffix[i] > max_id ? t->suffix[i] : max_id;
    if (max_id < 0) return bad(L, "model.vocab", "the vocabulary is empty");
    t->vocab_size = max_id + 1;
    if (!(t->added_of_id = malloc((size_t)t->vocab_size * sizeof *t->added_of_id)))
        return lb_error(LB_ENOMEM, "out of memory");
    for (int i = 0; i < t->vocab_size; i++) t->added_of_id[i] = -1;
    for (int i = 0; i < t->n_added; i++) t->added_of_id[t->added[i].id] = i;
    return LB_OK;
}

/* Metaspace with prepend_scheme "first" asks where a split starts in the
 * original text; lowbit knows that only while every earlier stage has left
 * the text as it was. */
static lb_status check_metaspace_first(const loader *L) {
    const lb_hf *t = L->t;
    for (int i = 0; i < t->n_pre; i++) {
        const hf_pretok *p = &t->pre[i];
        if (p->kind == HF_PRE_METASPACE && p->prepend == HF_PREPEND_FIRST) {
            int changed = t->n_norm > 0;
            for (int j = 0; j < i; j++) changed |= t->pre[j].kind == HF_PRE_BYTE_LEVEL || t->pre[j].kind == HF_PRE_METASPACE;
            if (changed)
                return bad(L, "pre_tokenizer", "Metaspace with prepend_scheme \"first\" after a normalizer or a "
                           "text-changing pre-tokenizer is not supported by lowbit");
        }
    }
    return LB_OK;
}

void lb_hf_free(lb_hf *t) {
    if (!t) return;
    lb_bpe_free(&t->model);
    for (int i = 0; i < t->n_norm; i++) {
        free(t->norm[i].text);
        lb_pattern_free(t->norm[i].pattern);
    }
    free(t->norm);
    for (int i = 0; i < t->n_pre; i++) lb_pattern_free(t->pre[i].pattern);
    free(t->pre);
    for (int i = 0; i < t->n_dec; i++) {
        lb_pattern_free(t->dec[i].pattern);
        free(t->dec[i].content);
    }
    free(t->dec);
    for (int i = 0; i < t->n_added; i++) free(t->added[i].content);
    free(t->added);
    lb_hf_trie_free(&t->raw);
    lb_hf_trie_free(&t->normalized);
    lb_strmap_free(&t->special);
    free(t->added_of_id);
    free(t->prefix);
    free(t->suffix);
    lb_pattern_free(t->word_char);
    free(t);
}

lb_hf *lb_hf_from_json(const char *text, size_t len, const char *name) {
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    if (!root) {
        lb_error(LB_EFORMAT, "%s: line %d, column %d: %s", name, jerr.line, jerr.column, jerr.text);
        return NULL;
    }
    lb_hf *t = calloc(1, sizeof *t);
    loader L = {name, t, 0};
    lb_status st = t ? LB_OK : lb_error(LB_ENOMEM, "%s: out of memory", name);
    static const char *const keys[] = {"version", "truncation", "padding", "added_tokens", "normalizer",
                                       "pre_tokenizer", "post_processor", "decoder", "model", NULL};
    if (st == LB_OK && !json_is_object(root)) st = bad(&L, "(root)", "expected an object");
    if (st == LB_OK) st = only_keys(&L, "", root, keys);
    if (st == LB_OK) {
        json_t *v = json_object_get(root, "version");
        if (v && !(json_is_string(v) && strcmp(json_string_value(v), "1.0") == 0))
            st = bad(&L, "version", "%s: expected \"1.0\"", show(v));
    }
    static const char *const unsupported[] = {"truncation", "padding"};
    for (int i = 0; i < 2 && st == LB_OK; i++) {
        json_t *v = json_object_get(root, unsupported[i]);
        if (v && !json_is_null(v)) st = bad(&L, unsupported[i], "%s is not supported by lowbit (only null)", show(v));
    }
    if (st == LB_OK) st = lb_bpe_init(&t->model);
    if (st == LB_OK && !json_object_get(root, "model")) st = bad(&L, "model", "missing");
    if (st == LB_OK) st = load_model(&L, json_object_get(root, "model"));
    if (st == LB_OK) st = load_normalizer(&L, "normalizer", json_object_get(root, "normalizer"));
    if (st == LB_OK) st = load_pre_tokenizer(&L, "pre_tokenizer", json_object_get(root, "pre_tokenizer"));
    if (st == LB_OK) st = load_post_processor(&L, "post_processor", json_object_get(root, "post_processor"));
    if (st == LB_OK) st = load_decoder(&L, "decoder", json_object_get(root, "decoder"));
    if (st == LB_OK) st = load_added_tokens(&L, json_object_get(root, "added_tokens"));
    if (st == LB_OK) st = index_added_tokens(&L);
    if (st == LB_OK) st = check_metaspace_first(&L);
    json_decref(root);
    if (st != LB_OK) {
        lb_hf_free(t);
        return NULL;
    }
    return t;
}
