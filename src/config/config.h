// config.h — the run configuration: one struct, filled from defaults, a JSON file and dotted
// command-line overrides, all typed and range-checked by one schema table (config.c). The key
// names are an interface: shell scripts sweep them. docs/config.md documents every key.
#ifndef AOE_CONFIG_H
#define AOE_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#define CFG_STR 512
#define CFG_MAX_KEYS 128  // schema size bound (config.c checks it)

// Where a key's value came from (Config.origin, indexed like the schema table).
enum { CFG_FROM_DEFAULT = 0, CFG_FROM_FILE = 1, CFG_FROM_OVERRIDE = 2 };

typedef struct {
    char type[16];        // dense | moe | aoe
    int d_ff;             // dense width / MoE expert width D
    int n_experts;        // n
    int top_k;            // K
    int d_low;            // AoE rank r
    int d_wide;           // AoE expert width; 0 = parameter-matched to an MoE of width d_ff (Eq.5)
    int every;            // MoE/AoE in every k-th layer (others dense); 1 = every layer
    int first;            // index of the first MoE layer
    char gate[16];        // topk_softmax (softmax over the K selected) | softmax (full, no renorm)
    float lb_coef;        // Switch load-balancing loss weight alpha
    int lb_div_k;         // divide the balancing loss by K (megablocks convention)
    float z_loss;         // router z-loss weight (router MoE only)
    char select[16];      // topk | topp | expert_choice | etr (method, see src/select)
    float top_p;          // Top-P threshold
    float topp_ent_coef;  // Top-P entropy loss weight
    float capacity;       // capacity factor (0 = dropless) for token choice; expert choice: factor
    float erc_coef;       // ERC loss weight (0 = off)
    float erc_alpha;      // ERC alpha
    int erc_detach_router;
    int erc_allow_alpha_gt1;
    float etr_cap_start, etr_cap_end;  // ETR capacity factor schedule (linear over training)
    float etr_loc_coef;   // ETR locality loss weight mu
    int etr_groups;       // ETR expert/token groups ("nodes")
    char etr_gate[16];    // grap | cosine
    float etr_tau;        // ETR expert-side threshold on the summed affinity (1 = off)
    int etr_renorm;       // ETR gates renormalised over the kept experts (default: the paper's full softmax)
    int erc_log;          // log ε and the clean-router ERC loss in training stats without training on it
    char aoe_norm[8];     // AoE: the norm that ranks experts, l2 | l1 | linf
    char aoe_norm_at[8];  // AoE: where it is taken, down | proj | silu | act | output
    int gate_rank;        // router MoE: experts' W_g factorised as W_down·W_up of this rank (0 = full)
    int router_hidden;    // router MoE: two-layer linear router of this hidden width (0 = one layer)
    char score_override[16];  // router MoE, evaluation: none | norm* (router-free probe) | random, see docs/select.md
} FfnConfig;

typedef struct {
    // model
    int vocab_size;       // 0 = take it from the tokenizer / shards
    int d_model, n_layer, n_head, seq_len;
    int tie_embeddings;
    float rope_theta, norm_eps, init_std;
    FfnConfig ffn;
    // train
    int steps, batch_size, grad_accum, warmup, log_every, eval_every, eval_batches, ckpt_every,
        keep_ckpts, threads, expert_parallel;
    int overlap_grads;        // MPI: start summing each block's gradient while the backward goes on
    float lr, min_lr, beta1, beta2, eps, weight_decay, grad_clip;
    uint64_t seed;
    char precision[8];    // auto | fp32 | bf16 (train writes the resolved choice to config.json)
    int skip_nonfinite;       // skip (and count) steps with a non-finite loss or gradient norm
    char optimizer[CFG_STR];  // adamw | sgd (src/train/optim.c table)
    char init_from[CFG_STR];  // start from this checkpoint's weights ("" = fresh init)
    int init_keep_optim;      // ... and its optimizer state
    // data
    char train_path[CFG_STR], val_path[CFG_STR], tokenizer[CFG_STR];
    // run
    char out[CFG_STR];
    int ckpt_compress;
    unsigned char origin[CFG_MAX_KEYS];  // CFG_FROM_* per schema key, for messages
} Config;

// Fills defaults. Then config_load_file, then config_set for each override, then
// model_validate_config (model.h).
void config_defaults(Config *c);
// Parses a JSON file into c; on any problem prints one line (file, key path or line:col, what was
// expected) and exits 2.
void config_load_file(Config *c, const char *path);
// Applies "key.path=value"; `src` names where it came from for messages. Exits 2 on error.
void config_set(Config *c, const char *assignment, const char *src);
// The same for a key path and its value as text, without exiting: 0, or -1 if the key is unknown
// or the value invalid (c unchanged). For readers of configs written by other versions (aoe report).
int config_try_set(Config *c, const char *path, const char *value);
// Cross-key checks of the training keys (min_lr <= lr). Exits 2 naming the keys. The model's
// rules (heads, FFN kind, score source, selection method) live with their code: callers use
// model_validate_config (model.h), which runs this first.
void config_validate(const Config *c, const char *src);
// For a message naming keys: " (key from FILE, key from the command line, ...)" for every key path
// it names, so a rule broken by an override is not blamed on the file. "" if it names none.
void config_origins(const Config *c, const char *msg, const char *file, char *out, size_t n);
// Resolved config as pretty JSON (caller frees).
char *config_to_json(const Config *c);
// Parses JSON text (e.g. from a checkpoint) strictly into c; returns 0 or -1 with err filled.
int config_from_json_text(Config *c, const char *text, const char *src, char *err, int errlen);
// Markdown table of every key (type, default, range, meaning): docs/config.md is generated from it.
void config_print_doc(void);
// Derived: the expert width of a layer with a factorised gate branch (AoE, or a router MoE with
// gate_rank > 0): d_wide, or Eq.5 rounded when 0, with r = d_low (AoE) or gate_rank (MoE).
int ffn_d_wide(const Config *c);
// Is layer l an MoE/AoE layer?
int ffn_is_sparse_layer(const Config *c, int l);

#endif
