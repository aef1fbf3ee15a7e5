// select.h — expert selection behind one small interface. A sparse FFN layer (src/model/moe.c)
// produces a score matrix S [T,n] from its score source (src/model/score.h: router logits X·R,
// AoE key norms ||X·W_down^e||, GrAP affinities, ...); a selection method turns S into per-token
// slots (expert index + gate weight),
// maps d(gates) back to d(scores), owns the auxiliary losses on S (balancing, z-loss, ...) and
// the load statistics. Adding a method = one file src/select/<name>.c defining a SelectMethod
// plus one line in the table in select.c. The layer never looks inside a method.
//
// What this does not do: experts, dispatch and the score sources (their parameters and
// backward) live in src/model; methods only ever see S [T,n] and the ScoreInfo below.
#ifndef AOE_SELECT_H
#define AOE_SELECT_H

#include <stdio.h>

#include "config/config.h"
#include "util/common.h"

// What a method may know about the layer's score source (the rest is src/model/score.h). A
// method may refuse a source in its check().
typedef struct {
    const char *name;  // "router", "aoe_norm", "grap", ... (model/score.c table)
    int router;        // S = X·R with a learned router R [d,n]: the z-loss and ERC apply
} ScoreInfo;

// Gate weight of a selected expert (model.ffn.gate).
typedef enum {
    GATE_TOPK_SOFTMAX,  // "topk_softmax": softmax over the selected scores (paper default)
    GATE_SOFTMAX,       // "softmax": softmax over all n, selected entries, no renormalisation
} GateKind;

// Statistics accumulated over training forwards since the last select_stats_reset.
typedef struct {
    long forwards, tokens;
    long dropped;        // (token, slot) assignments chosen but not processed (capacity)
    long chosen;         // (token, slot) assignments chosen by the rule (processed + dropped)
    long unrouted;       // tokens no expert processed (they pass through the residual only)
    long *counts;        // [n] processed assignments per expert
    double ent_conf;     // Σ over tokens of the entropy of softmax(S[t]) over n
    double lb, z;        // Σ over forwards of the raw (unweighted) balancing / z losses
    double erc, erc_eps; // Σ over forwards of the raw ERC loss and the mean noise bound ε
} SelectStats;

struct SelectMethod;
typedef struct Erc Erc;

// The layer's selection-related parameters, for methods whose auxiliary loss looks at weights
// rather than scores (ERC couples router rows with the experts' W_g). Router MoE only; NULL
// pointers where the layer has no such tensor. Gradients accumulate (+=).
typedef struct {
    int d, n, D;
    const float *R;    // router [d,n] (logits = X·R)
    float *dR;
    const float *Wg;   // expert gate projections [n,d,D]
    float *dWg;
} SelectParams;

// One per layer. Buffers are sized for max_T tokens; the fields under "last forward" describe
// the most recent select_forward and are what select_backward differentiates.
typedef struct Selection {
    const struct SelectMethod *m;
    void *priv;               // method state (m->init / m->free)
    const ScoreInfo *src;
    GateKind gate_kind;
    int n, K, kmax, max_T;    // experts, config top_k, slots per token (m->slots)
    float lb_coef, z_coef, capacity;
    int lb_div_k;
    // Training progress in [0,1] (step / (train.steps - 1)), set before each step through
    // FfnOps.set_progress; 0 outside training. Methods with schedules read it (ETR capacity).
    float progress;
    // [T,n] what the source says to rank by when it differs from S (GrAP: cosine affinities δ,
    // S holding the gate logits); methods that honour it (ETR) read it, NULL = rank by S.
    const float *aff;
    // last forward
    int T, train;
    const float *S;           // [T,n] scores (owned by the layer, must live until backward)
    float *prob;              // [T,n] softmax(S[t]) over all n
    float *lse;               // [T] logsumexp(S[t])
    int *choice;              // [T,kmax] expert chosen by the rule, -1 = empty slot
    int *expert;              // [T,kmax] expert that processes the slot, -1 = empty or dropped
    float *gate;              // [T,kmax] gate weight (0 for empty slots; dropped slots keep theirs)
    long *load;               // [n] chosen (pre-capacity) assignments per expert: f_i = load_i/T
    // f_i of the balancing loss over the global micro-batch (all data-parallel ranks): [n], and
    // scratch [2n+2] for the sums reduced across ranks (dist.h)
    double *f, *red;
    long dropped;             // assignments dropped in the last forward
    double lb, z;             // raw balancing / z losses of the last training forward
    double aux;               // weighted auxiliary loss of the last training forward
    SelectStats st;
    // ERC loss (erc.c), composed with any method on router MoE: NULL when model.ffn.erc_coef = 0.
    // layer_share: this layer's share of a loss averaged over the sparse layers (1/#sparse
    // layers; the layer sets it after select_create, default 1).
    Erc *erc;
    float layer_share;
    // model.seq_len (set by the layer): a forward of T = B·seq_len tokens holds B whole sequences,
    // which places this rank's tokens in the global micro-batch (select_pool_candidates).
    int seq_len;
} Selection;

// A selection method. Required: name, summary, slots, select, gate_backward. NULL aux_* means
// the standard pair (Switch balancing loss on softmax(S) + optional z-loss, below).
typedef struct SelectMethod {
    const char *name;      // value of model.ffn.select
    const char *summary;   // one line for docs and error messages
    // Name of the score source this method brings (ETR: "grap"); NULL = the layer's own
    // (router logits, AoE norms, ... as model/score.c picks for the config).
    const char *source;
    // Slots per token (kmax) for this config, e.g. top_k for token choice, n for expert choice.
    int (*slots)(const FfnConfig *c);
    // Method-specific config check for score source src: NULL if fine, else a static message
    // naming the keys ("model.ffn.top_k ..."). Called by select_check, nowhere else.
    const char *(*check)(const FfnConfig *c, const ScoreInfo *src);
    void (*init)(Selection *s, const FfnConfig *c);  // optional: allocate s->priv
    void (*free)(Selection *s);                      // optional
    // Fills s->choice, s->expert, s->gate (all [T,kmax]), s->load and s->dropped from s->S and
    // s->prob. Ties between equal scores go to the lower expert index. rng may be NULL.
    void (*select)(Selection *s, Rng *rng);
    // dS [T,n] += d(loss)/dS through the gates, given dgate [T,kmax] (0 where expert == -1).
    // Selection itself is piecewise constant (no gradient through the choice).
    void (*gate_backward)(const Selection *s, const float *dgate, float *dS);
    // Sets s->lb, s->z (raw) and returns the weighted auxiliary loss. Training forwards only.
    double (*aux_forward)(Selection *s);
    // dS [T,n] += scale * d(weighted aux loss)/dS.
    void (*aux_backward)(const Selection *s, float *dS, float scale);
    // Optional: auxiliary loss on parameters (training forwards), returns its weighted value
    // (added to the layer's aux loss); the backward adds scale * its gradient into v->dR, v->dWg.
    double (*param_aux_forward)(Selection *s, const SelectParams *v, Rng *rng);
    void (*param_aux_backward)(Selection *s, const SelectParams *v, float scale);
    // Optional: extra JSON fields (",\"key\":value...") for the statistics line.
    void (*write_stats)(const Selection *s, FILE *f);
    // Naive twins for the per-token layer reference (src/model/moe_ref.c), double precision, for
    // methods whose rules go beyond token-choice top-K with capacity and the standard losses:
    // ref_keep: keep [T,K] (1 = processed) after the token choice idx [T,K] ranked by rank [T,n];
    // ref_aux: extra weighted auxiliary loss from prob [T,n] = softmax(S); if dz [T,n] is not NULL,
    // adds scale times its gradient with respect to S.
    void (*ref_keep)(const Selection *s, int T, const int *idx, const double *rank, int *keep);
    double (*ref_aux)(const Selection *s, int T, const double *prob, double *dz, double scale);
    // The model.ffn.* keys the method reads beyond every sparse layer's (names after
    // "model.ffn.", space-separated; see FfnOps.keys in model/ffn.h).
    const char *keys;
} SelectMethod;

// ---- the table (select.c) ----
const SelectMethod *select_find(const char *name);  // NULL if unknown
int select_key_listed(const char *name);            // does any method list model.ffn.<name> in its keys?
const char *select_names(void);                     // "topk|..." for messages
// Checks model.ffn.select / gate / top_k / n_experts / capacity / losses for this source, then
// the method's own check. Returns NULL if the combination is valid, else a message naming the
// keys (static or in buf). The one place these rules live: config validation calls it (through
// model_validate_config), layers do not re-check.
const char *select_check(const FfnConfig *c, const ScoreInfo *src, char *buf, int buflen);
int select_gate_kind(const char *name);             // GATE_* or -1

// ---- the driver used by layers ----
// c must have passed select_check (the layer asserts, it does not re-validate).
Selection *select_create(const FfnConfig *c, const ScoreInfo *src, int max_T);
void select_destroy(Selection *s);
// Runs the method on S [T,n]: prob, lse, slots; if train: aux losses and statistics.
void select_forward(Selection *s, const float *S, int T, int train, Rng *rng);
// dS [T,n] (overwritten) = gate path from dgate [T,kmax] + aux_scale * aux-loss gradient.
void select_backward(const Selection *s, const float *dgate, float *dS, float aux_scale);
// Parameter auxiliary losses (training forwards): the method's param_aux_* hooks and, with
// model.ffn.erc_coef > 0, the ERC loss. The forward adds the weighted value to s->aux; the
// backward adds aux_scale times its gradient into v->dR, v->dWg. Call after select_forward.
void select_param_aux_forward(Selection *s, const SelectParams *v, Rng *rng);
void select_param_aux_backward(Selection *s, const SelectParams *v, float aux_scale);
// Writes the statistics fields (",\"tokens\":...,\"counts\":[...],...") without braces.
void select_write_stats(const Selection *s, FILE *f);
void select_stats_reset(Selection *s);
// Sums the statistics over the data-parallel ranks (collective: every rank calls it before
// writing; no-op on one rank). Loss values that are already global stay as they are.
void select_stats_reduce(Selection *s);

// ---- shared building blocks for methods (select.c) ----
// The K largest of row[0..n-1], descending, ties to the lower index; idx [K].
void select_topk_row(const float *row, int n, int K, int *idx);
// Batch-level methods on data-parallel ranks (expert choice, ETR's expert side) rank the tokens
// of the global micro-batch. Each rank passes, per expert e, its best candidates in
// key[e·k .. e·k+k) (descending, ties in token order; -INFINITY after its last one) with their
// tokens tok[..] (a global top-C candidate is always among its own rank's top C, so k = C
// suffices). The candidates of all ranks are merged in one process's order: key descending, then
// the token's place in the global micro-batch (rank r holds global sequences r, r+N, ...: the
// loader's striding; s->seq_len says where sequences end). keep(e, keys, m, ctx) gets the m merged
// keys of expert e and says how many of the first it keeps; taken[e] = how many of this rank's
// first candidates are among those. Collective.
typedef int (*SelectKeepFn)(int e, const float *keys, int m, void *ctx);
void select_pool_candidates(const Selection *s, const float *key, const int *tok, int k, SelectKeepFn keep, void *ctx,
                            int *taken);
// Gate weights of m selected experts idx [m] of one token (s->gate_kind), into g [m].
void select_gates_row(const Selection *s, int t, const int *idx, int m, float *g);
// Backward of select_gates_row for every token over its non-empty choice slots.
void select_gates_backward(const Selection *s, const float *dgate, float *dS);
// Capacity (token choice): each expert keeps at most ceil(capacity·T·K/n) assignments, slot 0 of
// every token first, then slot 1, ...; within a slot, lower token index first. capacity <= 0:
// dropless. Fills s->expert from s->choice and counts s->dropped; fills s->load from choice.
void select_apply_capacity(Selection *s);
// ceil(factor·assignments/n), at least 1. The factor comes from a float config key: a 1e-6
// relative slack keeps exact products exact (1.2·60/4 gives 18, not 19).
long select_capacity_slots(double factor, double assignments, int n);
// Standard auxiliary losses: Switch balancing  L_lb = n·Σ_i f_i·P_i (/K if lb_div_k) with
// f_i = load_i/T, P_i = mean_t prob[t,i]; z-loss L_z = mean_t lse_t². Weighted: lb_coef, z_coef.
// Under data parallelism T, load_i and the sums over t run over the global micro-batch (the
// ranks' sums are reduced), so N ranks train the model one process would. The backward keeps
// the local T: train scales each rank's gradient by 1/N before the ranks' gradients are summed,
// which turns n/T_local into the global n/T.
double select_std_aux_forward(Selection *s);
void select_std_aux_backward(const Selection *s, float *dS, float scale);

// ---- ERC loss (erc.c, methods.md §2), router MoE ----
// L = (1/n²) Σ_i Σ_{j≠i} relu(M[i,j] − α·M[i,i]) + relu(M[j,i] − α·M[i,i]),  M[i,j] = ||R̃_i·W_g^j||,
// R̃_i = δ_i ⊙ R_i with δ_i ~ U(1−ε_i, 1+ε_i)^d and ε_i = min_{j≠i} ||R_i − R_j|| / (2||R_i||).
Erc *erc_create(const FfnConfig *c);
void erc_free(Erc *e);
// ε and δ from the current router (no gradient through either); rng NULL: δ = 1 (no noise).
void erc_noise(Erc *e, const SelectParams *v, Rng *rng);
// The raw (unweighted) loss from the cached δ and the current R, W_g; caches what backward needs.
double erc_loss(Erc *e, const SelectParams *v);
// v->dWg (and v->dR unless model.ffn.erc_detach_router) += scale · dL, for the last erc_loss.
void erc_backward(const Erc *e, const SelectParams *v, float scale);
float erc_coef(const Erc *e);
double erc_eps_mean(const Erc *e);  // mean over experts of ε of the last erc_noise
// For analysis (`aoe analyze erc`): ε [n] of the last erc_noise, M [n,n] (row i = proxy i) of
// the last erc_loss, and the raw loss of that M at another α.
const double *erc_eps(const Erc *e);
const double *erc_matrix(const Erc *e);
double erc_loss_at(const Erc *e, double alpha);

extern const SelectMethod select_topk, select_topp, select_expert_choice;
extern const SelectMethod select_etr, select_etr_ecr;

#endif
