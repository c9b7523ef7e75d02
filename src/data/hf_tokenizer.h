/* The tokenizer.json pipeline of the Hugging Face tokenizers library, as far
 * as lowbit implements it (internal to src/data; the public face is
 * data/tokenizer.h):
 *
 *   text ─ lossy UTF-8 ─► added tokens (not normalized) ─► normalizers ─► added tokens (normalized)
 *        ─► pre-tokenizers ─► BPE model ─► post-processor (special tokens)
 *   ids ─► tokens ─► decoders ─► text
 *
 * Each stage follows the library's source (tokenizer/added_vocabulary.rs,
 * normalizers/, pre_tokenizers/, models/bpe/, processors/, decoders/). The
 * stages work split by split, depth first: a split is handed to the next stage
 * as soon as it is made, so memory does not grow with the number of
 * pre-tokens. Sequences of normalizers, pre-tokenizers and decoders are
 * flattened into one list each (applying a Sequence is applying its members in
 * order). */
#ifndef LOWBIT_DATA_HF_TOKENIZER_H
#define LOWBIT_DATA_HF_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "data/bpe.h"
#include "data/hashmap.h"
#include "data/pattern.h"

typedef enum hf_norm_kind { HF_NORM_PREPEND, HF_NORM_REPLACE, HF_NORM_NFC, HF_NORM_NFD, HF_NORM_NFKC, HF_NORM_NFKD,
                            HF_NORM_STRIP } hf_norm_kind;

typedef struct hf_normalizer {
    hf_norm_kind kind;
    char *text;            /* Prepend: the prefix; Replace: the content */
    size_t text_len;
    lb_pattern *pattern;   /* Replace */
    int left, right;       /* Strip */
} hf_normalizer;

/* SplitDelimiterBehavior */
typedef enum hf_behavior { HF_REMOVED, HF_ISOLATED, HF_MERGED_WITH_PREVIOUS, HF_MERGED_WITH_NEXT, HF_CONTIGUOUS } hf_behavior;

typedef enum hf_pre_kind { HF_PRE_SPLIT, HF_PRE_BYTE_LEVEL, HF_PRE_METASPACE, HF_PRE_DIGITS } hf_pre_kind;
typedef enum hf_prepend { HF_PREPEND_ALWAYS, HF_PREPEND_FIRST, HF_PREPEND_NEVER } hf_prepend;

typedef struct hf_pretok {
    hf_pre_kind kind;
    lb_pattern *pattern;   /* Split; ByteLevel with use_regex: the GPT-2 regex */
    hf_behavior behavior;
    int invert;
    int add_prefix_space;  /* ByteLevel */
    uint32_t replacement;  /* Metaspace */
    hf_prepend prepend;
    int split;             /* Metaspace */
    int individual_digits; /* Digits */
} hf_pretok;

typedef enum hf_dec_kind { HF_DEC_BYTE_LEVEL, HF_DEC_REPLACE, HF_DEC_BYTE_FALLBACK, HF_DEC_FUSE, HF_DEC_STRIP,
                           HF_DEC_METASPACE } hf_dec_kind;

typedef struct hf_decoder {
    hf_dec_kind kind;
    lb_pattern *pattern;   /* Replace */
    char *content;         /* Replace */
    size_t content_len;
    uint32_t ch;           /* Strip: the character; Metaspace: the replacement */
    size_t start, stop;    /* Strip */
    int prepend_never;     /* Metaspace */
} hf_decoder;

typedef struct hf_added_token {
    char *content;
    size_t len;
    int id;
    int single_word, lstrip, rstrip, normalized, special;
} hf_added_token;

/* Leftmost-longest matching of many literals (the library uses Aho-Corasick
 * with MatchKind::LeftmostLongest): a byte trie. */
typedef struct hf_trie {
    lb_u64map edges;       /* (node << 8 | byte) → child node */
    int *token;            /* node → index into lb_hf.added, or -1 */
    int n_nodes, cap;
    uint8_t first[32];     /* bitmap of the bytes a token can start with */
    int n_tokens;
} hf_trie;

typedef struct lb_hf {
    lb_bpe model;
    hf_normalizer *norm;
    int n_norm;
    hf_pretok *pre;
    int n_pre;
    hf_decoder *dec;
    int n_dec;
    int has_decoder;       /* no decoder: tokens joined by spaces */
    hf_added_token *added; /* in the library's order: its special list, then the others */
    int n_added;
    hf_trie raw, normalized; /* added tokens matched before / after normalization */
    lb_strmap special;     /* contents of the special tokens (for skip_special_tokens) */
    int *added_of_id;      /* id → index into added, or -1 (ids below vocab_size) */
    int *prefix, n_prefix; /* TemplateProcessing "single": ids before and after the sequence */
    int *suffix, n_suffix;
    int vocab_size;        /* 1 + the largest id of the model and the added tokens */
    lb_pattern *word_char; /* the library's \w, for single_word tokens */
} lb_hf;

/* Loads tokenizer.json text; `name` (a file name) starts every error message. */
lb_hf *lb_hf_from_json(const char *json, size_t len, const char *name);
void lb_hf_free(lb_hf *t);

/* Appends the ids of text[0..len) to out (add_special: the post-processor's
 * special tokens). Invalid UTF-8 is first replaced as lb_utf8_lossy does. */
lb_status lb_hf_encode(const lb_hf *t, const char *text, size_t len, int add_special, lb_ids *out);

/* The text of ids as the library's decode(ids, skip_special_tokens) gives it,
 * malloc'd and NUL-terminated; ids outside [0, vocab_size) are an error,
 * ids in it that name no token are left out (as the library does). */
char *lb_hf_decode(const lb_hf *t, const int *ids, size_t n, int skip_special, size_t *out_len);

/* The token string of id (NULL when none). */
const char *lb_hf_token(const lb_hf *t, int id, size_t *len);

/* The pieces one pre-tokenizer stage list makes of text (no added tokens, no
 * model): for tests against the library's pre_tokenize_str. Calls emit for
 * each final split. */
lb_status lb_hf_pre_tokenize(const lb_hf *t, const char *text, size_t len,
                             void (*emit)(void *arg, const char *s, size_t n), void *arg);

/* The normalized text of text[0..len) (malloc'd), for tests. */
char *lb_hf_normalize(const lb_hf *t, const char *text, size_t len, size_t *out_len);

#endif

/* ---- for the loader (tokenizer_json.c) ---------------------------------------- */

/* Adds token `index` of t->added with the bytes s[0..n) (not empty) to a trie. */
lb_status lb_hf_trie_add(hf_trie *trie, const char *s, size_t n, int index);
void lb_hf_trie_free(hf_trie *trie);
/* The normalizers of t applied to s[0..n) (valid UTF-8) into a malloc'd string. */
char *lb_hf_normalize_text(const lb_hf *t, const char *s, size_t n, size_t *out_len);
/* GPT-2's byte ↔ character table (pre_tokenizers/byte_level.rs bytes_char). */
uint32_t lb_byte_level_char(unsigned char b);
