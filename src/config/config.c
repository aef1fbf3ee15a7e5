// config.c — one schema table drives defaults, JSON parsing, dotted overrides, range checks, the
// resolved-config JSON and docs/config.md, so a key can never be parsed one way and documented
// another. Every error is one line: file, key path (or line:col), what was expected; exit 2.
#include "config/config.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "util/common.h"
#include "util/json.h"

typedef enum { T_INT, T_FLOAT, T_BOOL, T_STR, T_ENUM, T_U64 } KeyType;

typedef struct {
    const char *path;
    KeyType type;
    size_t off;
    const char *def;       // default as text (parsed with the same code as overrides)
    double min, max;       // inclusive range for numbers
    const char *choices;   // T_ENUM: '|'-separated
    const char *doc;
} Key;

#define O(f) offsetof(Config, f)
#define BIG 1e18
static const Key keys[] = {
    {"model.vocab_size", T_INT, O(vocab_size), "0", 0, 1 << 20, 0, "vocabulary size; 0 = take it from the tokenizer"},
    {"model.d_model", T_INT, O(d_model), "128", 8, 16384, 0, "model width d"},
    {"model.n_layer", T_INT, O(n_layer), "4", 1, 256, 0, "number of transformer blocks"},
    {"model.n_head", T_INT, O(n_head), "4", 1, 1024, 0, "attention heads (d_model must be divisible; head dim even for RoPE)"},
    {"model.seq_len", T_INT, O(seq_len), "128", 2, 65536, 0, "context length in tokens"},
    {"model.tie_embeddings", T_BOOL, O(tie_embeddings), "true", 0, 1, 0, "LM head shares the token embedding matrix"},
    {"model.rope_theta", T_FLOAT, O(rope_theta), "10000", 1, BIG, 0, "RoPE base frequency"},
    {"model.norm_eps", T_FLOAT, O(norm_eps), "1e-5", 1e-12, 1, 0, "RMSNorm epsilon"},
    {"model.init_std", T_FLOAT, O(init_std), "0.02", 1e-6, 10, 0, "std of N(0, s^2) weight init (output projections scaled by 1/sqrt(2 n_layer))"},
    {"model.ffn.type", T_ENUM, O(ffn.type), "dense", 0, 0, "dense|moe|aoe", "feed-forward kind"},
    {"model.ffn.d_ff", T_INT, O(ffn.d_ff), "512", 1, 1 << 20, 0, "dense SwiGLU width, or MoE expert width D"},
    {"model.ffn.n_experts", T_INT, O(ffn.n_experts), "8", 1, 1024, 0, "experts per MoE/AoE layer (n)"},
    {"model.ffn.top_k", T_INT, O(ffn.top_k), "2", 1, 1024, 0, "experts per token (K)"},
    {"model.ffn.d_low", T_INT, O(ffn.d_low), "64", 1, 1 << 20, 0, "AoE rank r of W_down (must be < d_model)"},
    {"model.ffn.d_wide", T_INT, O(ffn.d_wide), "0", 0, 1 << 20, 0, "AoE expert width; 0 = parameter-matched to an MoE of width d_ff (AoE Eq.5, rounded)"},
    {"model.ffn.every", T_INT, O(ffn.every), "1", 1, 256, 0, "sparse FFN in every k-th layer, counting from model.ffn.first; other layers dense"},
    {"model.ffn.first", T_INT, O(ffn.first), "0", 0, 255, 0, "index of the first sparse layer"},
    {"model.ffn.gate", T_ENUM, O(ffn.gate), "topk_softmax", 0, 0, "topk_softmax|softmax", "gates: softmax over the K selected scores (AoE paper), or full softmax without renormalisation"},
    {"model.ffn.lb_coef", T_FLOAT, O(ffn.lb_coef), "0.01", 0, 100, 0, "Switch load-balancing loss weight alpha (0 = off); every auxiliary loss is averaged over the sparse layers"},
    {"model.ffn.lb_div_k", T_BOOL, O(ffn.lb_div_k), "false", 0, 1, 0, "divide the balancing loss by K (balanced value 1 instead of K)"},
    {"model.ffn.z_loss", T_FLOAT, O(ffn.z_loss), "0", 0, 100, 0, "router z-loss weight (router MoE)"},
    {"model.ffn.select", T_STR, O(ffn.select), "topk", 0, 0, 0, "expert-selection method (docs/select.md; one file per method in src/select)"},
    {"model.ffn.top_p", T_FLOAT, O(ffn.top_p), "0.6", 0, 1, 0, "Top-P (select topp): each token takes its most probable experts until their softmax probability reaches P; P in (0, 1], 1 = all experts"},
    {"model.ffn.topp_ent_coef", T_FLOAT, O(ffn.topp_ent_coef), "1e-4", 0, 100, 0, "Top-P: weight of the selection-entropy loss mean_t H(softmax(scores_t)) (paper: 1e-4)"},
    {"model.ffn.capacity", T_FLOAT, O(ffn.capacity), "0", 0, 1e6, 0, "token choice (topk, topp): each expert keeps at most ceil(capacity*T*top_k/n) assignments of a micro-batch of T tokens, later ones are dropped (residual only), 0 = dropless; expert choice: mean experts per token c, each expert takes ceil(c*T/n) tokens of the micro-batch, 0 = 2 (batch-level: sees future tokens of a causal LM)"},
    {"model.ffn.erc_coef", T_FLOAT, O(ffn.erc_coef), "0", 0, 100, 0, "ERC loss weight, router MoE only, the loss averaged over the sparse layers (0 = off; paper: 1)"},
    {"model.ffn.erc_alpha", T_FLOAT, O(ffn.erc_alpha), "1", 0, 100, 0, "ERC alpha in [0, 1] (above 1 only with erc_allow_alpha_gt1); smaller demands more specialised experts"},
    {"model.ffn.erc_detach_router", T_BOOL, O(ffn.erc_detach_router), "false", 0, 1, 0, "ERC loss trains W_g only, not the router"},
    {"model.ffn.erc_allow_alpha_gt1", T_BOOL, O(ffn.erc_allow_alpha_gt1), "false", 0, 1, 0, "allow erc_alpha > 1"},
    {"model.ffn.etr_cap_start", T_FLOAT, O(ffn.etr_cap_start), "1.1", 1e-3, 1e6, 0, "ETR capacity factor c_f at the first step: in training forwards each expert keeps at most ceil(c_f*top_k*T/n) of the tokens that chose it (highest cosine affinity first), the rest pass through the residual"},
    {"model.ffn.etr_cap_end", T_FLOAT, O(ffn.etr_cap_end), "0.66", 1e-3, 1e6, 0, "ETR capacity factor at the last step; linear in the step in between (evaluation forwards never drop)"},
    {"model.ffn.etr_loc_coef", T_FLOAT, O(ffn.etr_loc_coef), "0.01", 0, 100, 0, "ETR locality loss weight mu: KL divergence of a token group's mean gate distribution from its group-local target, mean over groups"},
    {"model.ffn.etr_groups", T_INT, O(ffn.etr_groups), "2", 1, 1024, 0, "ETR groups emulating nodes: experts and the micro-batch's tokens split into this many contiguous groups; must divide n_experts"},
    {"model.ffn.etr_gate", T_ENUM, O(ffn.etr_gate), "grap", 0, 0, "grap|cosine", "ETR gate logits: grap = mean of the expert's d_model/n_experts feature group, cosine = cosine affinity; gate = softmax over all n (model.ffn.gate is ignored)"},
    {"model.ffn.etr_tau", T_FLOAT, O(ffn.etr_tau), "1", 1e-6, 1, 0, "ETR expert-side adaptive threshold tau (select etr, etr_ecr): each expert keeps, of its candidates sorted by cosine affinity, the shortest prefix whose summed positive affinity reaches tau times the sum over all candidates, and at most its capacity; 1 = off (capacity only)"},
    {"model.ffn.etr_renorm", T_BOOL, O(ffn.etr_renorm), "false", 0, 1, 0, "ETR gates renormalised over the experts a token keeps (top-1: gate 1) instead of the paper's full softmax over n (nearly uniform, about 1/n)"},
    {"model.ffn.erc_log", T_BOOL, O(ffn.erc_log), "false", 0, 1, 0, "router MoE: log the ERC noise bound eps and the clean-router ERC loss (at erc_alpha) in load.jsonl at every training forward, without training on it (erc_coef > 0 logs them anyway)"},
    {"model.ffn.aoe_norm", T_ENUM, O(ffn.aoe_norm), "l2", 0, 0, "l2|l1|linf", "AoE: the norm of each expert's key x*W_down^e that ranks and gates the experts (paper: l2; App. A compares l1, linf)"},
    {"model.ffn.aoe_norm_at", T_ENUM, O(ffn.aoe_norm_at), "down", 0, 0, "down|proj|silu|act|output", "AoE: where the norm that ranks and gates the experts is taken, computed by every expert for every token and reused by the chosen ones: down = x*W_down^e (the paper's), proj = x*W_p^e, silu = SiLU(x*W_down^e*W_up^e), act = SiLU(x*W_down^e*W_up^e)*(x*W_p^e), output = the expert's output (every expert's whole FFN for every token); docs/select.md counts the cost"},
    {"model.ffn.gate_rank", T_INT, O(ffn.gate_rank), "0", 0, 1 << 20, 0, "router MoE: factorise every expert's W_g as W_down*W_up of this rank (AoE Table 2 'factorized W_g'); the expert width is then parameter-matched by Eq.5 (d_wide = 0) like AoE's; 0 = full W_g"},
    {"model.ffn.router_hidden", T_INT, O(ffn.router_hidden), "0", 0, 1 << 20, 0, "router MoE: a two-layer linear router x*R1*R2 with this hidden width (AoE Table 2 'large router'; n*r*d/(d+n) matches AoE's W_down count); 0 = one matrix"},
    {"model.ffn.score_override", T_ENUM, O(ffn.score_override), "none", 0, 0, "none|norm|norm_proj|norm_silu|norm_act|norm_output|random", "router MoE, evaluation only (aoe eval --select-override NODE): choose and gate experts by the L2 norm of a node of every expert instead of the router (AoE's router-free probe, Table 1): norm = x*W_g, norm_proj = x*W_p, norm_silu = SiLU(x*W_g), norm_act = SiLU(x*W_g)*(x*W_p), norm_output = the expert's output; random = K experts drawn uniformly per token (seeded by train.seed and the token's input), gates 1/K: the no-information baseline; training refuses it"},
    {"train.steps", T_INT, O(steps), "200", 1, 1e9, 0, "optimizer steps"},
    {"train.batch_size", T_INT, O(batch_size), "8", 1, 1 << 20, 0, "sequences per micro-batch (under mpirun: of all ranks together, each of N ranks takes batch_size/N)"},
    {"train.grad_accum", T_INT, O(grad_accum), "1", 1, 1 << 16, 0, "micro-batches per optimizer step"},
    {"train.lr", T_FLOAT, O(lr), "1e-3", 0, 10, 0, "peak learning rate"},
    {"train.min_lr", T_FLOAT, O(min_lr), "1e-4", 0, 10, 0, "learning rate at the end of the cosine decay"},
    {"train.warmup", T_INT, O(warmup), "20", 0, 1e9, 0, "linear warmup steps"},
    {"train.optimizer", T_STR, O(optimizer), "adamw", 0, 0, 0, "optimizer: adamw, or sgd (momentum train.beta1, decoupled weight decay); one file per optimizer in src/train"},
    {"train.beta1", T_FLOAT, O(beta1), "0.9", 0, 0.999999, 0, "AdamW beta1 (sgd: the momentum coefficient)"},
    {"train.beta2", T_FLOAT, O(beta2), "0.95", 0, 0.999999, 0, "AdamW beta2"},
    {"train.eps", T_FLOAT, O(eps), "1e-8", 1e-30, 1, 0, "AdamW epsilon (> 0: it keeps the update finite where the second moment is 0)"},
    {"train.weight_decay", T_FLOAT, O(weight_decay), "0.1", 0, 10, 0, "AdamW decoupled weight decay (not applied to norms)"},
    {"train.grad_clip", T_FLOAT, O(grad_clip), "1.0", 0, 1e9, 0, "clip the global gradient norm to this (0 = off)"},
    {"train.skip_nonfinite", T_BOOL, O(skip_nonfinite), "false", 0, 1, 0, "skip optimizer steps whose loss or gradient norm is NaN/inf (counted in metrics.jsonl as skipped_nonfinite) instead of stopping"},
    {"train.seed", T_U64, O(seed), "1", 0, 1.8e19, 0, "seed for init, data order and noise"},
    {"train.log_every", T_INT, O(log_every), "10", 1, 1e9, 0, "steps between progress lines, metrics.jsonl and load.jsonl records"},
    {"train.eval_every", T_INT, O(eval_every), "100", 0, 1e9, 0, "steps between validation losses (0 = only at the end)"},
    {"train.eval_batches", T_INT, O(eval_batches), "8", 1, 1e9, 0, "validation batches per evaluation"},
    {"train.ckpt_every", T_INT, O(ckpt_every), "0", 0, 1e9, 0, "steps between checkpoints (0 = only at the end)"},
    {"train.keep_ckpts", T_INT, O(keep_ckpts), "2", 1, 1000, 0, "checkpoints kept in the run directory"},
    {"train.init_from", T_STR, O(init_from), "", 0, 0, 0, "start from the weights of this checkpoint (a ckpt-*.aoec file, or a run directory: its newest checkpoint): fine-tuning or continued pre-training on other data. Model shapes and tokenizer must match; step, schedule, data order and (unless init_keep_optim) the optimizer start fresh. config.json records the checkpoint file used"},
    {"train.init_keep_optim", T_BOOL, O(init_keep_optim), "false", 0, 1, 0, "with train.init_from: keep the checkpoint's optimizer state (moments and their step count; same train.optimizer) instead of a fresh one"},
    {"train.overlap_grads", T_BOOL, O(overlap_grads), "false", 0, 1, 0, "MPI: start summing each block's gradient (MPI_Iallreduce) as soon as the backward has finished it, instead of one all-reduce after the backward; same results; docs/performance.md measures it"},
    {"train.expert_parallel", T_INT, O(expert_parallel), "1", 1, 1024, 0, "expert parallelism E under mpirun: each group of E ranks splits the experts of every sparse layer (E divides the rank count and model.ffn.n_experts); 1 = off"},
    {"train.threads", T_INT, O(threads), "0", 0, 1024, 0, "threads for OpenMP and BLIS; 0 = OMP_NUM_THREADS or all cores"},
    {"train.precision", T_ENUM, O(precision), "auto", 0, 0, "auto|fp32|bf16", "matrix products: fp32 (BLIS), or bf16 operands with fp32 accumulation (oneDNN; fp32 master weights, optimizer state and gradients); auto = bf16 where the CPU has native bf16 dot products (AVX512_BF16 or AMX-BF16), else fp32. config.json records the choice made"},
    {"data.train", T_STR, O(train_path), "data/prepared/train-*.shard", 0, 0, 0, "training shards: a glob or comma-separated list"},
    {"data.val", T_STR, O(val_path), "data/prepared/val-*.shard", 0, 0, 0, "validation shards (empty = no validation)"},
    {"data.tokenizer", T_STR, O(tokenizer), "data/prepared/tokenizer.bpe", 0, 0, 0, "tokenizer file the shards were encoded with"},
    {"run.out", T_STR, O(out), "runs/default", 0, 0, 0, "run directory (config.json, metrics.jsonl, load.jsonl, checkpoints)"},
    {"run.ckpt_compress", T_BOOL, O(ckpt_compress), "false", 0, 1, 0, "zlib-compress checkpoint payloads"},
};
static const int n_keys = sizeof keys / sizeof keys[0];
_Static_assert(sizeof keys / sizeof keys[0] <= CFG_MAX_KEYS, "raise CFG_MAX_KEYS (Config.origin)");

static const Key *find_key(const char *path) {
    for (int i = 0; i < n_keys; i++)
        if (!strcmp(keys[i].path, path)) return &keys[i];
    return NULL;
}

static const char *type_name(const Key *k) {
    switch (k->type) {
    case T_INT: case T_U64: return "integer";
    case T_FLOAT: return "number";
    case T_BOOL: return "boolean";
    case T_ENUM: return "string";
    default: return "string";
    }
}

// Stores a value given as text. Returns NULL or a static description of what was expected.
static const char *set_text(Config *c, const Key *k, const char *v, char *why, size_t wl) {
    char *end;
    void *dst = (char *)c + k->off;
    errno = 0;
    switch (k->type) {
    case T_INT: case T_U64: {
        double d = strtod(v, &end);
        if (end == v || *end || errno || d != floor(d)) return "an integer";
        if (d < k->min || d > k->max) { snprintf(why, wl, "an integer in [%.0f, %.0f], got %s", k->min, k->max, v); return why; }
        if (k->type == T_INT) *(int *)dst = (int)d;
        else *(uint64_t *)dst = strtoull(v, NULL, 10);
        return NULL;
    }
    case T_FLOAT: {
        // checked as the float32 it is stored as, so that the text config.json prints for it reads
        // back to the same float and passes the same check (resume, inspect, eval)
        double d = strtod(v, &end);
        if (end == v || *end || (errno && errno != ERANGE) || !isfinite(d)) return "a number";
        float f = (float)d;
        if (!isfinite(f) || (d != 0 && f == 0)) {
            snprintf(why, wl, "a number representable as float32 (magnitude 1.2e-38 to 3.4e38 or 0), got %s", v);
            return why;
        }
        if (f < (float)k->min || f > (float)k->max) {
            snprintf(why, wl, "a number in [%g, %g], got %s", k->min, k->max, v);
            return why;
        }
        *(float *)dst = f;
        return NULL;
    }
    case T_BOOL:
        if (!strcmp(v, "true") || !strcmp(v, "1")) *(int *)dst = 1;
        else if (!strcmp(v, "false") || !strcmp(v, "0")) *(int *)dst = 0;
        else return "true or false";
        return NULL;
    case T_ENUM: {
        size_t n = strlen(v);
        for (const char *p = k->choices; p && *p;) {
            const char *bar = strchr(p, '|');
            size_t len = bar ? (size_t)(bar - p) : strlen(p);
            if (len == n && !strncmp(p, v, n)) { snprintf(dst, 16, "%s", v); return NULL; }
            p = bar ? bar + 1 : NULL;
        }
        snprintf(why, wl, "one of %s, got \"%s\"", k->choices, v);
        return why;
    }
    case T_STR:
        if (strlen(v) >= (k->off == O(ffn.select) ? 16 : CFG_STR)) return "a shorter string";
        snprintf(dst, k->off == O(ffn.select) ? 16 : CFG_STR, "%s", v);
        return NULL;
    }
    return "a value";
}

// Levenshtein distance (ASCII key paths, short).
static int edit_distance(const char *a, const char *b) {
    int la = (int)strlen(a), lb = (int)strlen(b), row[257];
    if (la > 256 || lb > 256) return 1 << 20;
    for (int j = 0; j <= lb; j++) row[j] = j;
    for (int i = 1; i <= la; i++) {
        int diag = row[0];
        row[0] = i;
        for (int j = 1; j <= lb; j++) {
            int up = row[j], best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

// "unknown key 'P'" plus the closest valid key when one is close (a third of the name at most).
static _Noreturn void die_unknown_key(const char *where, const char *path) {
    const char *best = NULL;
    int bd = 1 << 20;
    for (int i = 0; i < n_keys; i++) {
        int e = edit_distance(path, keys[i].path);
        if (e < bd) { bd = e; best = keys[i].path; }
    }
    if (best && bd <= (int)strlen(path) / 3)
        die_input("%s: unknown key '%s': did you mean %s? (see docs/config.md)", where, path, best);
    die_input("%s: unknown key '%s' (see docs/config.md)", where, path);
}

void config_defaults(Config *c) {
    char why[128];
    memset(c, 0, sizeof *c);
    for (int i = 0; i < n_keys; i++)
        if (set_text(c, &keys[i], keys[i].def, why, sizeof why)) die("internal: bad default for %s", keys[i].path);
}

void config_set(Config *c, const char *assignment, const char *src) {
    const char *eq = strchr(assignment, '=');
    if (!eq) die_input("%s: '%s': expected key.path=value", src, assignment);
    char path[256];
    snprintf(path, sizeof path, "%.*s", (int)(eq - assignment), assignment);
    const Key *k = find_key(path);
    if (!k) die_unknown_key(src, path);
    char why[160];
    const char *err = set_text(c, k, eq + 1, why, sizeof why);
    if (err) die_input("%s: %s: expected %s", src, path, err);
    c->origin[k - keys] = CFG_FROM_OVERRIDE;
}

int config_try_set(Config *c, const char *path, const char *value) {
    const Key *k = find_key(path);
    char why[160];
    return k && !set_text(c, k, value, why, sizeof why) ? 0 : -1;
}

// Walks a JSON object; every leaf must be a known key of the right JSON type.
// Line of the second occurrence of "name" in text (where a duplicate key most likely sits), 0 if unknown.
static int dup_line(const char *text, const char *name) {
    char q[300];
    snprintf(q, sizeof q, "\"%s\"", name);
    const char *p = text ? strstr(text, q) : NULL;
    p = p ? strstr(p + 1, q) : NULL;
    int line = 1;
    for (const char *s = text; p && s < p; s++) line += *s == '\n';
    return p ? line : 0;
}

static void load_object(Config *c, const cJSON *obj, const char *prefix, const char *file, const char *text) {
    for (const cJSON *it = obj->child; it; it = it->next) {
        char path[256];
        snprintf(path, sizeof path, "%s%s%s", prefix, *prefix ? "." : "", it->string);
        if (cJSON_IsObject(it)) {
            int is_prefix = 0;
            size_t n = strlen(path);
            for (int i = 0; i < n_keys && !is_prefix; i++)
                is_prefix = !strncmp(keys[i].path, path, n) && keys[i].path[n] == '.';
            if (!is_prefix) die_input("%s: unknown section '%s' (see docs/config.md)", file, path);
            for (const cJSON *o = obj->child; o != it; o = o->next)
                if (!strcmp(o->string, it->string))
                    die_input("%s: line %d: duplicate section '%s' (each key may appear once)", file,
                              dup_line(text, it->string), path);
            load_object(c, it, path, file, text);
            continue;
        }
        for (const cJSON *o = obj->child; o != it; o = o->next)
            if (!strcmp(o->string, it->string))
                die_input("%s: line %d: duplicate key '%s' (each key may appear once)", file, dup_line(text, it->string),
                          path);
        const Key *k = find_key(path);
        if (!k) die_unknown_key(file, path);
        char text[CFG_STR + 32], why[160];
        int ok;
        switch (k->type) {
        case T_INT: case T_U64: case T_FLOAT:
            ok = cJSON_IsNumber(it);
            if (ok) snprintf(text, sizeof text, k->type == T_FLOAT ? "%.17g" : "%.0f", it->valuedouble);
            if (ok && k->type != T_FLOAT && it->valuedouble != floor(it->valuedouble)) ok = 0;
            break;
        case T_BOOL:
            ok = cJSON_IsBool(it);
            if (ok) snprintf(text, sizeof text, "%s", cJSON_IsTrue(it) ? "true" : "false");
            break;
        default:
            ok = cJSON_IsString(it);
            if (ok) snprintf(text, sizeof text, "%s", it->valuestring);
        }
        if (!ok) die_input("%s: %s: expected %s", file, path, k->type == T_ENUM ? k->choices : type_name(k));
        const char *err = set_text(c, k, text, why, sizeof why);
        if (err) die_input("%s: %s: expected %s", file, path, err);
        c->origin[k - keys] = CFG_FROM_FILE;
    }
}

static int parse_json(const char *text, cJSON **out, char *err, int errlen) {
    *out = json_parse_object(text, err, errlen);
    return *out ? 0 : -1;
}

void config_load_file(Config *c, const char *path) {
    size_t len;
    char *text = read_file(path, &len);
    if (len == 0) die_input("%s: empty file, expected a JSON object", path);
    cJSON *root;
    char err[128];
    if (parse_json(text, &root, err, sizeof err)) die_input("%s: %s", path, err);
    load_object(c, root, "", path, text);
    cJSON_Delete(root);
    free(text);
}

int config_from_json_text(Config *c, const char *text, const char *src, char *err, int errlen) {
    cJSON *root;
    if (parse_json(text, &root, err, errlen)) return -1;
    config_defaults(c);
    load_object(c, root, "", src, text);  // a checkpoint's config was written by us: errors are fatal
    cJSON_Delete(root);
    return 0;
}

int ffn_d_wide(const Config *c) {
    if (c->ffn.d_wide > 0) return c->ffn.d_wide;
    // AoE Eq.5: d*r + r*dw + 2*d*dw = 3*d*D  =>  dw = (3 d D - r d) / (r + 2 d), rounded to nearest
    int lowrank_moe = !strcmp(c->ffn.type, "moe") && c->ffn.gate_rank > 0;  // factorised-W_g MoE
    double d = c->d_model, r = lowrank_moe ? c->ffn.gate_rank : c->ffn.d_low, D = c->ffn.d_ff;
    long dw = lround((3 * d * D - r * d) / (r + 2 * d));
    return dw > 0 ? (int)dw : 1;  // tiny test configs (d_ff <= d_low·d/(3d)) get width 1
}

int ffn_is_sparse_layer(const Config *c, int l) {
    if (!strcmp(c->ffn.type, "dense")) return 0;
    return l >= c->ffn.first && (l - c->ffn.first) % c->ffn.every == 0;
}

void config_validate(const Config *c, const char *src) {
    if (c->min_lr > c->lr) {
        char note[512];
        config_origins(c, "train.min_lr train.lr", src, note, sizeof note);
        die_input("%s: train.min_lr (%g) must not exceed train.lr (%g)%s", src, c->min_lr, c->lr, note);
    }
    if (c->expert_parallel > 1 && (!strcmp(c->ffn.type, "dense") || c->ffn.n_experts % c->expert_parallel))
        die_input("%s: train.expert_parallel (%d) needs a sparse model.ffn.type and must divide model.ffn.n_experts (%d)",
                  src, c->expert_parallel, c->ffn.n_experts);
}

void config_origins(const Config *c, const char *msg, const char *file, char *out, size_t n) {
    size_t used = 0;
    out[0] = 0;
    for (int i = 0; i < n_keys && used + 1 < n; i++) {
        const char *p = msg;
        size_t l = strlen(keys[i].path);
        int named = 0;
        while (!named && (p = strstr(p, keys[i].path))) {  // whole key paths only
            char after = p[l];
            named = !(after == '_' || after == '.' || (after >= 'a' && after <= 'z') || (after >= '0' && after <= '9'));
            p += l;
        }
        if (!named) continue;
        const char *from = c->origin[i] == CFG_FROM_OVERRIDE ? "the command line"
                           : c->origin[i] == CFG_FROM_FILE  ? file : "the default";
        int w = snprintf(out + used, n - used, "%s%s from %s", used ? ", " : " (", keys[i].path, from);
        if (w < 0) break;
        used += (size_t)w < n - used ? (size_t)w : n - used - 1;
    }
    if (used && used + 2 < n) { out[used++] = ')'; out[used] = 0; }
}

// Shortest "%.Ng" text that reads back as exactly f (as written: 0.002, not 0.00200000009).
static void float_text(char *buf, size_t n, float f) {
    for (int p = 1; p <= 9; p++) {
        snprintf(buf, n, "%.*g", p, f);
        if (strtof(buf, NULL) == f) return;
    }
}

char *config_to_json(const Config *c) {
    cJSON *root = cJSON_CreateObject();
    for (int i = 0; i < n_keys; i++) {
        const Key *k = &keys[i];
        cJSON *obj = root;
        char path[256];
        snprintf(path, sizeof path, "%s", k->path);
        char *seg = path, *dot;
        while ((dot = strchr(seg, '.'))) {  // descend/create sections
            *dot = 0;
            cJSON *sub = cJSON_GetObjectItemCaseSensitive(obj, seg);
            if (!sub) sub = cJSON_AddObjectToObject(obj, seg);
            obj = sub;
            seg = dot + 1;
        }
        const void *src = (const char *)c + k->off;
        switch (k->type) {
        case T_INT: cJSON_AddNumberToObject(obj, seg, *(const int *)src); break;
        case T_U64: cJSON_AddNumberToObject(obj, seg, (double)*(const uint64_t *)src); break;
        case T_FLOAT: {
            char buf[32];  // shortest text that reads back as the same float
            float_text(buf, sizeof buf, *(const float *)src);
            cJSON_AddItemToObject(obj, seg, cJSON_CreateRaw(buf));
            break;
        }
        case T_BOOL: cJSON_AddBoolToObject(obj, seg, *(const int *)src); break;
        default: cJSON_AddStringToObject(obj, seg, (const char *)src);
        }
    }
    char *s = cJSON_Print(root);
    cJSON_Delete(root);
    return s;
}

void config_print_doc(void) {
    printf("| key | type | default | range / choices | meaning |\n|---|---|---|---|---|\n");
    for (int i = 0; i < n_keys; i++) {
        const Key *k = &keys[i];
        char range[96] = "";
        if (k->type == T_ENUM) snprintf(range, sizeof range, "%s", k->choices);
        else if (k->type == T_INT || k->type == T_U64 || k->type == T_FLOAT) snprintf(range, sizeof range, "[%.10g, %.10g]", k->min, k->max);
        for (char *p = range; *p; p++) if (*p == '|') *p = '/';
        printf("| `%s` | %s | `%s` | %s | %s |\n", k->path, type_name(k), k->def, range, k->doc);
    }
}
