/* The trainer's checkpoint layout: what one HDF5 file (io/checkpoint.h)
 * holds so that a run resumes bit for bit, and how it is read back.
 *
 *   config                  string   the resolved config as YAML
 *   model/<param>           f32      each entry of the parameter table
 *                                    (lb_model_params), in its order, with its
 *                                    weight and activation specs as string
 *                                    attributes quant and act_quant
 *   optim/<buffer>          by codec each buffer of lb_optim_buffers under its
 *                                    name ("blk.0.attn_q.weight/m", ...)
 *   train/step              i64 [1]  optimizer steps completed
 *   train/tokens_seen       i64 [1]  training tokens consumed
 *   data/rng                i64 [3]  the batcher's position (seed, stream, pos)
 *   tokenizer/vocab         u8 [n]   lb_tokenizer_to_bytes, attribute kind
 *   distill/teacher_fingerprint i64 [1] train.distill only: the teacher's
 *                                    lb_model_fingerprint, checked on resume
 *
 * A weights checkpoint (lb_state_write_weights) has config, model/ and
 * tokenizer/ only.
 *
 * docs/checkpoint.md lists every dataset with its type and shape. Reading
 * checks each dataset against the shape the freshly built model and optimizer
 * expect, so a checkpoint of another architecture or optimizer fails naming
 * the tensor before anything is changed that matters. The functions on files
 * (save, resume, and loading for eval and sample) are the trainer's, in
 * trainer.h. */
#ifndef LOWBIT_TRAINER_STATE_H
#define LOWBIT_TRAINER_STATE_H

#include "io/checkpoint.h"
#include "trainer/trainer.h"

/* Writes the whole state of `t` into a checkpoint being created. */
lb_status lb_state_write(const lb_trainer *t, lb_ckpt *c);

/* A weights checkpoint (lowbit import, export): config, model/ and
 * tokenizer/ only. eval, sample, train.init_from, quantize and export read
 * it; resuming a run needs the whole state. */
lb_status lb_state_write_weights(const char *config_yaml, const lb_model *m, const lb_tokenizer *tok, lb_ckpt *c);
/* Its parts: model/ (every entry of the parameter table with its specs) and tokenizer/vocab. */
lb_status lb_state_write_model(const lb_model *m, lb_ckpt *c);
lb_status lb_state_write_tokenizer(const lb_tokenizer *tok, lb_ckpt *c);

/* Reads the whole state of `t` (built from a matching config) back. */
lb_status lb_state_read(lb_trainer *t, lb_ckpt *c);

/* model/: every parameter of `m`, checked finite. */
lb_status lb_state_read_model(lb_model *m, lb_ckpt *c);

/* config: the stored config, parsed; `c`'s path names it in messages. */
lb_status lb_state_read_config(lb_ckpt *c, lb_config *cfg);

/* tokenizer/vocab: the stored tokenizer (*tok is NULL on failure). */
lb_status lb_state_read_tokenizer(lb_ckpt *c, lb_tokenizer **tok);

#endif
