#include "data/prepare.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/corpus.h"
#include "core/fileio.h"

#define DEFAULT_SHARD_TOKENS 100000000u /* llm.c's shard size */
#define DEFAULT_CHUNK_BYTES (1u << 20)
#define CHUNKS_PER_THREAD 8             /* a window: enough work to keep every thread busy */

/* A piece of a document part, tokenized by one thread. */
typedef struct chunk {
    const char *text;
    size_t len;
    int val;                  /* a validation part */
    int file;                 /* index in the file list, for messages */
    size_t at;                /* byte offset in the file */
    lb_ids ids;
    lb_status st;
    char *err;                /* the thread's message when st != LB_OK */
} chunk;

/* Train or validation tokens going to their shards. */
typedef struct out_stream {
    const char *name;         /* "train" or "val" */
    lb_shard_writer *w;       /* the shard being written, or NULL */
    int n;                    /* shards completed */
    char **files;
    uint64_t *tokens;
    uint64_t total;
} out_stream;

typedef struct prep {
    const lb_prepare_options *o;
    const lb_corpus_files *files;
    lb_tokenizer *tok;
    lb_token_width width;
    uint64_t shard_tokens;
    size_t chunk_bytes;
    chunk *win;
    int n_win, cap_win;
    lb_mapped_file *maps;     /* files whose chunks are in the window */
    int n_maps, cap_maps;
    out_stream train, val;
    uint64_t bytes_done, bytes_total;
} prep;

/* ---- output -------------------------------------------------------------- */

static lb_status finish_shard(prep *p, out_stream *os) {
    lb_shard_writer *w = os->w;
    os->w = NULL;
    uint64_t n = w->n;
    lb_status s = lb_shard_writer_close(w);
    free(w);
    if (s != LB_OK) return s;
    char **f = realloc(os->files, (size_t)(os->n + 1) * sizeof *f);
    if (f) os->files = f;
    uint64_t *t = realloc(os->tokens, (size_t)(os->n + 1) * sizeof *t);
    if (t) os->tokens = t;
    char name[64];
    if (p->o->layout == LB_SHARDS_LLMC) snprintf(name, sizeof name, "%s_%06d.bin", os->name, os->n);
    else snprintf(name, sizeof name, "%s.bin", os->name);
    if (!f || !t || !(os->files[os->n] = strdup(name))) return lb_error(LB_ENOMEM, "prepare: out of memory");
    os->tokens[os->n++] = n;
    return LB_OK;
}

static lb_status start_shard(prep *p, out_stream *os) {
    char path[4096];
    if (p->o->layout == LB_SHARDS_LLMC)
        snprintf(path, sizeof path, "%s/%s_%06d.bin", p->o->out_dir, os->name, os->n);
    else
        snprintf(path, sizeof path, "%s/%s.bin", p->o->out_dir, os->name);
    if (!(os->w = malloc(sizeof *os->w))) return lb_error(LB_ENOMEM, "prepare: out of memory");
    lb_status s = lb_shard_writer_open(os->w, path, p->o->layout, p->width);
    if (s != LB_OK) {
        lb_shard_writer_abort(os->w);
        free(os->w);
        os->w = NULL;
    }
    return s;
}

static lb_status append(prep *p, out_stream *os, const int *ids, size_t n) {
    while (n > 0) {
        if (!os->w) LB_TRY(start_shard(p, os));
        uint64_t room = p->o->layout == LB_SHARDS_LLMC ? p->shard_tokens - os->w->n : n;
        size_t take = n < room ? n : (size_t)room;
        LB_TRY(lb_shard_writer_append(os->w, ids, take));
        os->total += take;
        ids += take;
        n -= take;
        if (p->o->layout == LB_SHARDS_LLMC && os->w->n == p->shard_tokens) LB_TRY(finish_shard(p, os));
    }
    return LB_OK;
}

static void free_stream(out_stream *os) {
    if (os->w) {
        lb_shard_writer_abort(os->w);
        free(os->w);
    }
    for (int i = 0; i < os->n; i++) free(os->files[i]);
    free(os->files);
    free(os->tokens);
}

/* ---- the window ------------------------------------------------------------ */

/* Tokenizes the window's chunks in parallel, writes them in order, and
 * releases the mapped files (all but the last one when keep_last: its
 * remaining chunks are still to come). */
static lb_status flush(prep *p, int keep_last) {
    const lb_tokenizer *tok = p->tok;
    chunk *win = p->win;
    int n = p->n_win;
#pragma omp parallel for num_threads(p->o->threads) schedule(dynamic, 1)
    for (int i = 0; i < n; i++) {
        win[i].st = lb_tokenizer_encode_append(tok, win[i].text, win[i].len, 0, &win[i].ids);
        if (win[i].st != LB_OK) win[i].err = strdup(lb_errmsg()); /* messages are per thread */
    }
    lb_status s = LB_OK;
    for (int i = 0; i < n; i++) {
        chunk *c = &win[i];
        if (s == LB_OK && c->st != LB_OK) {
            s = lb_error(c->st, "corpus file '%s'%s, byte %zu: %s", p->files->files[c->file].path,
                         c->val ? " (validation part)" : "", c->at, c->err ? c->err : "");
        }
        if (s == LB_OK) s = append(p, c->val ? &p->val : &p->train, c->ids.v, c->ids.n);
        if (s == LB_OK) p->bytes_done += c->len;
        lb_ids_free(&c->ids);
        free(c->err);
    }
    p->n_win = 0;
    int keep = keep_last && p->n_maps > 0 ? 1 : 0;
    for (int i = 0; i < p->n_maps - keep; i++) lb_unmap_file(&p->maps[i]);
    if (keep) p->maps[0] = p->maps[p->n_maps - 1];
    p->n_maps = keep;
    if (s == LB_OK && p->o->progress) p->o->progress(p->o->progress_ctx, p->bytes_done, p->bytes_total);
    return s;
}

static lb_status push_chunk(prep *p, const char *text, size_t len, int val, int file, size_t at) {
    if (p->n_win == p->cap_win) LB_TRY(flush(p, 1));
    p->win[p->n_win++] = (chunk){.text = text, .len = len, .val = val, .file = file, .at = at};
    return LB_OK;
}

static int is_space(unsigned char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }
static int plain(unsigned char c) { return c < 0x80 && !is_space(c); }

/* Where the chunk starting at s[pos] ends (see prepare.h: chunk edges). */
static size_t chunk_end(const char *text, size_t pos, size_t end, size_t chunk_bytes) {
    const unsigned char *s = (const unsigned char *)text;
    if (end - pos <= chunk_bytes) return end;
    size_t target = pos + chunk_bytes, limit = end - target > chunk_bytes ? target + chunk_bytes : end;
    for (size_t q = target; q < limit; q++)
        if (s[q - 1] == '\n' && plain(s[q - 2]) && plain(s[q])) return q;
    for (size_t q = target; q < limit; q++)
        if (s[q - 1] == '\n') return q;
    size_t q = target;
    while (q < end && (s[q] & 0xC0) == 0x80) q++;
    return q;
}

static lb_status emit_part(prep *p, const char *text, size_t len, int val, int file, size_t base) {
    for (size_t pos = 0; pos < len;) {
        size_t e = chunk_end(text, pos, len, p->chunk_bytes);
        LB_TRY(push_chunk(p, text + pos, e - pos, val, file, base + pos));
        pos = e;
    }
    return LB_OK;
}

static lb_status emit_file(prep *p, int i, lb_prepare_result *r) {
    const lb_corpus_file *f = &p->files->files[i];
    if (p->n_maps == p->cap_maps) {
        int cap = p->cap_maps ? 2 * p->cap_maps : 16;
        lb_mapped_file *m = realloc(p->maps, (size_t)cap * sizeof *m);
        if (!m) return lb_error(LB_ENOMEM, "prepare: out of memory");
        p->maps = m;
        p->cap_maps = cap;
    }
    lb_mapped_file *m = &p->maps[p->n_maps];
    LB_TRY(lb_map_file(f->path, m));
    const char *text = (const char *)m->data;
    const char *nul = memchr(text, '\0', m->size);
    if (nul) {
        size_t at = (size_t)(nul - text), skipped_bytes = m->size;
        lb_unmap_file(m);
        if (f->explicit_path)
            return lb_error(LB_EFORMAT, "corpus file '%s': NUL byte at offset %zu, expected a text file", f->path, at);
        r->n_skipped++;
        p->bytes_done += (uint64_t)skipped_bytes; /* read, and left out */
        return LB_OK;
    }
    p->n_maps++;
    r->n_docs++;
    size_t cut = lb_corpus_split_point(text, m->size, p->o->val_fraction);
    LB_TRY(emit_part(p, text, cut, 0, i, 0));
    return emit_part(p, text + cut, m->size - cut, 1, i, cut);
}

/* ---- the whole run ------------------------------------------------------- */

/* Creates `dir`, or accepts it when it exists and is empty: nothing the user
 * had is overwritten. */
static lb_status make_out_dir(const char *dir) {
    if (mkdir(dir, 0777) == 0) return LB_OK;
    if (errno != EEXIST) return lb_error(LB_EIO, "output directory '%s': cannot create: %s", dir, strerror(errno));
    DIR *d = opendir(dir);
    if (!d) return lb_error(LB_EIO, "output directory '%s': cannot open: %s", dir, strerror(errno));
    int empty = 1;
    for (struct dirent *e; empty && (e = readdir(d)) != NULL;)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) empty = 0;
    closedir(d);
    return empty ? LB_OK : lb_error(LB_EINVAL, "output directory '%s' exists and is not empty", dir);
}

static lb_tokenizer *make_tokenizer(const lb_prepare_options *o) {
    if (o->tok.kind == LB_TOKENIZER_BYTE) return lb_tokenizer_byte();
    if (o->tok.kind == LB_TOKENIZER_HF) return lb_tokenizer_load_json(o->tok.path);
    /* char and bpe are built from the whole corpus */
    lb_corpus c;
    lb_tokenizer *t = NULL;
    if (lb_corpus_load(&c, o->inputs, o->n_inputs) == LB_OK) t = lb_tokenizer_for_corpus(&o->tok, &c);
    lb_corpus_free(&c);
    return t;
}

static lb_status check_options(const lb_prepare_options *o) {
    if (!o->out_dir || !*o->out_dir) return lb_error(LB_EINVAL, "prepare: no output directory");
    if (!(o->val_fraction >= 0.0 && o->val_fraction < 1.0))
        return lb_error(LB_EINVAL, "prepare: val_fraction %g, expected a value in [0, 1)", o->val_fraction);
    if (o->threads < 1) return lb_error(LB_EINVAL, "prepare: %d threads, expected ≥ 1", o->threads);
    if (o->shard_tokens > LB_SHARD_MAX_TOKENS)
        return lb_error(LB_EINVAL, "prepare: %llu tokens per shard, expected at most %u (llm.c's int32 count)",
                        (unsigned long long)o->shard_tokens, LB_SHARD_MAX_TOKENS);
    return LB_OK;
}

static lb_status run(prep *p, lb_prepare_result *r) {
    const lb_prepare_options *o = p->o;
    for (int i = 0; i < p->files->n; i++) {
        struct stat st;
        if (stat(p->files->files[i].path, &st) == 0) p->bytes_total += (uint64_t)st.st_size;
    }
    if (!(p->tok = make_tokenizer(o))) return lb_errcode();
    p->width = lb_shard_width_for(p->tok->vocab_size);
    if (o->layout == LB_SHARDS_NANOGPT && p->width != LB_TOKENS_U16)
        return lb_error(LB_EINVAL, "prepare: nanoGPT files hold uint16 ids, but the vocabulary is %d (expected ≤ "
                        "65536; use the llmc format)", p->tok->vocab_size);
    LB_TRY(make_out_dir(o->out_dir));
    for (int i = 0; i < p->files->n; i++) LB_TRY(emit_file(p, i, r));
    LB_TRY(flush(p, 0));
    if (p->train.total == 0)
        return lb_error(LB_EINVAL, "prepare: val_fraction %g leaves no training text", o->val_fraction);
    if (o->val_fraction > 0 && p->val.total == 0)
        return lb_error(LB_EINVAL, "prepare: val_fraction %g leaves no validation text (documents too short)",
                        o->val_fraction);
    if (p->train.w) LB_TRY(finish_shard(p, &p->train));
    if (p->val.w) LB_TRY(finish_shard(p, &p->val));
    lb_shard_manifest m = {
        .layout = o->layout, .width = p->width, .tok = p->tok, .val_fraction = o->val_fraction,
        .n_train = p->train.n, .n_val = p->val.n, .train_files = p->train.files, .val_files = p->val.files,
        .train_tokens = p->train.tokens, .val_tokens = p->val.tokens};
    LB_TRY(lb_shard_save_tokenizer(o->out_dir, p->tok, &m.tokenizer_file));
    LB_TRY(lb_shard_manifest_write(o->out_dir, &m));
    r->bytes = p->bytes_done;
    r->n_train = p->train.total;
    r->n_val = p->val.total;
    r->n_train_shards = p->train.n;
    r->n_val_shards = p->val.n;
    r->vocab_size = p->tok->vocab_size;
    r->width = p->width;
    return LB_OK;
}

lb_status lb_data_prepare(const lb_prepare_options *o, lb_prepare_result *r) {
    memset(r, 0, sizeof *r);
    LB_TRY(check_options(o));
    lb_corpus_files files;
    lb_status s = lb_corpus_list(&files, o->inputs, o->n_inputs);
    if (s != LB_OK) {
        lb_corpus_files_free(&files);
        return s;
    }
    r->n_skipped = files.n_skipped;
    prep p = {.o = o, .files = &files, .train = {.name = "train"}, .val = {.name = "val"}};
    p.shard_tokens = o->shard_tokens ? o->shard_tokens : DEFAULT_SHARD_TOKENS;
    p.chunk_bytes = o->chunk_bytes ? o->chunk_bytes : DEFAULT_CHUNK_BYTES;
    p.cap_win = CHUNKS_PER_THREAD * o->threads;
    if (!(p.win = calloc((size_t)p.cap_win, sizeof *p.win))) s = lb_error(LB_ENOMEM, "prepare: out of memory");
    if (s == LB_OK) s = run(&p, r);
    for (int i = 0; i < p.n_win; i++) lb_ids_free(&p.win[i].ids);
    for (int i = 0; i < p.n_maps; i++) lb_unmap_file(&p.maps[i]);
    free(p.maps);
    free(p.win);
    free_stream(&p.train);
    free_stream(&p.val);
    if (p.tok) lb_tokenizer_free(p.tok);
    lb_corpus_files_free(&files);
    return s;
}
