#include "data/corpus.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* --- loading ------------------------------------------------------------------ */

/* Growth state of a corpus while it is being loaded. */
typedef struct loader {
    lb_corpus *c;
    size_t text_cap;
    int doc_cap;
} loader;

static lb_status reserve_text(loader *L, size_t extra, const char *path) {
    lb_corpus *c = L->c;
    if (L->text_cap - c->len >= extra) return LB_OK;
    size_t cap = L->text_cap ? L->text_cap : 1 << 16;
    while (cap - c->len < extra) cap *= 2;
    char *t = realloc(c->text, cap);
    if (!t) return lb_error(LB_ENOMEM, "corpus file '%s': out of memory growing the corpus to %zu bytes", path, cap);
    c->text = t;
    L->text_cap = cap;
    return LB_OK;
}

/* Appends the file at `path` as a new document. A file containing a NUL byte
 * is an error when named explicitly, and is silently left out (counted in
 * n_skipped) when it was found in a directory. */
static lb_status add_file(loader *L, const char *path, int explicit_path) {
    lb_corpus *c = L->c;
    FILE *f = fopen(path, "rb");
    if (!f) return lb_error(LB_EIO, "corpus file '%s': cannot open: %s", path, strerror(errno));
    size_t start = c->len;
    struct stat st;
    lb_status s = LB_OK;
    /* Reserve the size the file has now; the loop below copes if it grows. */
    if (fstat(fileno(f), &st) == 0 && st.st_size > 0) s = reserve_text(L, (size_t)st.st_size + 1, path);
    while (s == LB_OK) {
        s = reserve_text(L, 1 << 16, path);
        if (s != LB_OK) break;
        size_t got = fread(c->text + c->len, 1, L->text_cap - c->len - 1, f);
        c->len += got;
        if (got == 0) {
            if (ferror(f)) s = lb_error(LB_EIO, "corpus file '%s': cannot read: %s", path, strerror(errno));
            break;
        }
    }
    fclose(f);
    if (s != LB_OK) {
        c->len = start;
        return s;
    }
    const char *nul = memchr(c->text + start, '\0', c->len - start);
    if (nul) {
        size_t at = (size_t)(nul - (c->text + start));
        c->len = start;
        if (explicit_path)
            return lb_error(LB_EFORMAT, "corpus file '%s': NUL byte at offset %zu, expected a text file", path, at);
        c->n_skipped++;
        return LB_OK;
    }
    if (c->n_docs == L->doc_cap) {
        int cap = L->doc_cap ? 2 * L->doc_cap : 16;
        lb_corpus_doc *d = realloc(c->docs, (size_t)cap * sizeof *d);
        if (!d) return lb_error(LB_ENOMEM, "corpus file '%s': out of memory", path);
        c->docs = d;
        L->doc_cap = cap;
    }
    char *p = strdup(path);
    if (!p) return lb_error(LB_ENOMEM, "corpus file '%s': out of memory", path);
    c->docs[c->n_docs++] = (lb_corpus_doc){.path = p, .offset = start, .len = c->len - start};
    return LB_OK;
}

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static void free_names(char **names, size_t n) {
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
}

static lb_status push_file(lb_corpus_files *l, const char *path, int explicit_path) {
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 64;
        lb_corpus_file *v = realloc(l->files, (size_t)cap * sizeof *v);
        if (!v) return lb_error(LB_ENOMEM, "corpus file '%s': out of memory", path);
        l->files = v;
        l->cap = cap;
    }
    char *p = strdup(path);
    if (!p) return lb_error(LB_ENOMEM, "corpus file '%s': out of memory", path);
    l->files[l->n++] = (lb_corpus_file){.path = p, .explicit_path = explicit_path};
    return LB_OK;
}

/* Lists the regular text files of directory `dir` in name order (see corpus.h
 * for what is left out). */
static lb_status list_dir(lb_corpus_files *l, const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return lb_error(LB_EIO, "corpus directory '%s': cannot open: %s", dir, strerror(errno));
    char **names = NULL;
    size_t n = 0, cap = 0;
    lb_status s = LB_OK;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.') continue; /* ".", ".." and hidden files */
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            char **grown = realloc(names, cap * sizeof *grown);
            if (!grown) {
                s = lb_error(LB_ENOMEM, "corpus directory '%s': out of memory", dir);
                break;
            }
            names = grown;
        }
        if (!(names[n] = strdup(e->d_name))) {
            s = lb_error(LB_ENOMEM, "corpus directory '%s': out of memory", dir);
            break;
        }
        n++;
    }
    closedir(d);
    if (s != LB_OK) {
        free_names(names, n);
        return s;
    }
    if (n > 1) qsort(names, n, sizeof *names, cmp_names); /* readdir order is arbitrary */

    size_t dlen = strlen(dir);
    const char *sep = dlen > 0 && dir[dlen - 1] == '/' ? "" : "/";
    for (size_t i = 0; i < n && s == LB_OK; i++) {
        size_t plen = dlen + strlen(names[i]) + 2;
        char *path = malloc(plen);
        if (!path) {
            s = lb_error(LB_ENOMEM, "corpus directory '%s': out of memory", dir);
            break;
        }
        snprintf(path, plen, "%s%s%s", dir, sep, names[i]);
        struct stat st;
        if (lstat(path, &st) != 0) {
            s = lb_error(LB_EIO, "corpus file '%s': cannot stat: %s", path, strerror(errno));
        } else if (!S_ISREG(st.st_mode) || ends_with(names[i], ".dat")) {
            /* symlinks (fortunes' *.u8 duplicate their targets), subdirectories,
             * devices, and fortune's binary *.dat indexes */
            l->n_skipped++;
        } else {
            s = push_file(l, path, 0);
        }
        free(path);
    }
    free_names(names, n);
    return s;
}

lb_status lb_corpus_list(lb_corpus_files *l, const char *const *paths, int n_paths) {
    memset(l, 0, sizeof *l);
    if (!paths || n_paths < 1) return lb_error(LB_EINVAL, "corpus: no paths given");
    for (int i = 0; i < n_paths; i++) {
        const char *path = paths[i];
        struct stat st;
        if (!path || !*path) return lb_error(LB_EINVAL, "corpus: path %d is empty", i);
        if (stat(path, &st) != 0) return lb_error(LB_EIO, "corpus path '%s': %s", path, strerror(errno));
        if (S_ISDIR(st.st_mode)) LB_TRY(list_dir(l, path));
        else if (S_ISREG(st.st_mode)) LB_TRY(push_file(l, path, 1));
        else return lb_error(LB_EINVAL, "corpus path '%s': expected a regular file or a directory", path);
    }
    return LB_OK;
}

void lb_corpus_files_free(lb_corpus_files *l) {
    if (!l) return;
    for (int i = 0; i < l->n; i++) free(l->files[i].path);
    free(l->files);
    memset(l, 0, sizeof *l);
}

lb_status lb_corpus_load(lb_corpus *c, const char *const *paths, int n_paths) {
    memset(c, 0, sizeof *c);
    lb_corpus_files files;
    lb_status s = lb_corpus_list(&files, paths, n_paths);
    loader L = {.c = c};
    for (int i = 0; i < files.n && s == LB_OK; i++) s = add_file(&L, files.files[i].path, files.files[i].explicit_path);
    c->n_skipped += files.n_skipped;
    lb_corpus_files_free(&files);
    if (s != LB_OK) return s;
    if (c->len == 0) {
        return lb_error(LB_EINVAL, "corpus '%s'%s: no text found (%d documents, %d files skipped)", paths[0],
                        n_paths > 1 ? " and others" : "", c->n_docs, c->n_skipped);
    }
    /* Give back the growth slack and terminate (the reserve kept a spare byte). */
    char *t = realloc(c->text, c->len + 1);
    if (t) c->text = t;
    c->text[c->len] = '\0';
    return LB_OK;
}

lb_status lb_corpus_load_path(lb_corpus *c, const char *path) { return lb_corpus_load(c, &path, 1); }

void lb_corpus_free(lb_corpus *c) {
    if (!c) return;
    for (int i = 0; i < c->n_docs; i++) free(c->docs[i].path);
    free(c->docs);
    free(c->text);
    memset(c, 0, sizeof *c);
}

/* --- train / validation split ---------------------------------------------------- */

size_t lb_corpus_split_point(const char *s, size_t n, double val_fraction) {
    size_t cut = (size_t)floor((1.0 - val_fraction) * (double)n);
    if (cut >= n) return n;
    /* Prefer a whole-line boundary, so validation starts at a fresh line. */
    for (size_t p = cut; p < n; p++)
        if (p == 0 || s[p - 1] == '\n') return p;
    /* Otherwise never cut through a UTF-8 character: skip continuation bytes.
     * Either way no character straddles the cut, so tokenizing the two parts
     * separately gives the same ids as tokenizing the whole document. */
    size_t p = cut;
    while (p < n && ((unsigned char)s[p] & 0xC0) == 0x80) p++;
    return p;
}

lb_status lb_dataset_build(lb_dataset *ds, const lb_corpus *c, const lb_tokenizer *tok, double val_fraction) {
    memset(ds, 0, sizeof *ds);
    if (!(val_fraction >= 0.0 && val_fraction < 1.0))
        return lb_error(LB_EINVAL, "dataset: val_fraction %g, expected a value in [0, 1)", val_fraction);
    if (!c || c->len == 0 || !tok) return lb_error(LB_EINVAL, "dataset: empty corpus or no tokenizer");

    size_t train_bytes = 0, val_bytes = 0;
    for (int d = 0; d < c->n_docs; d++) {
        const lb_corpus_doc *doc = &c->docs[d];
        size_t cut = lb_corpus_split_point(c->text + doc->offset, doc->len, val_fraction);
        train_bytes += cut;
        val_bytes += doc->len - cut;
    }
    if (train_bytes == 0)
        return lb_error(LB_EINVAL, "dataset: val_fraction %g leaves no training text", val_fraction);
    if (val_fraction > 0 && val_bytes == 0)
        return lb_error(LB_EINVAL, "dataset: val_fraction %g leaves no validation text (documents too short "
                        "or single characters)", val_fraction);
    ds->vocab_size = tok->vocab_size;

    /* The ids grow as documents are encoded (a BPE token covers several bytes,
     * a byte-fallback character several tokens), then keep only what they use. */
    lb_ids train = {0}, val = {0};
    lb_status st = LB_OK;
    for (int d = 0; d < c->n_docs && st == LB_OK; d++) {
        const lb_corpus_doc *doc = &c->docs[d];
        const char *s = c->text + doc->offset;
        size_t cut = lb_corpus_split_point(s, doc->len, val_fraction);
        st = lb_tokenizer_encode_append(tok, s, cut, 0, &train);
        if (st != LB_OK) {
            lb_error_prefix("corpus file '%s'", doc->path);
            break;
        }
        st = lb_tokenizer_encode_append(tok, s + cut, doc->len - cut, 0, &val);
        if (st != LB_OK) lb_error_prefix("corpus file '%s' (validation part, from byte %zu)", doc->path, cut);
    }
    if (st != LB_OK) {
        lb_ids_free(&train);
        lb_ids_free(&val);
        return st;
    }
    int *v = realloc(train.v, (train.n ? train.n : 1) * sizeof *v);
    ds->train = v ? v : train.v;
    ds->n_train = train.n;
    v = realloc(val.v, (val.n ? val.n : 1) * sizeof *v);
    ds->val = v ? v : val.v;
    ds->n_val = val.n;
    if (!ds->val) {
        lb_dataset_free(ds);
        return lb_error(LB_ENOMEM, "dataset: out of memory");
    }
    return LB_OK;
}

void lb_dataset_free(lb_dataset *ds) {
    if (!ds) return;
    free(ds->train);
    free(ds->val);
    memset(ds, 0, sizeof *ds);
}
