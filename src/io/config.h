/* The typed, validated training configuration.
 *
 * A YAML file (see docs/config.md for every key, its type, default and range)
 * is read on top of the documented defaults, then `--set a.b=value`
 * assignments from the command line, then cross-field checks:
 *
 *     lb_config c;
 *     LB_TRY(lb_config_load_file("configs/bitnet-b158-tiny.yaml", &c));
 *     LB_TRY(lb_config_set(&c, "train.lr=1e-3"));
 *     LB_TRY(lb_config_validate(&c));
 *
 * Every failure is LB_ECONFIG with a message that says where and what, e.g.
 *   configs/x.yaml:7:12: key 'model.n_heads': expected a positive integer dividing model.dim (256), got 3
 *
 * lb_config_to_yaml prints the resolved config (every key, derived defaults
 * filled in); loading that text gives back identical sections. */
#ifndef LOWBIT_IO_CONFIG_H
#define LOWBIT_IO_CONFIG_H

#include <stdint.h>

#include "autograd/gemm.h"     /* lb_gemm_precision: train.gemm_precision, .attention_precision */
#include "core/error.h"
#include "data/shards.h"        /* lb_shard_layout: data.format */
#include "data/tokenizer.h"     /* lb_tokenizer_kind: data.tokenizer */
#include "layers/model_config.h"
#include "optim/optim.h"        /* lb_optim_type, lb_state_codec, lb_grad_precision */
#include "optim/schedule.h"     /* lb_sched_kind: train.schedule */
#include "dist/dist.h"          /* lb_comm_format: optim.comm */

#define LB_CONFIG_PATH_MAX 512  /* bytes of a path field, with the terminating NUL */
#define LB_CONFIG_MAX_PATHS 16  /* entries of data.paths */
#define LB_CONFIG_TEXT_MAX 256  /* bytes of log.sample_prompt */
#define LB_CONFIG_MAX_KEYS 96   /* size of the per-key bookkeeping below */

typedef struct lb_data_config {
    lb_tokenizer_kind tokenizer;
    int vocab_size;                                     /* bpe: the vocabulary to train to */
    char tokenizer_path[LB_CONFIG_PATH_MAX];            /* hf: the tokenizer.json */
    /* Exactly one of path and paths is in use: giving one clears the other. */
    char path[LB_CONFIG_PATH_MAX];                      /* a file, or a directory of files */
    int n_paths;                                        /* 0: use `path` */
    char paths[LB_CONFIG_MAX_PATHS][LB_CONFIG_PATH_MAX];
    float val_fraction;                                 /* share of the corpus held out, 0..0.5 */
    /* Token shards (data/shards.h) instead of a corpus: a directory (with
     * lowbit data prepare's manifest.json, or of *.bin files) or a glob.
     * "" reads data.path / data.paths. */
    char shards[LB_CONFIG_PATH_MAX];
    lb_shard_layout format;                             /* of shards without a manifest */
} lb_data_config;

/* train.distill: knowledge distillation from a frozen teacher (trainer/distill.h). */
typedef struct lb_distill_config {
    char teacher[LB_CONFIG_PATH_MAX]; /* checkpoint or HF directory; "": train.init_from */
    float temperature;       /* T of the softened distributions */
    float weight_kl;         /* weight of T²·KL(teacher ‖ student); 0 with weight_hidden 0: off */
    float weight_ce;         /* weight of the cross-entropy on the data */
    int hidden_layer;        /* block whose output the hidden-state loss compares; -1: the last */
    float weight_hidden;     /* weight of that mean squared error; 0: off */
    int relation_layer;      /* block whose q, k, v relations the relation loss compares; -1: the last */
    float weight_relation;   /* weight of the MiniLM relation KL (Q-Q + K-K + V-V); 0: off */
} lb_distill_config;

typedef struct lb_train_config {
    int steps;
    int batch_size;          /* sequences per micro-batch */
    int seq_len;             /* tokens per sequence, ≤ model.max_seq_len */
    int grad_accum;          /* micro-batches per optimizer step */
    uint64_t seed;
    int threads;             /* 0: all cores */
    lb_gemm_precision gemm_precision; /* products of fp32 operands: fp32 or bf16 */
    lb_gemm_precision attention_precision; /* attention's products (QKᵀ, P·V, their gradients): fp32 or bf16 */
    float lr;                /* peak learning rate */
    float min_lr;            /* lr at the end of the decay */
    int warmup_steps;        /* linear warm-up from 0 to lr */
    lb_sched_kind schedule;
    float decay_at;          /* two_stage.decay_at: stage 2 starts at this fraction of steps */
    float lr_after;          /* two_stage.lr_after: stage-2 lr as a fraction of lr */
    float weight_decay;
    float weight_decay_stage2;
    float grad_clip;         /* max global gradient norm; 0: off */
    int quant_warmup_steps;  /* λ = min(step / N, 1) for gradual quantization; 0: off (λ = 1) */
    char init_from[LB_CONFIG_PATH_MAX]; /* checkpoint to start from ("" : random init) */
    lb_distill_config distill;
} lb_train_config;

/* One parameter group of the optimizer (optim.decay, optim.no_decay). */
typedef struct lb_cfg_optim_group {
    lb_state_codec state;     /* follows optim.state unless given */
    float lr_scale;           /* multiplies the scheduled lr */
} lb_cfg_optim_group;

/* The optim section; the trainer turns it into optim/optim.h's lb_optim_config. */
typedef struct lb_cfg_optim {
    lb_optim_type type;
    float beta1, beta2, eps;  /* adamw (beta1, beta2 also lion) */
    float momentum;           /* sgd */
    lb_state_codec state;     /* fp32, bf16, fp8, int8 (block-wise) */
    lb_grad_precision grad;   /* weight gradients: fp32, fp8, int8 */
    lb_grad_precision act_grad; /* activation gradients: fp32, fp8, int8 */
    int no_decay_on_norms_and_embeddings;
    int zero;                 /* several MPI ranks: ZeRO-1, optimizer state sharded across them */
    lb_comm_format comm;      /* several MPI ranks: the format gradients travel in (dist/dist.h) */
    lb_cfg_optim_group decay;    /* projections (and everything when the flag above is off) */
    lb_cfg_optim_group no_decay; /* norm gains and embeddings, without weight decay */
} lb_cfg_optim;

typedef struct lb_eval_config {
    int interval;  /* steps between evaluations; 0: only at the end */
    int batches;   /* validation batches per evaluation */
} lb_eval_config;

typedef struct lb_ckpt_config {
    char dir[LB_CONFIG_PATH_MAX]; /* default runs/<config name> */
    int interval;                 /* steps between checkpoints; 0: only at the end */
    int keep_last;                /* periodic checkpoints kept; 0: all */
} lb_ckpt_config;

typedef struct lb_log_config {
    int interval;                           /* steps between progress lines */
    char jsonl[LB_CONFIG_PATH_MAX];         /* metrics file; default <checkpoint.dir>/metrics.jsonl; "": none */
    int sample_tokens;                      /* length of the text sample at the end; 0: none */
    char sample_prompt[LB_CONFIG_TEXT_MAX];
} lb_log_config;

/* Where a key got its value, for messages about cross-field checks. */
typedef struct lb_config_origin {
    int line, column;  /* 1-based position in `source`; 0 when not from the file */
    char set_arg[96];  /* the --set argument that gave it ("" when none) */
    int order;         /* 1, 2, ... in the order keys were given; 0: default */
} lb_config_origin;

typedef struct lb_config {
    lb_model_config model;
    lb_data_config data;
    lb_train_config train;
    lb_cfg_optim optim;
    lb_eval_config eval;
    lb_ckpt_config checkpoint;
    lb_log_config log;
    char source[512];  /* file it came from ("" for defaults) */

    /* Bookkeeping of config.c, not configuration. */
    struct {
        char name[128];      /* config name: file name without directory and extension */
        /* Derived defaults that still follow their source; giving the key clears the flag. */
        int auto_n_kv_heads; /* model.n_kv_heads = model.n_heads */
        int auto_ckpt_dir;   /* checkpoint.dir = runs/<name> */
        int auto_jsonl;      /* log.jsonl = <checkpoint.dir>/metrics.jsonl */
        int auto_decay_state;    /* optim.decay.state = optim.state */
        int auto_no_decay_state; /* optim.no_decay.state = optim.state */
        int n_given;         /* keys given so far (numbers origin[].order) */
        lb_config_origin origin[LB_CONFIG_MAX_KEYS]; /* by key, in the order of docs/config.md */
    } meta;
} lb_config;

/* The documented defaults (the bitnet-b158-tiny architecture). */
void lb_config_defaults(lb_config *c);
/* Defaults, then the file. LB_EIO when it cannot be read, LB_ECONFIG when
 * malformed (then *c holds the defaults and what was read before the error). */
lb_status lb_config_load_file(const char *path, lb_config *c);
/* Defaults, then `yaml`; `name_for_errors` stands for the file in messages
 * and names the run (checkpoint.dir = runs/<name without extension>). */
lb_status lb_config_load_string(const char *yaml, const char *name_for_errors, lb_config *c);
/* One "a.b=value" from --set, with the file's validation and messages.
 * The value is taken literally, except that one starting with [ { " or '
 * is read as YAML (data.paths=[a.txt, b.txt], model.quant.attn={weight: int4}).
 * On failure *c is unchanged. */
lb_status lb_config_set(lb_config *c, const char *assignment);
/* Cross-field checks (shapes, schedule), after the file and all --set. */
lb_status lb_config_validate(const lb_config *c);

/* 1 when `key` ("model.sub_norm") was given in the file or by --set, 0 when
 * it holds its default (or is no key). */
int lb_config_given(const lb_config *c, const char *key);
/* The resolved config as YAML (malloc'd, caller frees). */
lb_status lb_config_to_yaml(const lb_config *c, char **out);


#endif
