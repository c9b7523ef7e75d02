/* Tokenizers: text ↔ token ids.
 *
 *   byte  vocabulary 256, token = byte value; needs no files and no training.
 *   char  vocabulary = the distinct Unicode code points of a corpus, sorted by
 *         code point (id = rank), so the same text always gives the same ids.
 *   bpe   a byte-level BPE trained on the corpus (GPT-2 pre-tokenization, the
 *         Hugging Face BpeTrainer algorithm), kept as a tokenizer.json.
 *   hf    a tokenizer.json of the Hugging Face tokenizers library (BPE models:
 *         GPT-2, Llama 2 and 3, Mistral, Gemma, Qwen, ...), encoding and
 *         decoding exactly as the library does.
 * bpe and hf tokenizers run the same tokenizer.json pipeline (docs/data.md
 * lists what it implements); they differ only in where the file came from.
 *
 * The char tokenizer reads text as UTF-8. A byte that does not start a valid
 * UTF-8 sequence (a Latin-1 file, a truncated character) becomes the "escape"
 * code point U+DC00 + byte, as Python's surrogateescape does: valid UTF-8 never
 * encodes U+D800..U+DFFF, so these cannot collide with real characters, and
 * decoding them writes the original byte back. Any byte string therefore
 * round-trips exactly through the byte and char tokenizers. The bpe and hf
 * tokenizers first replace invalid UTF-8 by U+FFFD (maximal subparts, as
 * Rust's String::from_utf8_lossy), which is what the library encodes.
 *
 * Every function taking a const lb_tokenizer may be called from many threads
 * at once on the same tokenizer. */
#ifndef LOWBIT_DATA_TOKENIZER_H
#define LOWBIT_DATA_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

typedef enum lb_tokenizer_kind {
    LB_TOKENIZER_BYTE = 0,
    LB_TOKENIZER_CHAR = 1,
    LB_TOKENIZER_BPE = 2,
    LB_TOKENIZER_HF = 3
} lb_tokenizer_kind;
#define LB_TOKENIZER_COUNT 4

/* The kinds' names, as data.tokenizer spells them: "byte", "char", "bpe", "hf". */
extern const char *const lb_tokenizer_kind_names[LB_TOKENIZER_COUNT];

struct lb_hf;
struct lb_corpus;

typedef struct lb_tokenizer {
    lb_tokenizer_kind kind;
    int vocab_size;        /* 1 + the largest id */
    uint32_t *codepoints;  /* char: the vocabulary, strictly increasing; id = index. Otherwise NULL */
    /* What encode does with a character outside a char vocabulary: -1 (the
     * default) fails with LB_EINVAL naming the character and its offset; an id
     * in [0, vocab_size) is used in its place (e.g. the id of '?' for prompts).
     * The other kinds ignore it. */
    int unk_id;
    struct lb_hf *hf;      /* bpe, hf: the pipeline */
    char *json;            /* bpe, hf: the tokenizer.json text it was built from */
    size_t json_len;
} lb_tokenizer;

/* A growable array of ids (lb_tokenizer_encode_append appends to it; free with lb_ids_free). */
typedef struct lb_ids {
    int *v;
    size_t n, cap;
} lb_ids;
void lb_ids_free(lb_ids *ids);

/* "byte" / "char" / "bpe" / "hf" ↔ kind. lb_tokenizer_kind_from_name fails
 * with LB_ECONFIG for any other name. */
const char *lb_tokenizer_kind_name(lb_tokenizer_kind kind);
lb_status lb_tokenizer_kind_from_name(const char *name, lb_tokenizer_kind *kind);

/* The byte tokenizer (never fails except out of memory). */
lb_tokenizer *lb_tokenizer_byte(void);
/* A char tokenizer whose vocabulary is every code point in text[0..len).
 * NULL with LB_EINVAL on empty text. */
lb_tokenizer *lb_tokenizer_build_char(const char *text, size_t len);
/* A tokenizer.json file (kind hf). Anything in it lowbit does not implement is
 * LB_EFORMAT naming the file, the JSON path and the value. */
lb_tokenizer *lb_tokenizer_load_json(const char *path);
/* The same from text in memory; `name` starts error messages. */
lb_tokenizer *lb_tokenizer_from_json(const char *json, size_t len, const char *name, lb_tokenizer_kind kind);
/* A byte-level BPE trained on the documents of corpus `c` until the vocabulary
 * holds vocab_size tokens (at least 257: the special token <|endoftext|>, id 0,
 * and the 256 byte characters) or no pair occurs any more. Kind bpe. */
lb_tokenizer *lb_tokenizer_train_bpe(const struct lb_corpus *c, int vocab_size);
/* Writes the tokenizer.json of a bpe or hf tokenizer to path (through a
 * temporary file, fsync and rename). */
lb_status lb_tokenizer_save_json(const lb_tokenizer *t, const char *path);
void lb_tokenizer_free(lb_tokenizer *t);

/* What data.tokenizer, data.vocab_size and data.tokenizer_path ask for. */
typedef struct lb_tokenizer_options {
    lb_tokenizer_kind kind;
    int vocab_size;        /* bpe: the vocabulary to train */
    const char *path;      /* hf: the tokenizer.json */
} lb_tokenizer_options;

/* The tokenizer `o` describes for corpus `c`: byte, char (built from c),
 * bpe (trained on c) or hf (loaded from o->path). */
lb_tokenizer *lb_tokenizer_for_corpus(const lb_tokenizer_options *o, const struct lb_corpus *c);

/* Flags of lb_tokenizer_encode_append. */
#define LB_ENCODE_ADD_SPECIAL 1u  /* add the post-processor's special tokens (the library's add_special_tokens) */

/* Appends the ids of text[0..len) to *out. Fails on a character outside a
 * char vocabulary when unk_id is -1 (the message gives the character, U+XXXX,
 * and its byte offset), and on a tokenizer.json whose unk_token is needed but
 * missing from its vocabulary. */
lb_status lb_tokenizer_encode_append(const lb_tokenizer *t, const char *text, size_t len, unsigned flags, lb_ids *out);

/* Encodes text[0..len) without special tokens into ids, which has room for
 * `len` ids; *n_ids receives the count. A byte or char token covers at least
 * one byte, so `len` ids always suffice for them; a bpe or hf encoding that
 * needs more (a text of invalid UTF-8, a tokenizer that prepends "▁") fails
 * with LB_EINVAL rather than writing past `len` ids. */
lb_status lb_tokenizer_encode(const lb_tokenizer *t, const char *text, size_t len, int *ids, size_t *n_ids);

/* Flags of lb_tokenizer_decode_opts. */
#define LB_DECODE_SKIP_SPECIAL 1u /* leave out special tokens (the library's skip_special_tokens) */

/* Decodes ids into a malloc'd, NUL-terminated string (free with free());
 * *out_len (may be NULL) receives its length, which counts embedded NUL bytes.
 * NULL with LB_EINVAL naming the position of an id outside [0, vocab_size).
 * lb_tokenizer_decode keeps special tokens. */
char *lb_tokenizer_decode(const lb_tokenizer *t, const int *ids, size_t n, size_t *out_len);
char *lb_tokenizer_decode_opts(const lb_tokenizer *t, const int *ids, size_t n, unsigned flags, size_t *out_len);

/* Decoding one id at a time, for printing text as it is generated: each step
 * gives the text the new id adds, or nothing while the ids so far end inside
 * a character (byte fallback, byte-level tokens). The pieces put together are
 * the decoding of all the ids. This is the library's DecodeStream.
 *     lb_decode_stream s;
 *     lb_decode_stream_init(&s, tok, 0);
 *     for (each new id) { LB_TRY(lb_decode_stream_step(&s, id, &text, &len)); fwrite(text, 1, len, stdout); }
 *     lb_decode_stream_free(&s); */
typedef struct lb_decode_stream {
    const lb_tokenizer *t;
    unsigned flags;
    lb_ids ids;            /* the ids still needed to decode what comes next */
    char *prefix;          /* the decoding of ids[0..prefix_index) */
    size_t prefix_len, prefix_index;
    char *text;            /* the last piece given */
} lb_decode_stream;
void lb_decode_stream_init(lb_decode_stream *s, const lb_tokenizer *t, unsigned flags);
/* *text (valid until the next call) and *len receive the new text; *len is 0 when there is none yet. */
lb_status lb_decode_stream_step(lb_decode_stream *s, int id, const char **text, size_t *len);
void lb_decode_stream_free(lb_decode_stream *s);

/* Serialised form, for checkpoints: a flat little-endian byte array
 *   "LBTK" | u32 version (1) | u32 kind | u32 vocab_size |
 *   char: vocab_size × u32 code point;  bpe, hf: the tokenizer.json text
 * lb_tokenizer_to_bytes returns a malloc'd buffer and its size.
 * lb_tokenizer_from_bytes checks everything (magic, version, kind, size,
 * code points valid and strictly increasing; the JSON loads and has
 * vocab_size ids) and fails with LB_EFORMAT saying what was expected. */
uint8_t *lb_tokenizer_to_bytes(const lb_tokenizer *t, size_t *size);
lb_tokenizer *lb_tokenizer_from_bytes(const uint8_t *bytes, size_t size);

#endif
