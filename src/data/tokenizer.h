/* Tokenizers: text ↔ token ids.
 *
 *   byte  vocabulary 256, token = byte value; needs no files and no training.
 *   char  vocabulary = the distinct Unicode code points of a corpus, sorted by
 *         code point (id = rank), so the same text always gives the same ids.
 *
 * The char tokenizer reads text as UTF-8. A byte that does not start a valid
 * UTF-8 sequence (a Latin-1 file, a truncated character) becomes the "escape"
 * code point U+DC00 + byte, as Python's surrogateescape does: valid UTF-8 never
 * encodes U+D800..U+DFFF, so these cannot collide with real characters, and
 * decoding them writes the original byte back. Any byte string therefore
 * round-trips exactly through both tokenizers.
 *
 * A token never covers less than one byte, so encoding `len` bytes yields at
 * most `len` ids: callers size the id buffer by the text length. */
#ifndef LOWBIT_DATA_TOKENIZER_H
#define LOWBIT_DATA_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

typedef enum lb_tokenizer_kind { LB_TOKENIZER_BYTE = 0, LB_TOKENIZER_CHAR = 1 } lb_tokenizer_kind;

typedef struct lb_tokenizer {
    lb_tokenizer_kind kind;
    int vocab_size;
    uint32_t *codepoints;  /* char: the vocabulary, strictly increasing; id = index. byte: NULL */
    /* What encode does with a character outside a char vocabulary: -1 (the
     * default) fails with LB_EINVAL naming the character and its offset; an id
     * in [0, vocab_size) is used in its place (e.g. the id of '?' for prompts). */
    int unk_id;
} lb_tokenizer;

/* "byte" / "char" ↔ kind. lb_tokenizer_kind_from_name fails with LB_ECONFIG
 * for any other name. */
const char *lb_tokenizer_kind_name(lb_tokenizer_kind kind);
lb_status lb_tokenizer_kind_from_name(const char *name, lb_tokenizer_kind *kind);

/* The byte tokenizer (never fails except out of memory). */
lb_tokenizer *lb_tokenizer_byte(void);
/* A char tokenizer whose vocabulary is every code point in text[0..len).
 * NULL with LB_EINVAL on empty text. */
lb_tokenizer *lb_tokenizer_build_char(const char *text, size_t len);
void lb_tokenizer_free(lb_tokenizer *t);

/* Encodes text[0..len) into ids (room for `len` ids); *n_ids receives the
 * count. Fails only on a character outside a char vocabulary when unk_id is -1;
 * the message gives the character (U+XXXX) and its byte offset. */
lb_status lb_tokenizer_encode(const lb_tokenizer *t, const char *text, size_t len, int *ids, size_t *n_ids);

/* The bytes of one token (1 to 4) written to out; 0 when id is out of range.
 * For printing generated text token by token. */
int lb_tokenizer_token_bytes(const lb_tokenizer *t, int id, char out[4]);

/* Decodes ids into a malloc'd, NUL-terminated string (free with free());
 * *out_len (may be NULL) receives its length, which counts embedded NUL bytes.
 * NULL with LB_EINVAL naming the position of an id outside [0, vocab_size). */
char *lb_tokenizer_decode(const lb_tokenizer *t, const int *ids, size_t n, size_t *out_len);

/* Serialised form, for checkpoints: a flat little-endian byte array
 *   "LBTK" | u32 version (1) | u32 kind | u32 vocab_size | char only: vocab_size × u32 code point
 * lb_tokenizer_to_bytes returns a malloc'd buffer and its size.
 * lb_tokenizer_from_bytes checks everything (magic, version, kind, size,
 * code points valid and strictly increasing) and fails with LB_EFORMAT saying
 * what was expected. */
uint8_t *lb_tokenizer_to_bytes(const lb_tokenizer *t, size_t *size);
lb_tokenizer *lb_tokenizer_from_bytes(const uint8_t *bytes, size_t size);

#endif
