/* The HDF5 checkpoint reader (io/checkpoint.h + trainer/state.h) on the bytes
 * as a file: open (format checks), every dataset's type, shape and data, the
 * stored config and tokenizer, and the model's weights when the config
 * describes a small model — what `lowbit eval/sample RUN` and --init-from read.
 * libhdf5 itself is Debian's, not instrumented: the harness covers lowbit's
 * side of every call and catches memory errors where lowbit's buffers meet it. */
#include <stdlib.h>

#include "core/dtype.h"
#include "fuzz.h"
#include "io/checkpoint.h"
#include "io/config.h"
#include "layers/model.h"
#include "trainer/state.h"

static lb_status read_dataset(const char *name, void *ctx) {
    lb_ckpt *c = ctx;
    lb_dtype t;
    int ndim, shape[LB_CKPT_MAX_DIMS];
    if (lb_ckpt_type_of(c, name, &t) != LB_OK || lb_ckpt_shape(c, name, &ndim, shape) != LB_OK) return LB_OK;
    size_t n = 1;
    for (int d = 0; d < ndim; d++) n *= (size_t)shape[d];
    if (n > (1u << 22)) return LB_OK;
    if (lb_dtype_info(t)->cls == LB_DC_BLOCK) return LB_OK;
    void *buf = malloc(n ? lb_dtype_row_bytes(t, n) : 1);
    if (buf) (void)lb_ckpt_get(c, name, t, ndim, shape, buf);
    free(buf);
    return LB_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_tmp_file(data, size, ".h5");
    lb_ckpt *c;
    if (!path || lb_ckpt_open(path, &c) != LB_OK) return 0;
    /* Every dataset a trainer checkpoint has, by name: lb_ckpt_list (H5Ovisit)
     * is not on any path a user's file takes, and libhdf5 1.10.8 crashes in it
     * on some corrupt link tables (docs/reliability.md). */
    static const char *const names[] = {"config", "train/step", "train/tokens_seen", "data/rng", "tokenizer/vocab",
                                        "model/token_embd.weight", "model/blk.0.attn_q.weight",
                                        "model/output_norm.weight", "optim/loss_scale"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (lb_ckpt_has(c, names[i])) (void)read_dataset(names[i], c);
    lb_config cfg;
    lb_tokenizer *tok = NULL;
    if (lb_state_read_config(c, &cfg) == LB_OK) {
        if (lb_state_read_tokenizer(c, &tok) == LB_OK) lb_tokenizer_free(tok);
        if (fuzz_model_fits(&cfg.model)) {
            lb_model *m = lb_model_create(&cfg.model, 1);
            if (m) {
                (void)lb_state_read_model(m, c);
                lb_model_free(m);
            }
        }
    }
    lb_ckpt_close(c);
    return 0;
}
