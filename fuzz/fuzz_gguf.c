/* The GGUF reader (io/gguf.h) on a buffer: every key read back, every tensor
 * lowbit has a codec for converted; then the same bytes as a file through
 * lb_gguf_model_load (interop/gguf_model.h), the path `lowbit eval/generate
 * model.gguf` takes, when the model it describes is small. */
#include <stdlib.h>

#include "fuzz.h"
#include "interop/gguf_model.h"
#include "io/config.h"
#include "io/gguf.h"
#include "data/tokenizer.h"
#include "layers/model.h"

static void read_value(const lb_gguf_value *v, int depth) {
    for (uint64_t i = 0; i < v->n && i < 64; i++) {
        if (v->elem == LB_GGUF_ARRAY && v->items) read_value(&v->items[i], depth + 1);
        else if (v->elem == LB_GGUF_STRING) (void)lb_gguf_value_str(v, i);
        else (void)lb_gguf_value_f64(v, i);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lb_gguf *g;
    if (lb_gguf_parse(data, size, "fuzz.gguf", &g) != LB_OK) return 0;
    for (size_t i = 0; i < lb_gguf_kv_count(g); i++) {
        const lb_gguf_kv *kv = lb_gguf_kv_at(g, i);
        if (lb_gguf_find(g, kv->key) == NULL) abort();
        read_value(&kv->value, 0);
    }
    int64_t n_tensor_data = 0;
    for (size_t i = 0; i < lb_gguf_tensor_count(g); i++) {
        const lb_gguf_tensor *t = lb_gguf_tensor_at(g, i);
        if (t->dtype < 0 || t->nelements > (1u << 22)) continue;
        float *f = malloc((t->nelements ? t->nelements : 1) * sizeof *f);
        if (f) (void)lb_gguf_tensor_to_f32(g, t, f, t->nelements);
        free(f);
        n_tensor_data += (int64_t)t->nelements;
    }
    lb_gguf_close(g);

    /* Only files whose tensors are small: the model is as big as they say. */
    if (n_tensor_data > (int64_t)FUZZ_MAX_MODEL_PARAMS) return 0;
    const char *path = fuzz_tmp_file(data, size, ".gguf");
    if (!path) return 0;
    lb_config cfg;
    lb_tokenizer *tok;
    lb_model *model;
    if (lb_gguf_model_load(path, &cfg, NULL, &tok, &model) == LB_OK) {
        lb_model_free(model);
        lb_tokenizer_free(tok);
    }
    return 0;
}
