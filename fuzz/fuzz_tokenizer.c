/* The tokenizer readers (data/tokenizer.h): tokenizer.json text (kind hf, as
 * data.tokenizer_path and HF import load it) and the serialised form a
 * checkpoint stores (lb_tokenizer_from_bytes). A tokenizer that loads encodes
 * and decodes a fixed text, and decodes every id of its vocabulary. */
#include <stdlib.h>
#include <string.h>

#include "data/tokenizer.h"
#include "fuzz.h"

static const char sample[] = "Hello world, na\xc3\xafve caf\xc3\xa9 123 <|endoftext|>\n\t  \xe2\x96\x81x \xf0\x9f\x98\x80 'll";

static void exercise(lb_tokenizer *t) {
    if (!t) return;
    lb_ids ids = {0};
    if (lb_tokenizer_encode_append(t, sample, sizeof sample - 1, LB_ENCODE_ADD_SPECIAL, &ids) == LB_OK) {
        free(lb_tokenizer_decode(t, ids.v, ids.n, NULL));
        free(lb_tokenizer_decode_opts(t, ids.v, ids.n, LB_DECODE_SKIP_SPECIAL, NULL));
    }
    lb_ids_free(&ids);
    int n = t->vocab_size < 4096 ? t->vocab_size : 4096;
    lb_decode_stream s;
    lb_decode_stream_init(&s, t, 0);
    for (int id = 0; id < n; id++) {
        const char *text;
        size_t len;
        if (lb_decode_stream_step(&s, id, &text, &len) != LB_OK) break;
    }
    lb_decode_stream_free(&s);
    size_t nb = 0;
    uint8_t *bytes = lb_tokenizer_to_bytes(t, &nb);
    if (bytes) {
        lb_tokenizer *again = lb_tokenizer_from_bytes(bytes, nb);
        if (!again) abort(); /* what lowbit writes it must read back */
        lb_tokenizer_free(again);
    }
    free(bytes);
    lb_tokenizer_free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    exercise(lb_tokenizer_from_json((const char *)data, size, "fuzz-tokenizer.json", LB_TOKENIZER_HF));
    exercise(lb_tokenizer_from_bytes(data, size));
    return 0;
}
