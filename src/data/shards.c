#include "data/shards.h"

#include <dirent.h>
#include <errno.h>
#include <glob.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "token shards are little-endian and read in place: lowbit needs a little-endian host"
#endif

const char *const lb_shard_layout_names[LB_SHARD_LAYOUT_COUNT] = {"llmc", "nanogpt"};

/* The llm.c header kinds (dev/data/data_common.py HEADERS_INFO): one row per
 * token width. */
typedef struct shard_kind {
    int32_t magic, version;
    lb_token_width width;
    const char *dtype;   /* the manifest's name */
    size_t bytes;
} shard_kind;
static const shard_kind KINDS[] = {
    {20240520, 1, LB_TOKENS_U16, "uint16", 2}, /* llm.c "gpt-2" */
    {20240801, 7, LB_TOKENS_U32, "uint32", 4}, /* llm.c "llama-3" */
};
enum { N_KINDS = sizeof KINDS / sizeof KINDS[0] };

static const shard_kind *kind_of_width(lb_token_width w) {
    for (int i = 0; i < N_KINDS; i++)
        if (KINDS[i].width == w) return &KINDS[i];
    return NULL;
}

lb_token_width lb_shard_width_for(int vocab_size) { return vocab_size <= 65536 ? LB_TOKENS_U16 : LB_TOKENS_U32; }

/* ---- one shard ------------------------------------------------------------ */

/* The first id ≥ vocab_size, as an index, or n when there is none. */
static size_t first_bad_id(const lb_token_piece *p, int vocab_size) {
    if (p->width == LB_TOKENS_U16) {
        const uint16_t *v = p->ids;
        if (vocab_size >= 65536) return p->n;
        /* the maximum first (vectorizes); the index only when needed */
        uint16_t mx = 0;
        for (size_t i = 0; i < p->n; i++) mx = v[i] > mx ? v[i] : mx;
        if (mx < (uint32_t)vocab_size) return p->n;
        for (size_t i = 0; i < p->n; i++)
            if (v[i] >= (uint32_t)vocab_size) return i;
    } else {
        const uint32_t *v = p->ids;
        uint32_t mx = 0;
        for (size_t i = 0; i < p->n; i++) mx = v[i] > mx ? v[i] : mx;
        if (mx < (uint32_t)vocab_size) return p->n;
        for (size_t i = 0; i < p->n; i++)
            if (v[i] >= (uint32_t)vocab_size) return i;
    }
    return p->n;
}

/* Checks the llm.c header of a mapped file and sets the piece. */
static lb_status check_llmc(lb_shard *s) {
    const char *path = s->path;
    size_t size = s->file.size;
    if (size < LB_SHARD_HEADER_BYTES)
        return lb_error(LB_EFORMAT, "shard '%s': %zu bytes, shorter than the %d-byte llm.c header", path, size,
                        LB_SHARD_HEADER_BYTES);
    int32_t h[3];
    memcpy(h, s->file.data, sizeof h);
    const shard_kind *k = NULL;
    for (int i = 0; i < N_KINDS; i++)
        if (KINDS[i].magic == h[0]) k = &KINDS[i];
    if (!k)
        return lb_error(LB_EFORMAT, "shard '%s': magic %d at offset 0, expected %d (uint16 tokens) or %d (uint32)",
                        path, h[0], KINDS[0].magic, KINDS[1].magic);
    if (h[1] != k->version)
        return lb_error(LB_EFORMAT, "shard '%s': version %d at offset 4, expected %d for magic %d (%s tokens)", path,
                        h[1], k->version, k->magic, k->dtype);
    if (h[2] < 0)
        return lb_error(LB_EFORMAT, "shard '%s': token count %d at offset 8, expected ≥ 0", path, h[2]);
    uint64_t want = LB_SHARD_HEADER_BYTES + (uint64_t)h[2] * k->bytes;
    if (size < want)
        return lb_error(LB_EFORMAT, "shard '%s': truncated: the header (offset 8) counts %d %s tokens, %llu bytes "
                        "in all, the file has %zu", path, h[2], k->dtype, (unsigned long long)want, size);
    if (size > want)
        return lb_error(LB_EFORMAT, "shard '%s': %zu bytes after the %d %s tokens the header (offset 8) counts, "
                        "from offset %llu", path, size - (size_t)want, h[2], k->dtype, (unsigned long long)want);
    s->piece = (lb_token_piece){s->file.data + LB_SHARD_HEADER_BYTES, (size_t)h[2], k->width};
    return LB_OK;
}

static lb_status check_nanogpt(lb_shard *s) {
    if (s->file.size % 2)
        return lb_error(LB_EFORMAT, "shard '%s': %zu bytes, expected an even size (nanoGPT: raw uint16 tokens)",
                        s->path, s->file.size);
    s->piece = (lb_token_piece){s->file.data, s->file.size / 2, LB_TOKENS_U16};
    return LB_OK;
}

static lb_status open_checked(lb_shard *s, const char *path, lb_shard_layout layout, int vocab_size) {
    if (!(s->path = strdup(path))) return lb_error(LB_ENOMEM, "shard '%s': out of memory", path);
    LB_TRY(lb_map_file(path, &s->file));
    LB_TRY(layout == LB_SHARDS_LLMC ? check_llmc(s) : check_nanogpt(s));
    size_t bad = first_bad_id(&s->piece, vocab_size);
    if (bad < s->piece.n) {
        size_t w = s->piece.width == LB_TOKENS_U16 ? 2 : 4;
        uint32_t id = w == 2 ? ((const uint16_t *)s->piece.ids)[bad] : ((const uint32_t *)s->piece.ids)[bad];
        size_t at = (size_t)((const uint8_t *)s->piece.ids - s->file.data) + bad * w;
        return lb_error(LB_EFORMAT, "shard '%s': token %zu (byte offset %zu) is id %u, expected an id below the "
                        "vocabulary of %d", path, bad, at, id, vocab_size);
    }
    return LB_OK;
}

lb_status lb_shard_open(lb_shard *s, const char *path, lb_shard_layout layout, int vocab_size) {
    memset(s, 0, sizeof *s);
    lb_status st = open_checked(s, path, layout, vocab_size);
    if (st != LB_OK) lb_shard_close(s); /* a failed open holds nothing (closing it again is harmless) */
    return st;
}

void lb_shard_close(lb_shard *s) {
    if (!s) return;
    lb_unmap_file(&s->file);
    free(s->path);
    memset(s, 0, sizeof *s);
}

/* ---- a set of shards ------------------------------------------------------ */

lb_status lb_shard_set_open(lb_shard_set *set, const char *const *paths, int n, lb_shard_layout layout,
                            int vocab_size) {
    memset(set, 0, sizeof *set);
    if (n < 0) return lb_error(LB_EINVAL, "shards: %d files", n);
    set->shards = calloc((size_t)n + 1, sizeof *set->shards);
    set->pieces = calloc((size_t)n + 1, sizeof *set->pieces);
    set->starts = calloc((size_t)n + 1, sizeof *set->starts);
    if (!set->shards || !set->pieces || !set->starts) return lb_error(LB_ENOMEM, "shards: out of memory");
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        lb_status s = lb_shard_open(&set->shards[i], paths[i], layout, vocab_size);
        set->n = i + 1;
        if (s != LB_OK) return s;
        set->pieces[i] = set->shards[i].piece;
        set->starts[i] = total;
        total += set->pieces[i].n;
    }
    set->starts[n] = total;
    set->tokens = (lb_tokens){.pieces = set->pieces, .starts = set->starts, .n_pieces = n, .n = total};
    if (n == 0) set->tokens = lb_tokens_of_ints(NULL, 0);
    return LB_OK;
}

void lb_shard_set_free(lb_shard_set *set) {
    if (!set) return;
    for (int i = 0; i < set->n; i++) lb_shard_close(&set->shards[i]);
    free(set->shards);
    free(set->pieces);
    free(set->starts);
    memset(set, 0, sizeof *set);
}

/* ---- opening data.shards --------------------------------------------------- */

static char *join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s%s%s", dir, dir[0] && dir[strlen(dir) - 1] == '/' ? "" : "/", name);
    return p;
}

/* A growable list of paths. */
typedef struct path_list {
    char **v;
    int n, cap;
} path_list;

static lb_status push_path(path_list *l, char *p) {
    if (!p) return lb_error(LB_ENOMEM, "shards: out of memory");
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 16;
        char **v = realloc(l->v, (size_t)cap * sizeof *v);
        if (!v) {
            free(p);
            return lb_error(LB_ENOMEM, "shards: out of memory");
        }
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = p;
    return LB_OK;
}

static void free_paths(path_list *l) {
    for (int i = 0; i < l->n; i++) free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* The regular, not hidden *.bin files of dir. */
static lb_status list_bin_files(const char *dir, path_list *out) {
    DIR *d = opendir(dir);
    if (!d) return lb_error(LB_EIO, "data.shards '%s': cannot open: %s", dir, strerror(errno));
    lb_status s = LB_OK;
    for (struct dirent *e; s == LB_OK && (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.' || !ends_with(e->d_name, ".bin")) continue;
        char *p = join(dir, e->d_name);
        struct stat st;
        if (p && stat(p, &st) == 0 && !S_ISREG(st.st_mode)) {
            free(p);
            continue;
        }
        s = push_path(out, p);
    }
    closedir(d);
    return s;
}

static lb_status glob_files(const char *pattern, path_list *out) {
    glob_t g;
    int rc = glob(pattern, GLOB_NOSORT, NULL, &g);
    if (rc == GLOB_NOMATCH) return lb_error(LB_EIO, "data.shards '%s': no file matches", pattern);
    if (rc != 0) return lb_error(LB_EIO, "data.shards '%s': cannot expand the pattern", pattern);
    lb_status s = LB_OK;
    for (size_t i = 0; i < g.gl_pathc && s == LB_OK; i++) s = push_path(out, strdup(g.gl_pathv[i]));
    globfree(&g);
    return s;
}

/* Train and validation files by name: "val" in the base name is validation. */
static lb_status split_by_name(path_list *all, path_list *train, path_list *val) {
    if (all->n > 1) qsort(all->v, (size_t)all->n, sizeof *all->v, cmp_str); /* strcmp: locale-independent */
    for (int i = 0; i < all->n; i++) {
        const char *base = strrchr(all->v[i], '/');
        base = base ? base + 1 : all->v[i];
        LB_TRY(push_path(strstr(base, "val") ? val : train, all->v[i]));
        all->v[i] = NULL;
    }
    return LB_OK;
}

static lb_status open_sets(lb_shard_data *d, path_list *train, path_list *val, const char *spec) {
    if (train->n == 0) return lb_error(LB_EINVAL, "data.shards '%s': no train shards", spec);
    int vocab = d->tok->vocab_size;
    LB_TRY(lb_shard_set_open(&d->train, (const char *const *)train->v, train->n, d->layout, vocab));
    return lb_shard_set_open(&d->val, (const char *const *)val->v, val->n, d->layout, vocab);
}

static const char *json_str(json_t *o, const char *key) {
    json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* Loads the tokenizer a manifest names. */
static lb_tokenizer *load_manifest_tokenizer(const char *dir, const char *file, lb_tokenizer_kind kind) {
    char *path = join(dir, file);
    if (!path) {
        lb_error(LB_ENOMEM, "shards: out of memory");
        return NULL;
    }
    lb_mapped_file m;
    lb_tokenizer *t = NULL;
    if (lb_map_file(path, &m) == LB_OK) {
        if (kind == LB_TOKENIZER_BPE || kind == LB_TOKENIZER_HF)
            t = lb_tokenizer_from_json((const char *)m.data, m.size, path, kind);
        else
            t = lb_tokenizer_from_bytes(m.data, m.size);
        lb_unmap_file(&m);
        if (!t) lb_error_prefix("shards tokenizer '%s'", path);
    }
    free(path);
    return t;
}

/* The files of one manifest list, checked against the counts it gives. */
static lb_status manifest_list(const char *dir, const char *mpath, json_t *root, const char *key, path_list *out,
                               uint64_t **counts) {
    json_t *arr = json_object_get(root, key);
    if (!json_is_array(arr)) return lb_error(LB_EFORMAT, "%s: \"%s\": expected an array of shards", mpath, key);
    size_t n = json_array_size(arr);
    *counts = calloc(n + 1, sizeof **counts);
    if (!*counts) return lb_error(LB_ENOMEM, "shards: out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(arr, i), *tok = json_object_get(e, "tokens");
        const char *file = json_str(e, "file");
        if (!file || !*file || strchr(file, '/') || !json_is_integer(tok) || json_integer_value(tok) < 0)
            return lb_error(LB_EFORMAT, "%s: %s[%zu]: expected {\"file\": a name in the directory, \"tokens\": a count}",
                            mpath, key, i);
        (*counts)[i] = (uint64_t)json_integer_value(tok);
        LB_TRY(push_path(out, join(dir, file)));
    }
    return LB_OK;
}

static lb_status check_counts(const lb_shard_set *set, const uint64_t *counts, const char *mpath) {
    for (int i = 0; i < set->n; i++)
        if (set->shards[i].piece.n != counts[i])
            return lb_error(LB_EFORMAT, "shard '%s': %zu tokens, but %s lists %llu", set->shards[i].path,
                            set->shards[i].piece.n, mpath, (unsigned long long)counts[i]);
    return LB_OK;
}

static lb_status open_manifest(lb_shard_data *d, const char *dir, const char *mpath) {
    json_error_t jerr;
    json_t *root = json_load_file(mpath, 0, &jerr);
    if (!root) return lb_error(LB_EFORMAT, "%s: line %d: %s", mpath, jerr.line, jerr.text);
    path_list train = {0}, val = {0};
    uint64_t *train_counts = NULL, *val_counts = NULL;
    lb_status s = LB_OK;
    const char *format = json_str(root, "format"), *layout = json_str(root, "layout"),
               *dtype = json_str(root, "dtype"), *tokfile = json_str(root, "tokenizer"),
               *tokkind = json_str(root, "tokenizer_kind");
    json_t *version = json_object_get(root, "version"), *vocab = json_object_get(root, "vocab_size");
    lb_tokenizer_kind kind;
    int li = -1;
    for (int i = 0; layout && i < LB_SHARD_LAYOUT_COUNT; i++)
        if (!strcmp(layout, lb_shard_layout_names[i])) li = i;
    if (!format || strcmp(format, "lowbit-shards") || !json_is_integer(version) || json_integer_value(version) != 1)
        s = lb_error(LB_EFORMAT, "%s: expected \"format\": \"lowbit-shards\" and \"version\": 1", mpath);
    else if (li < 0)
        s = lb_error(LB_EFORMAT, "%s: \"layout\": expected \"llmc\" or \"nanogpt\"", mpath);
    else if (!tokfile || !*tokfile || strchr(tokfile, '/') || !tokkind ||
             lb_tokenizer_kind_from_name(tokkind, &kind) != LB_OK)
        s = lb_error(LB_EFORMAT, "%s: expected \"tokenizer\" (a file in the directory) and \"tokenizer_kind\" "
                     "(byte, char, bpe or hf)", mpath);
    if (s == LB_OK) {
        d->layout = (lb_shard_layout)li;
        if (!(d->tok = load_manifest_tokenizer(dir, tokfile, kind))) s = lb_errcode();
    }
    if (s == LB_OK && (!json_is_integer(vocab) || json_integer_value(vocab) != d->tok->vocab_size))
        s = lb_error(LB_EFORMAT, "%s: \"vocab_size\" disagrees with the tokenizer's vocabulary of %d", mpath,
                     d->tok->vocab_size);
    if (s == LB_OK && (!dtype || strcmp(dtype, kind_of_width(lb_shard_width_for(d->tok->vocab_size))->dtype)))
        s = lb_error(LB_EFORMAT, "%s: \"dtype\" %s, expected %s for a vocabulary of %d", mpath, dtype ? dtype : "missing",
                     kind_of_width(lb_shard_width_for(d->tok->vocab_size))->dtype, d->tok->vocab_size);
    if (s == LB_OK) s = manifest_list(dir, mpath, root, "train", &train, &train_counts);
    if (s == LB_OK) s = manifest_list(dir, mpath, root, "val", &val, &val_counts);
    if (s == LB_OK) s = open_sets(d, &train, &val, dir);
    if (s == LB_OK) s = check_counts(&d->train, train_counts, mpath);
    if (s == LB_OK) s = check_counts(&d->val, val_counts, mpath);
    if (s == LB_OK && d->layout == LB_SHARDS_LLMC)
        for (int i = 0; i < d->train.n + d->val.n && s == LB_OK; i++) {
            const lb_shard *sh = i < d->train.n ? &d->train.shards[i] : &d->val.shards[i - d->train.n];
            if (sh->piece.width != lb_shard_width_for(d->tok->vocab_size))
                s = lb_error(LB_EFORMAT, "shard '%s': %s tokens, but %s says %s", sh->path,
                             kind_of_width(sh->piece.width)->dtype, mpath, dtype);
        }
    free_paths(&train);
    free_paths(&val);
    free(train_counts);
    free(val_counts);
    json_decref(root);
    return s;
}

lb_status lb_shard_data_open(lb_shard_data *d, const char *spec, lb_shard_layout layout,
                             const lb_tokenizer_options *tok) {
    memset(d, 0, sizeof *d);
    struct stat st;
    int is_dir = stat(spec, &st) == 0 && S_ISDIR(st.st_mode);
    if (is_dir) {
        char *mpath = join(spec, LB_SHARD_MANIFEST);
        if (!mpath) return lb_error(LB_ENOMEM, "shards: out of memory");
        lb_status s = LB_OK;
        int has = stat(mpath, &st) == 0;
        if (has) s = open_manifest(d, spec, mpath);
        free(mpath);
        if (has) return s;
    }
    /* No manifest: the tokenizer comes from the config. */
    d->layout = layout;
    if (tok->kind == LB_TOKENIZER_BYTE) d->tok = lb_tokenizer_byte();
    else if (tok->kind == LB_TOKENIZER_HF) d->tok = lb_tokenizer_load_json(tok->path);
    else
        return lb_error(LB_ECONFIG, "data.shards '%s' has no %s: data.tokenizer must be byte or hf (a %s tokenizer "
                        "is built from a corpus)", spec, LB_SHARD_MANIFEST, lb_tokenizer_kind_name(tok->kind));
    if (!d->tok) return lb_errcode();
    if (layout == LB_SHARDS_NANOGPT && d->tok->vocab_size > 65536)
        return lb_error(LB_ECONFIG, "data.shards '%s': nanoGPT files hold uint16 ids, but the tokenizer's vocabulary "
                        "is %d (expected ≤ 65536)", spec, d->tok->vocab_size);
    path_list all = {0}, train = {0}, val = {0};
    lb_status s = is_dir ? list_bin_files(spec, &all) : glob_files(spec, &all);
    if (s == LB_OK) s = split_by_name(&all, &train, &val);
    if (s == LB_OK) s = open_sets(d, &train, &val, spec);
    free_paths(&all);
    free_paths(&train);
    free_paths(&val);
    return s;
}

void lb_shard_data_free(lb_shard_data *d) {
    if (!d) return;
    lb_shard_set_free(&d->train);
    lb_shard_set_free(&d->val);
    if (d->tok) lb_tokenizer_free(d->tok);
    memset(d, 0, sizeof *d);
}

/* ---- writing ----------------------------------------------------------------- */

lb_status lb_shard_writer_open(lb_shard_writer *w, const char *path, lb_shard_layout layout, lb_token_width width) {
    memset(w, 0, sizeof *w);
    w->layout = layout;
    w->width = width;
    if (width != LB_TOKENS_U16 && width != LB_TOKENS_U32)
        return lb_error(LB_EINVAL, "shard '%s': tokens are uint16 or uint32", path);
    if (layout == LB_SHARDS_NANOGPT && width != LB_TOKENS_U16)
        return lb_error(LB_EINVAL, "shard '%s': nanoGPT files hold uint16 tokens only (a vocabulary ≤ 65536)", path);
    LB_TRY(lb_atomic_begin(path, &w->file));
    if (layout == LB_SHARDS_LLMC) {
        int32_t h[LB_SHARD_HEADER_INTS] = {0};
        h[0] = kind_of_width(width)->magic;
        h[1] = kind_of_width(width)->version;
        return lb_atomic_write(&w->file, h, sizeof h); /* the count is written at close */
    }
    return LB_OK;
}

lb_status lb_shard_writer_append(lb_shard_writer *w, const int *ids, size_t n) {
    if (w->layout == LB_SHARDS_LLMC && w->n + n > LB_SHARD_MAX_TOKENS)
        return lb_error(LB_EINVAL, "shard '%s': more than %u tokens (llm.c's count is an int32)", w->file.path,
                        LB_SHARD_MAX_TOKENS);
    size_t bytes = w->width == LB_TOKENS_U16 ? 2 : 4, per = sizeof w->buf / bytes;
    for (size_t done = 0; done < n;) {
        size_t k = n - done < per ? n - done : per;
        for (size_t i = 0; i < k; i++) {
            int id = ids[done + i];
            if (id < 0 || (bytes == 2 && id > 65535))
                return lb_error(LB_EINVAL, "shard '%s': id %d does not fit %s", w->file.path, id,
                                kind_of_width(w->width)->dtype);
            if (bytes == 2) ((uint16_t *)w->buf)[i] = (uint16_t)id;
            else ((uint32_t *)w->buf)[i] = (uint32_t)id;
        }
        LB_TRY(lb_atomic_write(&w->file, w->buf, k * bytes));
        done += k;
    }
    w->n += n;
    return LB_OK;
}

lb_status lb_shard_writer_close(lb_shard_writer *w) {
    if (w->layout == LB_SHARDS_LLMC) {
        int32_t count = (int32_t)w->n;
        lb_status s = lb_atomic_write_at(&w->file, 8, &count, sizeof count);
        if (s != LB_OK) {
            lb_atomic_abort(&w->file);
            return s;
        }
    }
    return lb_atomic_commit(&w->file);
}

void lb_shard_writer_abort(lb_shard_writer *w) { lb_atomic_abort(&w->file); }

static json_t *shard_list(int n, char **files, const uint64_t *tokens) {
    json_t *a = json_array();
    for (int i = 0; a && i < n; i++)
        json_array_append_new(a, json_pack("{s:s, s:I}", "file", files[i], "tokens", (json_int_t)tokens[i]));
    return a;
}

static lb_status write_file(const char *path, const void *p, size_t n) {
    lb_atomic_file af;
    LB_TRY(lb_atomic_begin(path, &af));
    lb_status s = lb_atomic_write(&af, p, n);
    if (s != LB_OK) {
        lb_atomic_abort(&af);
        return s;
    }
    return lb_atomic_commit(&af);
}

lb_status lb_shard_manifest_write(const char *dir, const lb_shard_manifest *m) {
    json_t *root = json_pack("{s:s, s:i, s:s, s:s, s:i, s:s, s:s, s:f, s:o, s:o}", "format", "lowbit-shards",
                             "version", 1, "layout", lb_shard_layout_names[m->layout], "dtype",
                             kind_of_width(m->width)->dtype, "vocab_size", m->tok->vocab_size, "tokenizer",
                             m->tokenizer_file, "tokenizer_kind", lb_tokenizer_kind_name(m->tok->kind),
                             "val_fraction", m->val_fraction, "train",
                             shard_list(m->n_train, m->train_files, m->train_tokens), "val",
                             shard_list(m->n_val, m->val_files, m->val_tokens));
    char *text = root ? json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10)) : NULL;
    json_decref(root);
    char *path = join(dir, LB_SHARD_MANIFEST);
    lb_status s = text && path ? LB_OK : lb_error(LB_ENOMEM, "manifest: out of memory");
    if (s == LB_OK) {
        size_t n = strlen(text);
        text[n] = '\n'; /* json_dumps leaves no newline; the terminator becomes one */
        s = write_file(path, text, n + 1);
    }
    free(text);
    free(path);
    return s;
}

lb_status lb_shard_save_tokenizer(const char *dir, const lb_tokenizer *tok, const char **name) {
    int json = tok->kind == LB_TOKENIZER_BPE || tok->kind == LB_TOKENIZER_HF;
    *name = json ? "tokenizer.json" : "tokenizer.lbtk";
    char *path = join(dir, *name);
    if (!path) return lb_error(LB_ENOMEM, "tokenizer: out of memory");
    lb_status s;
    if (json) {
        s = lb_tokenizer_save_json(tok, path);
    } else {
        size_t n;
        uint8_t *bytes = lb_tokenizer_to_bytes(tok, &n);
        s = bytes ? write_file(path, bytes, n) : lb_errcode();
        free(bytes);
    }
    free(path);
    return s;
}
