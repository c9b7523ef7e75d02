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

/* Reads the whole state of `t` (built from a matching config) back. */
lb_status lb_state_read(lb_trainer *t, lb_ckpt *c);

/* model/: every parameter of `m`, checked finite. */
lb_status lb_state_read_model(lb_model *m, lb_ckpt *c);

/* config: the stored config, parsed; `c`'s path names it in messages. */
lb_status lb_state_read_config(lb_ckpt *c, lb_config *cfg);

/* tokenizer/vocab: the stored tokenizer (*tok is NULL on failure). */
lb_status lb_state_read_tokenizer(lb_ckpt *c, lb_tokenizer **tok);

#endif
