/* UTF-8 helpers shared by the tokenizers.
 *
 * "Valid" means shortest form, no surrogates, nothing above U+10FFFF. The
 * lossy conversion follows Unicode's "substitution of maximal subparts" (also
 * Rust's String::from_utf8_lossy and the WHATWG decoder of browsers and Node):
 * each maximal prefix of a valid sequence that cannot be completed, and each
 * byte that cannot start one, becomes one U+FFFD. */
#ifndef LOWBIT_DATA_UTF8_H
#define LOWBIT_DATA_UTF8_H

#include <stddef.h>
#include <stdint.h>

#define LB_UTF8_REPLACEMENT "\xEF\xBF\xBD" /* U+FFFD */

/* Decodes the character at s[0..n) (n ≥ 1) into *cp and returns its length
 * (1 to 4), or 0 when s does not start a valid sequence; *bad (may be NULL)
 * then receives the number of bytes one U+FFFD stands for (1 to 3). */
size_t lb_utf8_decode(const unsigned char *s, size_t n, uint32_t *cp, size_t *bad);

/* Writes the 1 to 4 bytes of scalar value cp to out and returns their count. */
int lb_utf8_encode(uint32_t cp, char *out);

/* Length of the longest valid prefix of s[0..n). */
size_t lb_utf8_valid_prefix(const char *s, size_t n);

/* The length of a character from its first byte (1 for anything else): for
 * walking text already known to be valid. */
static inline size_t lb_utf8_char_len(unsigned char lead) {
    return lead < 0xC0 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4;
}

/* Writes s[0..n) with every invalid part replaced by U+FFFD to out, which has
 * room for 3·n bytes, and returns the length written. */
size_t lb_utf8_lossy(const char *s, size_t n, char *out);

/* Unicode's White_Space property (Rust's char::is_whitespace, the \s of the
 * regex libraries the Hugging Face tokenizers use). */
int lb_unicode_is_space(uint32_t cp);

#endif
