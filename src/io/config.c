/* The YAML configuration: defaults, the file, --set, checks, and back to YAML.
 *
 * One table (`keys` below) describes every key: its dotted name, kind, where
 * it lives in lb_config and its range. Reading a file, applying --set,
 * validating and printing all walk that table, so the four always agree.
 * The file is read with libyaml's document API, which keeps the line and
 * column of every node for the error messages. */
#include "io/config.h"

#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "layers/model.h"

/* ---- the schema ----------------------------------------------------------- */

typedef enum key_kind {
    K_SECTION, /* a mapping of further keys */
    K_INT,
    K_U64,
    K_FLOAT,
    K_BOOL,
    K_ENUM,    /* an int-sized enum, spelled by `names` */
    K_STR,     /* char[size]; lo = 1 means it must not be empty */
    K_PATHS,   /* data.paths: a list of file names */
    K_QSPEC,   /* an lb_qspec */
    K_LIN_W,   /* weight spec of an lb_linear_quant (makes its mode custom) */
    K_LIN_A,   /* activation spec of an lb_linear_quant */
    K_PRESET   /* model.quant.preset: sets attn and ffn */
} key_kind;

typedef struct key_desc {
    const char *name;          /* dotted, e.g. "model.n_heads" */
    key_kind kind;
    size_t off;                /* offsetof(lb_config, ...) */
    size_t size;               /* K_STR: buffer size */
    double lo, hi;             /* K_INT, K_FLOAT: allowed range */
    int lo_open;               /* K_FLOAT: lo itself not allowed */
    int hi_open;               /* K_FLOAT: hi itself not allowed */
    const char *expect;        /* completes "expected ..." */
    const char *const *names;  /* K_ENUM, K_PRESET: spelling of each value ("" = not allowed) */
    int n_names;
} key_desc;

/* The names of enum keys are the modules' own tables, static_assert'ed
 * against their enums there. */

#define OFF(f) offsetof(lb_config, f)
#define N_OF(a) ((int)(sizeof(a) / sizeof((a)[0])))
#define SEC(n) {n, K_SECTION, 0, 0, 0, 0, 0, 0, "a mapping", NULL, 0}
#define INT(n, f, lo, hi, ex) {n, K_INT, OFF(f), 0, lo, hi, 0, 0, ex, NULL, 0}
#define FLT(n, f, lo, hi, lo_open, hi_open, ex) {n, K_FLOAT, OFF(f), 0, lo, hi, lo_open, hi_open, ex, NULL, 0}
#define BOOL(n, f) {n, K_BOOL, OFF(f), 0, 0, 0, 0, 0, "true or false", NULL, 0}
#define ENUM(n, f, nm) {n, K_ENUM, OFF(f), 0, 0, 0, 0, 0, NULL, nm, N_OF(nm)}
#define STR(n, f, nonempty, ex) {n, K_STR, OFF(f), sizeof(((lb_config *)0)->f), nonempty, 0, 0, 0, ex, NULL, 0}
#define QSPEC(n, f) {n, K_QSPEC, OFF(f), 0, 0, 0, 0, 0, "a quantization spec", NULL, 0}
#define LIN(n, kind, f) {n, kind, OFF(f), 0, 0, 0, 0, 0, "a quantization spec", NULL, 0}

#define BIG 1e9
static const key_desc keys[] = {
    SEC("model"),
    INT("model.vocab_size", model.vocab_size, 0, 16777216, "0 (from the tokenizer) or a vocabulary size"),
    INT("model.dim", model.dim, 1, 65536, "a positive integer"),
    INT("model.n_layers", model.n_layers, 1, 1024, "a positive integer"),
    INT("model.n_heads", model.n_heads, 1, 4096, "a positive integer"),
    INT("model.n_kv_heads", model.n_kv_heads, 1, 4096, "a positive integer"),
    INT("model.ffn_dim", model.ffn_dim, 1, 1048576, "a positive integer"),
    INT("model.max_seq_len", model.max_seq_len, 1, 1048576, "a positive integer"),
    FLT("model.rope_theta", model.rope_theta, 0, FLT_MAX, 1, 0, "a positive number"),
    FLT("model.norm_eps", model.norm_eps, 0, 1, 1, 0, "a number in (0, 1]"),
    ENUM("model.norm", model.norm, lb_norm_kind_names),
    ENUM("model.ffn_act", model.ffn_act, lb_ffn_act_names),
    BOOL("model.sub_norm", model.sub_norm),
    BOOL("model.tie_embeddings", model.tie_embeddings),
    FLT("model.init_std", model.init_std, 0, 10, 1, 0, "a number in (0, 10]"),
    SEC("model.quant"),
    {"model.quant.preset", K_PRESET, 0, 0, 0, 0, 0, 0, NULL, lb_quant_preset_names, N_OF(lb_quant_preset_names)},
    SEC("model.quant.attn"),
    LIN("model.quant.attn.weight", K_LIN_W, model.attn),
    LIN("model.quant.attn.activation", K_LIN_A, model.attn),
    SEC("model.quant.ffn"),
    LIN("model.quant.ffn.weight", K_LIN_W, model.ffn),
    LIN("model.quant.ffn.activation", K_LIN_A, model.ffn),
    SEC("model.quant.head"),
    LIN("model.quant.head.weight", K_LIN_W, model.head),
    LIN("model.quant.head.activation", K_LIN_A, model.head),
    QSPEC("model.quant.embedding", model.embedding),

    SEC("data"),
    ENUM("data.tokenizer", data.tokenizer, lb_tokenizer_kind_names),
    INT("data.vocab_size", data.vocab_size, 0, 16777216, "0 or the vocabulary to train a bpe tokenizer to (257..16777216)"),
    STR("data.tokenizer_path", data.tokenizer_path, 0, "a tokenizer.json file or \"\""),
    STR("data.path", data.path, 1, "a file or directory"),
    {"data.paths", K_PATHS, OFF(data), 0, 0, 0, 0, 0, "a non-empty list of at most 16 files", NULL, 0},
    FLT("data.val_fraction", data.val_fraction, 0, 0.5, 0, 0, "a number in [0, 0.5]"),
    STR("data.shards", data.shards, 0, "\"\" or token shards: a directory or a glob pattern"),
    ENUM("data.format", data.format, lb_shard_layout_names),

    SEC("train"),
    INT("train.steps", train.steps, 1, BIG, "a positive integer"),
    INT("train.batch_size", train.batch_size, 1, 1048576, "a positive integer"),
    INT("train.seq_len", train.seq_len, 1, 1048576, "a positive integer"),
    INT("train.grad_accum", train.grad_accum, 1, 65536, "a positive integer"),
    {"train.seed", K_U64, OFF(train.seed), 0, 0, 0, 0, 0, "an integer in [0, 2^64)", NULL, 0},
    INT("train.threads", train.threads, 0, 4096, "0 (all cores) or a number of threads"),
    ENUM("train.gemm_precision", train.gemm_precision, lb_gemm_precision_names),
    ENUM("train.attention_precision", train.attention_precision, lb_gemm_precision_names),
    FLT("train.lr", train.lr, 0, 10, 1, 0, "a number in (0, 10]"),
    FLT("train.min_lr", train.min_lr, 0, 10, 0, 0, "a number in [0, 10]"),
    INT("train.warmup_steps", train.warmup_steps, 0, BIG, "a non-negative integer"),
    ENUM("train.schedule", train.schedule, lb_sched_kind_names),
    SEC("train.two_stage"),
    FLT("train.two_stage.decay_at", train.decay_at, 0, 1, 1, 1, "a fraction of train.steps in (0, 1)"),
    FLT("train.two_stage.lr_after", train.lr_after, 0, 1, 1, 0, "a fraction of train.lr in (0, 1]"),
    FLT("train.weight_decay", train.weight_decay, 0, 10, 0, 0, "a number in [0, 10]"),
    FLT("train.weight_decay_stage2", train.weight_decay_stage2, 0, 10, 0, 0, "a number in [0, 10]"),
    FLT("train.grad_clip", train.grad_clip, 0, FLT_MAX, 0, 0, "0 (off) or a positive number"),
    INT("train.quant_warmup_steps", train.quant_warmup_steps, 0, BIG, "0 (off) or a number of steps"),
    STR("train.init_from", train.init_from, 0, "a checkpoint path or \"\""),
    SEC("train.distill"),
    STR("train.distill.teacher", train.distill.teacher, 0, "\"\" (train.init_from) or a checkpoint path"),
    FLT("train.distill.temperature", train.distill.temperature, 0, 100, 1, 0, "a number in (0, 100]"),
    FLT("train.distill.weight_kl", train.distill.weight_kl, 0, 1e6, 0, 0, "a number in [0, 1e6]"),
    FLT("train.distill.weight_ce", train.distill.weight_ce, 0, 1e6, 0, 0, "a number in [0, 1e6]"),
    INT("train.distill.hidden_layer", train.distill.hidden_layer, -1, 1023, "-1 (the last block) or a block index"),
    FLT("train.distill.weight_hidden", train.distill.weight_hidden, 0, 1e6, 0, 0, "a number in [0, 1e6]"),
    INT("train.distill.relation_layer", train.distill.relation_layer, -1, 1023, "-1 (the last block) or a block index"),
    FLT("train.distill.weight_relation", train.distill.weight_relation, 0, 1e6, 0, 0, "a number in [0, 1e6]"),

    SEC("optim"),
    ENUM("optim.type", optim.type, lb_optim_type_names),
    FLT("optim.beta1", optim.beta1, 0, 1, 0, 1, "a number in [0, 1)"),
    FLT("optim.beta2", optim.beta2, 0, 1, 0, 1, "a number in [0, 1)"),
    FLT("optim.eps", optim.eps, 0, 1, 1, 0, "a number in (0, 1]"),
    FLT("optim.momentum", optim.momentum, 0, 1, 0, 1, "a number in [0, 1)"),
    ENUM("optim.state", optim.state, lb_state_codec_names),
    ENUM("optim.grad", optim.grad, lb_grad_precision_names),
    ENUM("optim.act_grad", optim.act_grad, lb_grad_precision_names),
    BOOL("optim.no_decay_on_norms_and_embeddings", optim.no_decay_on_norms_and_embeddings),
    BOOL("optim.zero", optim.zero),
    ENUM("optim.comm", optim.comm, lb_comm_format_names),
    SEC("optim.decay"),
    ENUM("optim.decay.state", optim.decay.state, lb_state_codec_names),
    FLT("optim.decay.lr_scale", optim.decay.lr_scale, 0, 100, 0, 0, "a number in [0, 100]"),
    SEC("optim.no_decay"),
    ENUM("optim.no_decay.state", optim.no_decay.state, lb_state_codec_names),
    FLT("optim.no_decay.lr_scale", optim.no_decay.lr_scale, 0, 100, 0, 0, "a number in [0, 100]"),

    SEC("eval"),
    INT("eval.interval", eval.interval, 0, BIG, "0 (only at the end) or a number of steps"),
    INT("eval.batches", eval.batches, 1, 1048576, "a positive integer"),

    SEC("checkpoint"),
    STR("checkpoint.dir", checkpoint.dir, 1, "a directory"),
    INT("checkpoint.interval", checkpoint.interval, 0, BIG, "0 (only at the end) or a number of steps"),
    INT("checkpoint.keep_last", checkpoint.keep_last, 0, 1000000, "0 (keep all) or a number of checkpoints"),

    SEC("log"),
    INT("log.interval", log.interval, 1, BIG, "a positive integer"),
    STR("log.jsonl", log.jsonl, 0, "a file path or \"\" (none)"),
    INT("log.sample_tokens", log.sample_tokens, 0, 1048576, "a non-negative integer"),
    STR("log.sample_prompt", log.sample_prompt, 0, "a string"),
};
#define N_KEYS N_OF(keys)
_Static_assert(sizeof keys / sizeof keys[0] <= LB_CONFIG_MAX_KEYS, "raise LB_CONFIG_MAX_KEYS");


static int key_index(const char *name) {
    for (int k = 0; k < N_KEYS; k++)
        if (strcmp(keys[k].name, name) == 0) return k;
    return -1;
}

int lb_config_given(const lb_config *c, const char *key) {
    int k = key_index(key);
    return k >= 0 && c->meta.origin[k].order > 0;
}

static const char *leaf_name(const char *name) {
    const char *dot = strrchr(name, '.');
    return dot ? dot + 1 : name;
}

/* Is `k` a direct child of the section named `parent` ("" = the top)? */
static int is_child(int k, const char *parent) {
    const char *name = keys[k].name;
    size_t n = strlen(parent);
    if (n == 0) return strchr(name, '.') == NULL;
    return strncmp(name, parent, n) == 0 && name[n] == '.' && strchr(name + n + 1, '.') == NULL;
}

/* ---- messages -------------------------------------------------------------- */

static int edit_distance(const char *a, const char *b) {
    int la = (int)strlen(a), lb = (int)strlen(b);
    if (la > 63 || lb > 63) return 99;
    int row[64];
    for (int j = 0; j <= lb; j++) row[j] = j;
    for (int i = 1; i <= la; i++) {
        int diag = row[0];
        row[0] = i;
        for (int j = 1; j <= lb; j++) {
            int up = row[j];
            int best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* A few edits apart, or one a shortening of the other ("rms" for "rmsnorm"). */
static int close_enough(const char *typed, const char *known) {
    size_t n = strlen(known), t = strlen(typed);
    if (t >= 2 && (strncmp(typed, known, t < n ? t : n) == 0)) return 1;
    int allowed = n <= 4 ? 1 : n <= 8 ? 2 : 3;
    return edit_distance(typed, known) <= allowed;
}

/* The known key closest to `typed` (an unknown key under section `parent`):
 * a sibling within a few edits, else a key of that name in another section.
 * Writes "" when nothing is close. */
static void suggest_key(const char *parent, const char *typed, char *out, size_t size) {
    int best = -1, best_d = 99;
    for (int k = 0; k < N_KEYS; k++) {
        if (!is_child(k, parent)) continue;
        int d = edit_distance(typed, leaf_name(keys[k].name));
        if (d < best_d && close_enough(typed, leaf_name(keys[k].name))) best = k, best_d = d;
    }
    if (best >= 0) {
        snprintf(out, size, "%s", leaf_name(keys[best].name));
        return;
    }
    for (int k = 0; k < N_KEYS; k++) {
        if (edit_distance(typed, leaf_name(keys[k].name)) <= 1) {
            snprintf(out, size, "%s", keys[k].name);
            return;
        }
    }
    out[0] = '\0';
}

/* What a config is being read from: a file (positions from the nodes) or
 * one --set argument. */
typedef struct cfg_ctx {
    lb_config *c;
    yaml_document_t *doc;
    const char *file;    /* NULL for --set */
    const char *set_arg; /* NULL for a file */
} cfg_ctx;

/* Fills `buf` with "FILE:LINE:COL: " or "--set 'ARG': ". */
static void where(const cfg_ctx *x, const yaml_node_t *at, char *buf, size_t size) {
    if (x->set_arg)
        snprintf(buf, size, "--set '%s': ", x->set_arg);
    else if (at)
        snprintf(buf, size, "%s:%zu:%zu: ", x->file, at->start_mark.line + 1, at->start_mark.column + 1);
    else
        snprintf(buf, size, "%s: ", x->file);
}

static lb_status fail(const cfg_ctx *x, const yaml_node_t *at, const char *fmt, ...) LB_PRINTF(3, 4);
static lb_status fail(const cfg_ctx *x, const yaml_node_t *at, const char *fmt, ...) {
    char pos[640], msg[LB_ERRMSG_MAX];
    where(x, at, pos, sizeof pos);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return lb_error(LB_ECONFIG, "%s%s", pos, msg);
}

static const char *scalar_text(const yaml_node_t *n) { return (const char *)n->data.scalar.value; }

static int is_null(const yaml_node_t *n) {
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) return 0;
    const char *s = scalar_text(n);
    return s[0] == '\0' || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 || strcmp(s, "Null") == 0 ||
           strcmp(s, "NULL") == 0;
}

/* How a node reads in "got ...": 'abc', the string '256', a list, a mapping, nothing. */
static const char *describe(const yaml_node_t *n, char *buf, size_t size) {
    if (n->type == YAML_MAPPING_NODE) return "a mapping";
    if (n->type == YAML_SEQUENCE_NODE) return "a list";
    if (is_null(n)) return "nothing";
    const char *s = scalar_text(n);
    int quoted = n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE;
    snprintf(buf, size, "%s'%.80s%s'", quoted ? "the string " : "", s, strlen(s) > 80 ? "..." : "");
    return buf;
}

static lb_status fail_type(const cfg_ctx *x, int k, const yaml_node_t *val, const char *expect) {
    char got[128];
    return fail(x, val, "key '%s': expected %s, got %s", keys[k].name, expect, describe(val, got, sizeof got));
}

/* "one of a, b, c" for an enum key. */
static const char *enum_expect(int k, char *buf, size_t size) {
    size_t n = (size_t)snprintf(buf, size, "one of");
    for (int i = 0; i < keys[k].n_names && n < size; i++)
        if (keys[k].names[i][0]) n += (size_t)snprintf(buf + n, size - n, "%s %s", i ? "," : "", keys[k].names[i]);
    return buf;
}

/* ---- ranges and derived defaults --------------------------------------------- */

static int in_range(int k, double v) {
    const key_desc *d = &keys[k];
    if (!isfinite(v)) return 0;
    if (d->lo_open ? v <= d->lo : v < d->lo) return 0;
    if (d->hi_open ? v >= d->hi : v > d->hi) return 0;
    return 1;
}

/* Fill the derived defaults that still follow their source. */
static void resolve_derived(lb_config *c) {
    if (c->meta.auto_n_kv_heads) c->model.n_kv_heads = c->model.n_heads;
    if (c->meta.auto_decay_state) c->optim.decay.state = c->optim.state;
    if (c->meta.auto_no_decay_state) c->optim.no_decay.state = c->optim.state;
    if (c->meta.auto_ckpt_dir) snprintf(c->checkpoint.dir, sizeof c->checkpoint.dir, "runs/%s", c->meta.name);
    if (c->meta.auto_jsonl) {
        size_t n = strlen(c->checkpoint.dir);
        if (n + sizeof "/metrics.jsonl" <= sizeof c->log.jsonl) {
            memcpy(c->log.jsonl, c->checkpoint.dir, n);
            memcpy(c->log.jsonl + n, "/metrics.jsonl", sizeof "/metrics.jsonl");
        } else {
            c->log.jsonl[0] = '\0'; /* too long to derive: no metrics file */
        }
    }
}

/* The linear-layer setting of a preset: its mode and the recipe's specs
 * (quant/recipe.h). */
static lb_status make_preset(int preset, lb_linear_quant *q) {
    memset(q, 0, sizeof *q);
    q->mode = (lb_linear_mode)preset;
    return lb_linear_quant_resolve(q, q, "model.quant.preset");
}

/* Specs are equal when they print the same (seed and stream are run state, not config). */
static int qspec_equal(const lb_qspec *a, const lb_qspec *b) {
    char ta[96], tb[96];
    lb_qspec_format(a, ta, sizeof ta);
    lb_qspec_format(b, tb, sizeof tb);
    return strcmp(ta, tb) == 0;
}

static int linear_equal(const lb_linear_quant *a, const lb_linear_quant *b) {
    return a->mode == b->mode && qspec_equal(&a->weight, &b->weight) && qspec_equal(&a->activation, &b->activation);
}

/* ---- reading values -------------------------------------------------------- */

static lb_status walk_map(cfg_ctx *x, const char *section, yaml_node_t *map);

static void record_origin(cfg_ctx *x, int k, const yaml_node_t *key_node) {
    lb_config_origin *o = &x->c->meta.origin[k];
    memset(o, 0, sizeof *o);
    o->order = ++x->c->meta.n_given;
    if (x->set_arg) {
        snprintf(o->set_arg, sizeof o->set_arg, "%.*s%s", (int)sizeof o->set_arg - 4, x->set_arg,
                 strlen(x->set_arg) > sizeof o->set_arg - 4 ? "..." : "");
    } else if (key_node) {
        o->line = (int)key_node->start_mark.line + 1;
        o->column = (int)key_node->start_mark.column + 1;
    }
}

static lb_status parse_qspec(cfg_ctx *x, int k, yaml_node_t *val, lb_qspec *out) {
    if (val->type != YAML_SCALAR_NODE || is_null(val))
        return fail_type(x, k, val, "a quantization spec (none, ternary, int8:per_token, int4:g128, fp8_e4m3, ...)");
    lb_qspec q;
    if (lb_qspec_parse(scalar_text(val), &q) != LB_OK) {
        char why[LB_ERRMSG_MAX];
        snprintf(why, sizeof why, "%s", lb_errmsg());
        return fail(x, val, "key '%s': bad quantization spec '%.80s': %s", keys[k].name, scalar_text(val), why);
    }
    *out = q;
    return LB_OK;
}

/* Sets key `k` from node `val`; `key_node` (NULL for --set) is where the key was written. */
static lb_status set_key(cfg_ctx *x, int k, yaml_node_t *key_node, yaml_node_t *val) {
    const key_desc *d = &keys[k];
    lb_config *c = x->c;
    char *field = (char *)c + d->off;
    char buf[256];

    if (d->kind == K_SECTION) {
        if (val->type != YAML_MAPPING_NODE) return fail_type(x, k, val, "a mapping");
        LB_TRY(walk_map(x, d->name, val));
        return LB_OK;
    }
    if (d->kind == K_PATHS) {
        if (val->type != YAML_SEQUENCE_NODE) return fail_type(x, k, val, d->expect);
        yaml_node_item_t *it = val->data.sequence.items.start, *end = val->data.sequence.items.top;
        int n = (int)(end - it);
        if (n < 1 || n > LB_CONFIG_MAX_PATHS)
            return fail(x, val, "key '%s': expected %s, got %d entries", d->name, d->expect, n);
        for (int i = 0; i < n; i++) {
            yaml_node_t *e = yaml_document_get_node(x->doc, it[i]);
            if (e->type != YAML_SCALAR_NODE || is_null(e))
                return fail_type(x, k, e, "each entry to be a file name");
            if (strlen(scalar_text(e)) >= LB_CONFIG_PATH_MAX)
                return fail(x, e, "key '%s': expected paths shorter than %d bytes", d->name, LB_CONFIG_PATH_MAX);
        }
        for (int i = 0; i < n; i++)
            snprintf(c->data.paths[i], LB_CONFIG_PATH_MAX, "%s", scalar_text(yaml_document_get_node(x->doc, it[i])));
        c->data.n_paths = n;
        c->data.path[0] = '\0'; /* paths replaces path */
        record_origin(x, k, key_node);
        return LB_OK;
    }

    /* Everything else is a single scalar. */
    const char *expect = d->kind == K_ENUM || d->kind == K_PRESET ? enum_expect(k, buf, sizeof buf) : d->expect;
    if (val->type != YAML_SCALAR_NODE) return fail_type(x, k, val, expect);
    const char *s = scalar_text(val);
    int plain = val->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;

    switch (d->kind) {
    case K_INT: {
        if (!plain || is_null(val)) return fail_type(x, k, val, expect);
        char *end;
        errno = 0;
        long long v = strtoll(s, &end, 10);
        if (end == s || *end != '\0') return fail_type(x, k, val, expect);
        if (errno == ERANGE || v < d->lo || v > d->hi) return fail(x, val, "key '%s': expected %s, got %s", d->name, expect, s);
        *(int *)field = (int)v;
        break;
    }
    case K_U64: {
        if (!plain || is_null(val)) return fail_type(x, k, val, expect);
        char *end;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 10);
        if (end == s || *end != '\0' || !isdigit((unsigned char)s[0]) || errno == ERANGE)
            return fail_type(x, k, val, expect);
        *(uint64_t *)field = (uint64_t)v;
        break;
    }
    case K_FLOAT: {
        if (!plain || is_null(val)) return fail_type(x, k, val, expect);
        char *end;
        double v = strtod(s, &end);
        if (end == s || *end != '\0') return fail_type(x, k, val, expect);
        if (!in_range(k, v)) return fail(x, val, "key '%s': expected %s, got %s", d->name, expect, s);
        *(float *)field = (float)v;
        break;
    }
    case K_BOOL: {
        static const char *const yes[] = {"true", "yes", "on"}, *const no[] = {"false", "no", "off"};
        int v = -1;
        for (int i = 0; i < 3 && plain; i++) {
            if (strcasecmp(s, yes[i]) == 0) v = 1;
            if (strcasecmp(s, no[i]) == 0) v = 0;
        }
        if (v < 0) return fail_type(x, k, val, expect);
        *(int *)field = v;
        break;
    }
    case K_ENUM:
    case K_PRESET: {
        int v = -1;
        for (int i = 0; i < d->n_names; i++)
            if (d->names[i][0] && strcmp(s, d->names[i]) == 0) v = i;
        if (v < 0) {
            char got[128], hint[96] = "";
            for (int i = 0; i < d->n_names; i++)
                if (d->names[i][0] && !hint[0] && close_enough(s, d->names[i]))
                    snprintf(hint, sizeof hint, " (did you mean '%s'?)", d->names[i]);
            return fail(x, val, "key '%s': expected %s, got %s%s", d->name, expect, describe(val, got, sizeof got), hint);
        }
        if (d->kind == K_ENUM) {
            *(int *)field = v;
        } else {
            lb_linear_quant q;
            if (make_preset(v, &q) != LB_OK) return fail(x, val, "key '%s': %s", d->name, lb_errmsg());
            c->model.attn = q;
            c->model.ffn = q;
        }
        break;
    }
    case K_STR: {
        if (d->lo > 0 && (is_null(val) || s[0] == '\0')) return fail_type(x, k, val, expect);
        const char *v = is_null(val) ? "" : s;
        if (strlen(v) >= d->size)
            return fail(x, val, "key '%s': expected at most %zu bytes, got %zu", d->name, d->size - 1, strlen(v));
        snprintf(field, d->size, "%s", v);
        break;
    }
    case K_QSPEC:
        LB_TRY(parse_qspec(x, k, val, (lb_qspec *)field));
        break;
    case K_LIN_W:
    case K_LIN_A: {
        lb_linear_quant *q = (lb_linear_quant *)field;
        LB_TRY(parse_qspec(x, k, val, d->kind == K_LIN_W ? &q->weight : &q->activation));
        /* Explicit specs override the preset's recipe. */
        q->mode = lb_qspec_is_none(&q->weight) && lb_qspec_is_none(&q->activation) ? LB_LINEAR_FP : LB_LINEAR_CUSTOM;
        break;
    }
    default:
        return fail(x, val, "key '%s': internal error: unhandled kind", d->name);
    }

    /* Giving a key replaces what was derived from others. */
    if (strcmp(d->name, "model.n_kv_heads") == 0) c->meta.auto_n_kv_heads = 0;
    if (strcmp(d->name, "checkpoint.dir") == 0) c->meta.auto_ckpt_dir = 0;
    if (strcmp(d->name, "log.jsonl") == 0) c->meta.auto_jsonl = 0;
    if (strcmp(d->name, "optim.decay.state") == 0) c->meta.auto_decay_state = 0;
    if (strcmp(d->name, "optim.no_decay.state") == 0) c->meta.auto_no_decay_state = 0;
    if (strcmp(d->name, "data.path") == 0) c->data.n_paths = 0;
    resolve_derived(c);
    record_origin(x, k, key_node);
    return LB_OK;
}

/* Reads the keys of mapping `map`, a section named `section` ("" = the top). */
static lb_status walk_map(cfg_ctx *x, const char *section, yaml_node_t *map) {
    yaml_node_pair_t *pairs = map->data.mapping.pairs.start;
    int n = (int)(map->data.mapping.pairs.top - pairs);

    /* Check the names first: unknown and repeated keys. */
    for (int i = 0; i < n; i++) {
        yaml_node_t *kn = yaml_document_get_node(x->doc, pairs[i].key);
        if (kn->type != YAML_SCALAR_NODE) return fail(x, kn, "expected a key name in section '%s', got %s", section[0] ? section : "(top)", kn->type == YAML_MAPPING_NODE ? "a mapping" : "a list");
        char full[160];
        snprintf(full, sizeof full, "%s%s%s", section, section[0] ? "." : "", scalar_text(kn));
        int k = key_index(full);
        if (k < 0 || !is_child(k, section)) {
            char hint[128], known[512] = "";
            suggest_key(section, scalar_text(kn), hint, sizeof hint);
            if (!hint[0]) { /* nothing close: list what the section holds */
                size_t m = 0;
                for (int j = 0; j < N_KEYS && m < sizeof known; j++)
                    if (is_child(j, section))
                        m += (size_t)snprintf(known + m, sizeof known - m, "%s%s", m ? ", " : "", leaf_name(keys[j].name));
            }
            if (hint[0])
                return fail(x, kn, "unknown key '%s' (did you mean '%s'?)", full, hint);
            return fail(x, kn, "unknown key '%s' (%s holds: %s)", full, section[0] ? section : "the top level", known);
        }
        for (int j = 0; j < i; j++) {
            yaml_node_t *prev = yaml_document_get_node(x->doc, pairs[j].key);
            if (prev->type == YAML_SCALAR_NODE && strcmp(scalar_text(prev), scalar_text(kn)) == 0)
                return fail(x, kn, "key '%s' given twice (first on line %zu)", full, prev->start_mark.line + 1);
        }
        if (strcmp(full, "data.paths") == 0)
            for (int j = 0; j < n; j++) {
                yaml_node_t *other = yaml_document_get_node(x->doc, pairs[j].key);
                if (other->type == YAML_SCALAR_NODE && strcmp(scalar_text(other), "path") == 0)
                    return fail(x, kn, "key 'data.paths': give either data.path or data.paths, not both");
            }
    }

    /* Then the values, the preset before the specs that override it. */
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < n; i++) {
            yaml_node_t *kn = yaml_document_get_node(x->doc, pairs[i].key);
            char full[160];
            snprintf(full, sizeof full, "%s%s%s", section, section[0] ? "." : "", scalar_text(kn));
            int k = key_index(full);
            if ((keys[k].kind == K_PRESET) != (pass == 0)) continue;
            LB_TRY(set_key(x, k, kn, yaml_document_get_node(x->doc, pairs[i].value)));
        }
    }
    return LB_OK;
}

/* ---- public API -------------------------------------------------------------- */

void lb_config_defaults(lb_config *c) {
    memset(c, 0, sizeof *c); /* zero padding too, so sections compare with memcmp */
    lb_model_config *m = &c->model;
    lb_model_config_defaults(m); /* the model's own defaults; the config adds sizes and BitNet choices */
    m->vocab_size = 0;
    m->dim = 256;
    m->n_layers = 4;
    m->n_heads = 4;
    m->ffn_dim = 768;
    m->max_seq_len = 128;
    m->sub_norm = 1;
    make_preset(LB_PRESET_B158, &m->attn); /* a recipe: cannot fail */
    m->ffn = m->attn;
    make_preset(LB_PRESET_FP32, &m->head);
    m->embedding = lb_qspec_none();

    c->data.tokenizer = LB_TOKENIZER_BYTE;
    snprintf(c->data.path, sizeof c->data.path, "%s", "/usr/share/games/fortunes");
    c->data.val_fraction = 0.05f;

    lb_train_config *t = &c->train;
    t->steps = 600;
    t->batch_size = 16;
    t->seq_len = 128;
    t->grad_accum = 1;
    t->seed = 1337;
    t->threads = 0;
    t->gemm_precision = LB_PRECISION_AUTO; /* bf16 where native: docs/performance.md, "Loss at bf16 precision" */
    t->attention_precision = LB_PRECISION_AUTO; /* as gemm_precision resolves: lb_attention_precision_resolve */
    t->lr = 1.5e-3f;
    t->min_lr = 0.0f;
    t->warmup_steps = 50;
    t->schedule = LB_SCHED_TWO_STAGE;
    t->decay_at = 0.5f;
    t->lr_after = 0.667f;
    t->weight_decay = 0.1f;
    t->weight_decay_stage2 = 0.0f;
    t->grad_clip = 1.0f;
    t->quant_warmup_steps = 0;
    t->distill.temperature = 1.0f;
    t->distill.weight_kl = 0.0f;
    t->distill.weight_ce = 1.0f;
    t->distill.hidden_layer = -1;
    t->distill.weight_hidden = 0.0f;
    t->distill.relation_layer = -1;
    t->distill.weight_relation = 0.0f;

    lb_cfg_optim *o = &c->optim;
    o->type = LB_OPTIM_ADAMW;
    o->beta1 = 0.9f;
    o->beta2 = 0.95f;
    o->eps = 1e-8f;
    o->momentum = 0.9f;
    o->state = LB_STATE_FP32;
    o->grad = LB_GRAD_FP32;
    o->act_grad = LB_GRAD_FP32;
    o->no_decay_on_norms_and_embeddings = 1;
    o->decay.state = o->no_decay.state = LB_STATE_FP32;
    o->decay.lr_scale = o->no_decay.lr_scale = 1.0f;

    c->eval.interval = 100;
    c->eval.batches = 8;
    c->checkpoint.interval = 0;
    c->checkpoint.keep_last = 2;
    c->log.interval = 10;
    c->log.sample_tokens = 200;
    snprintf(c->log.sample_prompt, sizeof c->log.sample_prompt, "%s", "The ");

    snprintf(c->meta.name, sizeof c->meta.name, "%s", "default");
    c->meta.auto_n_kv_heads = 1;
    c->meta.auto_ckpt_dir = 1;
    c->meta.auto_jsonl = 1;
    c->meta.auto_decay_state = 1;
    c->meta.auto_no_decay_state = 1;
    resolve_derived(c);
}

/* "configs/bitnet-b158-tiny.yaml" → "bitnet-b158-tiny", keeping only
 * characters that are safe in a directory name. */
static void config_name(const char *path, char *out, size_t size) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t n = strlen(base);
    const char *dot = strrchr(base, '.');
    if (dot && dot != base) n = (size_t)(dot - base);
    size_t j = 0;
    for (size_t i = 0; i < n && j + 1 < size; i++) {
        unsigned char ch = (unsigned char)base[i];
        out[j++] = isalnum(ch) || ch == '-' || ch == '_' || ch == '.' ? (char)ch : '_';
    }
    out[j] = '\0';
    if (j == 0) snprintf(out, size, "%s", "default");
}

lb_status lb_config_load_string(const char *yaml, const char *name_for_errors, lb_config *c) {
    const char *name = name_for_errors && name_for_errors[0] ? name_for_errors : "<string>";
    lb_config_defaults(c);
    snprintf(c->source, sizeof c->source, "%s", name);
    config_name(name, c->meta.name, sizeof c->meta.name);
    resolve_derived(c);
    if (!yaml) return lb_error(LB_EINVAL, "config '%s': no text", name);

    yaml_parser_t parser;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&parser)) return lb_error(LB_ENOMEM, "config '%s': cannot start the YAML parser", name);
    yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, strlen(yaml));
    cfg_ctx x = {c, &doc, name, NULL};
    lb_status st = LB_OK;
    if (!yaml_parser_load(&parser, &doc)) {
        st = lb_error(LB_ECONFIG, "%s:%zu:%zu: YAML syntax error: %s%s%s", name, parser.problem_mark.line + 1,
                      parser.problem_mark.column + 1, parser.problem ? parser.problem : "unreadable",
                      parser.context ? " " : "", parser.context ? parser.context : "");
        yaml_parser_delete(&parser);
        return st;
    }
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root && !is_null(root)) {
        if (root->type != YAML_MAPPING_NODE) {
            char got[128];
            st = fail(&x, root, "expected a mapping of sections (model, data, train, optim, eval, checkpoint, log), got %s",
                      describe(root, got, sizeof got));
        } else {
            st = walk_map(&x, "", root);
        }
    }
    yaml_document_delete(&doc);
    if (st == LB_OK && root) {
        /* A second document would be silently ignored: refuse it. */
        if (!yaml_parser_load(&parser, &doc)) {
            st = lb_error(LB_ECONFIG, "%s:%zu:%zu: YAML syntax error: %s", name, parser.problem_mark.line + 1,
                          parser.problem_mark.column + 1, parser.problem ? parser.problem : "unreadable");
        } else {
            yaml_node_t *second = yaml_document_get_root_node(&doc);
            if (second) st = fail(&x, second, "expected one YAML document, found a second one here");
            yaml_document_delete(&doc);
        }
    }
    yaml_parser_delete(&parser);
    return st;
}

/* Bytes of the UTF-8 sequence starting at s[0] (of n left), or 0 when it is
 * not valid UTF-8 (bad lead or continuation byte, truncated, overlong, a
 * surrogate, beyond U+10FFFF). */
static size_t utf8_length(const unsigned char *s, size_t n) {
    size_t len = s[0] < 0x80 ? 1 : s[0] >= 0xC2 && s[0] <= 0xDF ? 2 : s[0] >= 0xE0 && s[0] <= 0xEF ? 3
                 : s[0] >= 0xF0 && s[0] <= 0xF4                  ? 4
                                                                 : 0;
    if (len == 0 || len > n) return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    if ((s[0] == 0xE0 && s[1] < 0xA0) || (s[0] == 0xED && s[1] > 0x9F) || (s[0] == 0xF0 && s[1] < 0x90) ||
        (s[0] == 0xF4 && s[1] > 0x8F))
        return 0;
    return len;
}

/* A config is text: UTF-8 without control characters other than tab, CR and
 * LF (YAML's printable set also allows NEL, U+0085). A NUL would end the text
 * early and a binary file would be read as an empty config, so anything else
 * is refused here, naming where. */
static lb_status check_text(const char *path, const unsigned char *s, size_t n) {
    size_t line = 1, column = 1;
    for (size_t i = 0; i < n; column++) {
        size_t len = utf8_length(s + i, n - i);
        if (len == 0)
            return lb_error(LB_ECONFIG, "%s:%zu:%zu: not UTF-8 text: byte 0x%02x at byte offset %zu is not valid UTF-8",
                            path, line, column, s[i], i);
        unsigned code = len == 1 ? s[i] : len == 2 ? (s[i] & 0x1Fu) << 6 | (s[i + 1] & 0x3Fu) : 0xA0;
        if ((code < 0x20 && code != '\t' && code != '\n' && code != '\r') || (code >= 0x7F && code <= 0x9F && code != 0x85))
            return lb_error(LB_ECONFIG,
                            "%s:%zu:%zu: not a text file: control character U+%04X at byte offset %zu (a config is "
                            "UTF-8 YAML text)",
                            path, line, column, code, i);
        if (s[i] == '\n') line++, column = 0;
        i += len;
    }
    return LB_OK;
}

lb_status lb_config_load_file(const char *path, lb_config *c) {
    lb_config_defaults(c);
    FILE *f = fopen(path, "rb");
    if (!f) return lb_error(LB_EIO, "config '%s': cannot open: %s", path, strerror(errno));
    size_t cap = 4096, n = 0;
    char *text = malloc(cap);
    while (text) {
        n += fread(text + n, 1, cap - 1 - n, f);
        if (n < cap - 1) break;
        char *bigger = realloc(text, cap * 2);
        if (!bigger) free(text);
        text = bigger;
        cap *= 2;
    }
    int read_error = ferror(f);
    fclose(f);
    if (!text) return lb_error(LB_ENOMEM, "config '%s': out of memory reading it", path);
    if (read_error) {
        free(text);
        return lb_error(LB_EIO, "config '%s': read error", path);
    }
    text[n] = '\0';
    lb_status st = check_text(path, (const unsigned char *)text, n);
    if (st == LB_OK) st = lb_config_load_string(text, path, c);
    free(text);
    return st;
}

static void trim(const char *s, size_t n, char *out, size_t size) {
    while (n > 0 && isspace((unsigned char)s[0])) s++, n--;
    while (n > 0 && isspace((unsigned char)s[n - 1])) n--;
    if (n >= size) n = size - 1;
    memcpy(out, s, n);
    out[n] = '\0';
}

lb_status lb_config_set(lb_config *c, const char *assignment) {
    const char *eq = strchr(assignment, '=');
    if (!eq) return lb_error(LB_ECONFIG, "--set '%s': expected KEY=VALUE, e.g. train.lr=1e-3", assignment);
    char key[160], value[2048];
    trim(assignment, (size_t)(eq - assignment), key, sizeof key);
    trim(eq + 1, strlen(eq + 1), value, sizeof value);
    if (!key[0]) return lb_error(LB_ECONFIG, "--set '%s': expected a key before '=', e.g. train.lr=1e-3", assignment);

    int k = key_index(key);
    if (k < 0) {
        /* Name the first unknown part: "model.quant.atn.weight" → model.quant.atn.
         * Each prefix of `key` up to a dot is a section name to look up. */
        char prefix[160], section[160] = "";
        size_t start = 0;
        for (;;) {
            const char *dot = strchr(key + start, '.');
            size_t end = dot ? (size_t)(dot - key) : strlen(key);
            memcpy(prefix, key, end);
            prefix[end] = '\0';
            int j = key_index(prefix);
            if (j < 0 || !dot || keys[j].kind != K_SECTION) {
                char hint[128];
                suggest_key(section, prefix + start, hint, sizeof hint);
                if (j >= 0) /* a leaf followed by more parts */
                    return lb_error(LB_ECONFIG, "--set '%s': key '%s' has no sub-keys", assignment, prefix);
                if (hint[0])
                    return lb_error(LB_ECONFIG, "--set '%s': unknown key '%s' (did you mean '%s'?)", assignment, prefix,
                                    hint);
                return lb_error(LB_ECONFIG, "--set '%s': unknown key '%s'", assignment, prefix);
            }
            memcpy(section, prefix, end + 1);
            start = end + 1;
        }
    }

    /* The value as a one-node document: literal text, or YAML for [ { " '. */
    yaml_document_t doc;
    cfg_ctx x = {NULL, &doc, NULL, assignment};
    if (value[0] && strchr("[{\"'", value[0])) {
        yaml_parser_t parser;
        if (!yaml_parser_initialize(&parser)) return lb_error(LB_ENOMEM, "--set '%s': cannot start the YAML parser", assignment);
        yaml_parser_set_input_string(&parser, (const unsigned char *)value, strlen(value));
        if (!yaml_parser_load(&parser, &doc)) {
            lb_status st = lb_error(LB_ECONFIG, "--set '%s': key '%s': YAML syntax error in the value at column %zu: %s",
                                    assignment, key, parser.problem_mark.column + 1,
                                    parser.problem ? parser.problem : "unreadable");
            yaml_parser_delete(&parser);
            return st;
        }
        yaml_parser_delete(&parser);
    } else {
        if (!yaml_document_initialize(&doc, NULL, NULL, NULL, 1, 1) ||
            !yaml_document_add_scalar(&doc, NULL, (yaml_char_t *)value, (int)strlen(value), YAML_PLAIN_SCALAR_STYLE)) {
            yaml_document_delete(&doc);
            return lb_error(LB_ENOMEM, "--set '%s': out of memory", assignment);
        }
    }
    /* Work on a copy so that a failure halfway through a mapping changes nothing. */
    lb_config *work = malloc(sizeof *work);
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    lb_status st;
    if (!work) {
        st = lb_error(LB_ENOMEM, "--set '%s': out of memory", assignment);
    } else if (!root) {
        st = lb_error(LB_ECONFIG, "--set '%s': key '%s': expected a value after '='", assignment, key);
    } else {
        *work = *c;
        x.c = work;
        st = set_key(&x, k, NULL, root);
        if (st == LB_OK) *c = *work;
    }
    free(work);
    yaml_document_delete(&doc);
    return st;
}

/* ---- cross-field checks ---------------------------------------------------- */

/* "FILE:LINE:COL: " of key `k`, or of `other` when that was given after `k`
 * (the change that broke the rule is the later one). */
static void origin_of(const lb_config *c, int k, int other, char *buf, size_t size) {
    const lb_config_origin *o = &c->meta.origin[k];
    if (other >= 0 && c->meta.origin[other].order > o->order) o = &c->meta.origin[other];
    if (o->set_arg[0])
        snprintf(buf, size, "--set '%s': ", o->set_arg);
    else if (o->line)
        snprintf(buf, size, "%s:%d:%d: ", c->source, o->line, o->column);
    else if (c->source[0])
        snprintf(buf, size, "%s: ", c->source);
    else
        buf[0] = '\0';
}

static lb_status bad(const lb_config *c, const char *key, const char *other, const char *fmt, ...) LB_PRINTF(4, 5);
static lb_status bad(const lb_config *c, const char *key, const char *other, const char *fmt, ...) {
    char pos[640], msg[LB_ERRMSG_MAX];
    origin_of(c, key_index(key), other ? key_index(other) : -1, pos, sizeof pos);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return lb_error(LB_ECONFIG, "%skey '%s': %s", pos, key, msg);
}

/* Row-wise scales in groups (or MX blocks of 32) need rows that split evenly. */
static lb_status check_groups(const lb_config *c, const char *key, const lb_qspec *q, int width, const char *width_key) {
    int g = q->format == LB_QF_MXFP8 || q->format == LB_QF_MXFP4 ? 32 : q->gran == LB_QG_GROUP ? q->group : 0;
    if (g > 0 && width % g != 0)
        return bad(c, key, "model.quant.preset", "expected groups of %d elements to divide the input width %s (%d)", g,
                   width_key, width);
    return LB_OK;
}

lb_status lb_config_validate(const lb_config *c) {
    /* Every key in range: a config built in code gets the file's checks. */
    for (int k = 0; k < N_KEYS; k++) {
        const key_desc *d = &keys[k];
        const char *field = (const char *)c + d->off;
        char expect[256];
        if (d->kind == K_INT && (*(const int *)field < d->lo || *(const int *)field > d->hi))
            return bad(c, d->name, NULL, "expected %s, got %d", d->expect, *(const int *)field);
        if (d->kind == K_FLOAT && !in_range(k, *(const float *)field))
            return bad(c, d->name, NULL, "expected %s, got %g", d->expect, (double)*(const float *)field);
        if (d->kind == K_ENUM) {
            int v = *(const int *)field;
            if (v < 0 || v >= d->n_names || !d->names[v][0])
                return bad(c, d->name, NULL, "expected %s, got the value %d", enum_expect(k, expect, sizeof expect), v);
        }
        if (d->kind == K_STR && d->lo > 0 && !field[0] && !(strcmp(d->name, "data.path") == 0 && c->data.n_paths > 0))
            return bad(c, d->name, NULL, "expected %s, got an empty string", d->expect);
    }
    const lb_model_config *m = &c->model;
    if (m->dim % m->n_heads != 0)
        return bad(c, "model.n_heads", "model.dim", "expected a positive integer dividing model.dim (%d), got %d", m->dim,
                   m->n_heads);
    if ((m->dim / m->n_heads) % 2 != 0)
        return bad(c, "model.n_heads", "model.dim",
                   "expected an even head dim model.dim / model.n_heads for RoPE (it rotates pairs), got %d / %d = %d",
                   m->dim, m->n_heads, m->dim / m->n_heads);
    if (m->n_heads % m->n_kv_heads != 0)
        return bad(c, "model.n_kv_heads", "model.n_heads",
                   "expected a positive integer dividing model.n_heads (%d), got %d", m->n_heads, m->n_kv_heads);
    if (c->data.tokenizer == LB_TOKENIZER_BPE && c->data.vocab_size < 257)
        return bad(c, "data.vocab_size", "data.tokenizer",
                   "expected the vocabulary to train the bpe tokenizer to, 257..16777216 (e.g. 4096), got %d",
                   c->data.vocab_size);
    if (c->data.tokenizer == LB_TOKENIZER_HF && !c->data.tokenizer_path[0])
        return bad(c, "data.tokenizer_path", "data.tokenizer", "expected the tokenizer.json of the hf tokenizer, got \"\"");
    if (c->data.tokenizer == LB_TOKENIZER_BPE && m->vocab_size != 0 && m->vocab_size < c->data.vocab_size)
        return bad(c, "model.vocab_size", "data.vocab_size",
                   "expected 0 (from the tokenizer) or at least data.vocab_size (%d) for the bpe tokenizer, got %d",
                   c->data.vocab_size, m->vocab_size);
    if (c->data.tokenizer == LB_TOKENIZER_BYTE && m->vocab_size != 0 && m->vocab_size < 256)
        return bad(c, "model.vocab_size", "data.tokenizer",
                   "expected 0 (from the tokenizer) or at least 256 for the byte tokenizer, got %d", m->vocab_size);
    LB_TRY(check_groups(c, "model.quant.attn.weight", &m->attn.weight, m->dim, "model.dim"));
    LB_TRY(check_groups(c, "model.quant.attn.activation", &m->attn.activation, m->dim, "model.dim"));
    LB_TRY(check_groups(c, "model.quant.ffn.weight", &m->ffn.weight, m->dim, "model.dim"));
    LB_TRY(check_groups(c, "model.quant.ffn.weight", &m->ffn.weight, m->ffn_dim, "model.ffn_dim"));
    LB_TRY(check_groups(c, "model.quant.ffn.activation", &m->ffn.activation, m->dim, "model.dim"));
    LB_TRY(check_groups(c, "model.quant.ffn.activation", &m->ffn.activation, m->ffn_dim, "model.ffn_dim"));
    LB_TRY(check_groups(c, "model.quant.head.weight", &m->head.weight, m->dim, "model.dim"));
    LB_TRY(check_groups(c, "model.quant.head.activation", &m->head.activation, m->dim, "model.dim"));
    LB_TRY(check_groups(c, "model.quant.embedding", &m->embedding, m->dim, "model.dim"));
    const char *lsq_part = NULL;
    if (lb_model_config_check_lsq(m, &lsq_part) != LB_OK) {
        char key[64], why[LB_ERRMSG_MAX];
        snprintf(key, sizeof key, "model.quant.%s", lsq_part);
        snprintf(why, sizeof why, "%s", lb_errmsg());
        return bad(c, key, strncmp(lsq_part, "head", 4) == 0 ? "model.tie_embeddings" : NULL, "%s", why);
    }

    const lb_train_config *t = &c->train;
    if (t->seq_len > m->max_seq_len)
        return bad(c, "train.seq_len", "model.max_seq_len", "expected at most model.max_seq_len (%d), got %d",
                   m->max_seq_len, t->seq_len);
    if (t->min_lr > t->lr)
        return bad(c, "train.min_lr", "train.lr", "expected at most train.lr (%g), got %g", (double)t->lr,
                   (double)t->min_lr);
    if (t->warmup_steps > t->steps)
        return bad(c, "train.warmup_steps", "train.steps", "expected at most train.steps (%d), got %d", t->steps,
                   t->warmup_steps);
    if (c->data.n_paths < 0 || c->data.n_paths > LB_CONFIG_MAX_PATHS)
        return bad(c, "data.paths", NULL, "expected at most %d files, got %d", LB_CONFIG_MAX_PATHS, c->data.n_paths);
    const lb_distill_config *d = &t->distill;
    if ((d->weight_kl > 0.0f || d->weight_hidden > 0.0f || d->weight_relation > 0.0f) && !d->teacher[0] &&
        !t->init_from[0])
        return bad(c, "train.distill.weight_kl", "train.init_from",
                   "distillation needs a teacher: train.distill.teacher or train.init_from");
    return LB_OK;
}

/* ---- back to YAML ---------------------------------------------------------- */

typedef struct sbuf {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) LB_PRINTF(2, 3);
static void sb_printf(sbuf *b, const char *fmt, ...) {
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int w = vsnprintf(b->p + b->n, b->cap - b->n, fmt, ap);
        va_end(ap);
        if (w < 0) { b->oom = 1; return; }
        if ((size_t)w < b->cap - b->n) { b->n += (size_t)w; return; }
        char *bigger = realloc(b->p, 2 * b->cap + (size_t)w);
        if (!bigger) { b->oom = 1; return; }
        b->p = bigger;
        b->cap = 2 * b->cap + (size_t)w;
    }
}

/* A double-quoted YAML string that reads back byte for byte. */
static void sb_quoted(sbuf *b, const char *s) {
    sb_printf(b, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') sb_printf(b, "\\%c", *p);
        else if (*p == '\n') sb_printf(b, "\\n");
        else if (*p == '\t') sb_printf(b, "\\t");
        else if (*p < 0x20 || *p == 0x7f) sb_printf(b, "\\x%02x", *p);
        else sb_printf(b, "%c", *p);
    }
    sb_printf(b, "\"");
}

/* The shortest decimal that reads back as the same float. */
static void sb_float(sbuf *b, float v) {
    char buf[48];
    if (v == floorf(v) && fabsf(v) < 1e9f) { /* whole numbers as 10000.0, not 1e+04 */
        sb_printf(b, "%.1f", (double)v);
        return;
    }
    for (int p = 1; p <= 9; p++) {
        snprintf(buf, sizeof buf, "%.*g", p, (double)v);
        if ((float)strtod(buf, NULL) == v) break;
    }
    sb_printf(b, "%s", buf);
}

static void sb_qspec(sbuf *b, const lb_qspec *q) {
    char buf[96];
    lb_qspec_format(q, buf, sizeof buf);
    sb_printf(b, "%s", buf);
}

/* Which preset describes attn (or else ffn); fp32 when both are custom. */
static int preset_of(const lb_model_config *m) {
    const lb_linear_quant *q = m->attn.mode != LB_LINEAR_CUSTOM ? &m->attn : &m->ffn;
    return q->mode != LB_LINEAR_CUSTOM ? (int)q->mode : LB_PRESET_FP32;
}

lb_status lb_config_to_yaml(const lb_config *c, char **out) {
    *out = NULL;
    sbuf b = {malloc(4096), 0, 4096, 0};
    if (!b.p) return lb_error(LB_ENOMEM, "config: out of memory printing it");
    b.p[0] = '\0';

    int preset = preset_of(&c->model);
    lb_linear_quant pq;
    make_preset(preset, &pq);
    int skip_attn = linear_equal(&c->model.attn, &pq), skip_ffn = linear_equal(&c->model.ffn, &pq);

    sb_printf(&b, "# lowbit config");
    if (c->source[0]) sb_printf(&b, " from %s", c->source);
    sb_printf(&b, ", resolved: every key with defaults filled in\n");
    for (int k = 0; k < N_KEYS; k++) {
        const key_desc *d = &keys[k];
        const char *field = (const char *)c + d->off;
        if ((skip_attn && strncmp(d->name, "model.quant.attn", 16) == 0) ||
            (skip_ffn && strncmp(d->name, "model.quant.ffn", 15) == 0))
            continue;
        if ((d->kind == K_STR && strcmp(d->name, "data.path") == 0 && c->data.n_paths > 0) ||
            (d->kind == K_PATHS && c->data.n_paths == 0))
            continue;
        int depth = 0;
        for (const char *p = d->name; *p; p++) depth += *p == '.';
        sb_printf(&b, "%*s%s:", 2 * depth, "", leaf_name(d->name));
        switch (d->kind) {
        case K_SECTION: break;
        case K_INT: sb_printf(&b, " %d", *(const int *)field); break;
        case K_U64: sb_printf(&b, " %llu", (unsigned long long)*(const uint64_t *)field); break;
        case K_FLOAT: sb_printf(&b, " "); sb_float(&b, *(const float *)field); break;
        case K_BOOL: sb_printf(&b, " %s", *(const int *)field ? "true" : "false"); break;
        case K_ENUM: {
            int v = *(const int *)field;
            sb_printf(&b, " %s", v >= 0 && v < d->n_names ? d->names[v] : "?");
            break;
        }
        case K_STR: sb_printf(&b, " "); sb_quoted(&b, field); break;
        case K_PATHS:
            sb_printf(&b, " [");
            for (int i = 0; i < c->data.n_paths; i++) {
                if (i) sb_printf(&b, ", ");
                sb_quoted(&b, c->data.paths[i]);
            }
            sb_printf(&b, "]");
            break;
        case K_QSPEC: sb_printf(&b, " "); sb_qspec(&b, (const lb_qspec *)field); break;
        case K_LIN_W: sb_printf(&b, " "); sb_qspec(&b, &((const lb_linear_quant *)field)->weight); break;
        case K_LIN_A: sb_printf(&b, " "); sb_qspec(&b, &((const lb_linear_quant *)field)->activation); break;
        case K_PRESET:
            sb_printf(&b, " %s", lb_quant_preset_names[preset]);
            if (preset != LB_PRESET_FP32) {
                sb_printf(&b, "  # attn and ffn: weight ");
                sb_qspec(&b, &pq.weight);
                sb_printf(&b, ", activation ");
                sb_qspec(&b, &pq.activation);
            }
            break;
        }
        sb_printf(&b, "\n");
    }
    if (b.oom) {
        free(b.p);
        return lb_error(LB_ENOMEM, "config: out of memory printing it");
    }
    *out = b.p;
    return LB_OK;
}

