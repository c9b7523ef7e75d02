/* lowbit import hf DIR -o FILE.h5
 * A Hugging Face model directory (config.json, model.safetensors or shards,
 * tokenizer.json) into a lowbit weights checkpoint that eval, sample,
 * train.init_from, quantize and export read. interop/hf_import.h does the work. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "interop/hf_import.h"
#include "io/checkpoint.h"
#include "io/config.h"
#include "trainer/state.h"

static const char IMPORT_USAGE[] =
    "usage: lowbit import hf DIR -o FILE.h5\n"
    "\n"
    "Imports a Hugging Face LlamaForCausalLM or BitNetForCausalLM directory (config.json,\n"
    "model.safetensors or model.safetensors.index.json with its shards, tokenizer.json) into a\n"
    "lowbit checkpoint: the config's model section, the weights and the tokenizer. Train from it\n"
    "with train.init_from (the directory itself works too); evaluate it with\n"
    "`lowbit eval FILE.h5 --set data.path=TEXT`. See docs/interop.md.\n";

/* The config stored with the weights: defaults, the model's section, its tokenizer. */
static lb_status make_config(const char *dir, const lb_model *m, char **yaml) {
    lb_config cfg;
    lb_config_defaults(&cfg);
    cfg.model = m->cfg;
    cfg.data.tokenizer = LB_TOKENIZER_HF;
    char real[PATH_MAX];
    if (!realpath(dir, real)) snprintf(real, sizeof real, "%s", dir);
    if ((size_t)snprintf(cfg.data.tokenizer_path, sizeof cfg.data.tokenizer_path, "%s/tokenizer.json", real) >=
        sizeof cfg.data.tokenizer_path)
        return lb_error(LB_EINVAL, "%s: path too long", dir);
    if (cfg.train.seq_len > cfg.model.max_seq_len) cfg.train.seq_len = cfg.model.max_seq_len;
    LB_TRY(lb_config_validate(&cfg));
    return lb_config_to_yaml(&cfg, yaml);
}

int cmd_import(int argc, char **argv) {
    const char *dir = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(IMPORT_USAGE, stdout);
            return LB_EXIT_OK;
        }
        if (!strcmp(argv[i], "-o") || !strcmp(argv[i], "--output")) {
            if (++i >= argc) {
                fprintf(stderr, "lowbit import: %s needs a file name\n", argv[i - 1]);
                return LB_EXIT_USAGE;
            }
            out = argv[i];
        } else if (i == 1 && !strcmp(argv[i], "hf")) {
            continue;
        } else if (argv[i][0] == '-' || dir || i == 1) {
            fprintf(stderr, "lowbit import: unexpected argument '%s'\n\n%s", argv[i], IMPORT_USAGE);
            return LB_EXIT_USAGE;
        } else {
            dir = argv[i];
        }
    }
    if (!dir || !out) {
        fprintf(stderr, "lowbit import: %s\n\n%s", dir ? "no output file (-o FILE.h5)" : "no model directory",
                IMPORT_USAGE);
        return LB_EXIT_USAGE;
    }
    lb_hf_config h;
    lb_model *m;
    lb_tokenizer *tok;
    if (lb_hf_import(dir, &h, &m, &tok) != LB_OK) return cli_fail("import");
    char *yaml = NULL;
    lb_ckpt *c = NULL;
    lb_status s = make_config(dir, m, &yaml);
    if (s == LB_OK) s = lb_ckpt_create(out, &c);
    if (s == LB_OK && (s = lb_state_write_weights(yaml, m, tok, c)) != LB_OK) lb_ckpt_abort(c);
    else if (s == LB_OK) s = lb_ckpt_commit(c);
    if (s == LB_OK)
        printf("imported %s (%s weights, %d layers, d %d, %d heads / %d kv, ffn %d, vocab %d, %s head, %zu "
               "parameters; %s tokenizer of %d tokens) into %s\n",
               lb_hf_arch_names[h.arch], lb_hf_quant_names[h.quant], h.num_hidden_layers, h.hidden_size,
               h.num_attention_heads, h.num_key_value_heads, h.intermediate_size, h.vocab_size,
               h.tie_word_embeddings ? "tied" : "untied", m->n_elements, lb_tokenizer_kind_name(tok->kind),
               tok->vocab_size, out);
    free(yaml);
    lb_model_free(m);
    lb_tokenizer_free(tok);
    return s == LB_OK ? LB_EXIT_OK : cli_fail("import");
}
