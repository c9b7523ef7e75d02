/* The safetensors reader (io/safetensors.h): parse a buffer, then convert
 * every tensor of a dtype lowbit reads. */
#include <stdlib.h>

#include "fuzz.h"
#include "io/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lb_st *st;
    if (lb_st_parse(data, size, "fuzz.safetensors", &st) != LB_OK) return 0;
    for (size_t i = 0; i < lb_st_count(st); i++) {
        const lb_st_tensor *t = lb_st_at(st, i);
        if (lb_st_find(st, t->name) != t) abort();
        if (t->nelements > (1u << 22)) continue;
        float *f = malloc((t->nelements ? t->nelements : 1) * sizeof *f);
        if (f) (void)lb_st_to_f32(st, t, f, t->nelements);
        free(f);
    }
    for (size_t i = 0; i < lb_st_metadata_count(st); i++) {
        const char *k, *v;
        lb_st_metadata_at(st, i, &k, &v);
        if (lb_st_metadata(st, k) == NULL) abort();
    }
    lb_st_close(st);
    return 0;
}
