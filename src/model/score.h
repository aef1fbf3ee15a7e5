// score.h — where a sparse layer's expert scores come from, behind one small table like FfnOps.
// A score source turns the layer input X [T,d] into S [T,n], the matrix the selection method
// (src/select) ranks and gates by, and takes dS [T,n] back into dX and its own parameters.
// Adding a source = one file defining a ScoreOps plus one line in the table in score.c; the
// layer (moe.c) and its reference (moe_ref.c) never look inside one.
//
// Sources in the table (row-vector convention y = x·W, row-major, n experts):
//   router    model.ffn.type moe: S = X·R, R = layers.L.ffn.router [d,n]          (score_router.c)
//   aoe_norm  model.ffn.type aoe: keys C = X·W_down [T,n·r] (layers.L.ffn.w_down [d,n·r], column
//             block e = expert e), S[t,e] = ||C[t,e·r:(e+1)·r]||_2; the experts take their key as
//             the input of their gate branch (w_up [n,r,D])                        (score_aoe.c)
//   grap      asked for by model.ffn.select etr: fixed GrAP affinities, no parameters (grap.c)
//   router_lowrank, router_mlp  model.ffn.gate_rank / router_hidden > 0 (score_router_ext.c)
//   aoe_at    model.ffn.type aoe, model.ffn.aoe_norm_at proj|silu|act|output: the norm of a later
//             node of every expert's computation (score_aoe_at.c; stages below)
//   expert_norm  model.ffn.score_override norm*|random: evaluation probe ||x·W_g^e||, ... or a
//             uniformly random choice (score_router_ext.c)
//
// Keys: a source with r > 0 caches a per-expert key [T,n,r] that the layer's experts use as the
// input of their gate branch instead of x (AoE reuses x·W_down^e). Its backward then also takes
// dkey [T,n·r], the experts' gradient into the keys (zero for experts that did not run), when the
// experts read the keys (no U or Y stage below); otherwise dkey is the source's own scratch.
//
// Stages (model/expert.h): a source may compute part of every expert's own computation for every
// token — u = the gate branch before SiLU [T,n,D], v = x·W_p [T,n,D], y = the output [T,n,d] (row
// t, column block e = expert e). The layer's experts then gather these for their rows instead of
// recomputing them, and hand back their gradients at them in dstage (zero where an expert did
// not run); the source's backward propagates them, with its own, through the stage.
#ifndef AOE_SCORE_H
#define AOE_SCORE_H

#include "config/config.h"
#include "model/expert.h"
#include "model/params.h"
#include "select/select.h"

struct ScoreOps;

// One per sparse layer. Buffers hold up to max_T tokens and the last forward's values.
typedef struct {
    const struct ScoreOps *ops;
    int layer, d, n, r, max_T;  // r: key width (0 = no keys, experts read x)
    long o_param;               // offset of the source's tensor in Params (router R [d,n] when
                                // info.router: ERC reads it; AoE W_down [d,n·r]), -1 = none
    float *S, *dS;              // [max_T,n] scores; their gradient (filled by the layer)
    float *rank;                // [max_T,n] what methods rank by when it differs from S, else NULL
    float *key, *dkey;          // [max_T,n·r] keys; their gradient from the experts (r > 0)
    int stages, D;              // STAGE_* mask the source computes for the layer; expert width
    float *stage[N_STAGES];     // [max_T,n,w] by bit (u, v: w = D; y: w = d), NULL if not computed
    float *dstage[N_STAGES];    // their gradients
    double *mean_sum;           // [n] Σ over training tokens of S (for ops->mean_stat)
    long mean_tokens;
    void *priv;                 // source state
} Score;

// The keys that pick one of the router MoE's sources (their match functions): every router
// source reads them, so a change between two router runs always shows.
#define ROUTER_PICK_KEYS "gate_rank router_hidden score_override"

typedef struct ScoreOps {
    ScoreInfo info;       // name and the properties selection methods check (select.h)
    const char *summary;  // one line for docs
    // Is this the source for config c when the selection method asks for none? NULL = only on a
    // method's request (SelectMethod.source). The table is scanned in order: specific first.
    int (*match)(const Config *c);
    // The source's config rules: NULL if fine, else a message naming the keys (static or in buf).
    // The only place they are checked (config validation, model_validate_config).
    const char *(*check)(const Config *c, char *buf, int len);
    // Key width r for this config (NULL = 0).
    int (*key_dim)(const Config *c);
    // Registers the parameters (names "layers.<l>.ffn.*", before the experts', so the order of
    // the parameter table is fixed), sets s->o_param, allocates s->rank / s->priv if needed.
    void (*init)(Score *s, Params *P, const Config *c);
    // s->S [T,n] (and s->key, s->rank) from x [T,d].
    void (*forward)(Score *s, const Params *P, const float *x, int T);
    // From s->dS [T,n] (and s->dkey if r > 0): parameter gradients += into P->g, dx [T,d] +=.
    void (*backward)(Score *s, Params *P, float *dx, const float *x, int T);
    void (*free)(Score *s);  // optional: s->priv
    // Naive twin per token in double (the layer reference, moe_ref.c): z [n] scores, rank [n]
    // (= z unless the source ranks otherwise), key [n·r] (if r > 0) from x_t [d].
    void (*forward_naive)(const Score *s, const Params *P, const float *xt, double *z, double *rank, double *key);
    // dxt [d] += and G [P->total] += (parameter gradients) from dz [n] and dkey [n·r], given the
    // values forward_naive returned for the same x_t.
    void (*backward_naive)(const Score *s, const Params *P, const float *xt, const double *z, const double *rank,
                           const double *key, const double *dz, const double *dkey, double *G, double *dxt);
    // Parameters the source registers per layer.
    double (*count)(const Config *c);
    // Multiply-adds per token (= the parameters a token touches here, each used once), including
    // the stages computed for every expert; NULL = count (every parameter once per token).
    double (*macs)(const Config *c);
    // The stages (STAGE_* mask) the source computes for the layer's experts; NULL = none.
    int (*stages)(const Config *c);
    int expert_work;        // profile the forward/backward as expert work (1) or dispatch (0)
    const char *mean_stat;  // load.jsonl key for the per-expert mean score, NULL = not written
    // The model.ffn.* keys the source reads, also those its match reads to pick it (names after
    // "model.ffn.", space-separated; see FfnOps.keys).
    const char *keys;
} ScoreOps;

// The source of a sparse layer of config c: the selection method's own, else the first table
// entry that matches. NULL if none (the config check says why).
const ScoreOps *score_for(const Config *c);
int score_key_listed(const char *name);  // does any source list model.ffn.<name> in its keys?
// The source's config rules for c (NULL if fine), including "no source for this config".
const char *score_check(const Config *c, char *buf, int len);

// The layer's calls: s (zeroed by the caller) for layer `layer`, up to max_T tokens.
void score_create(Score *s, const ScoreOps *ops, Params *P, const Config *c, int layer, int max_T);
void score_destroy(Score *s);
void score_forward(Score *s, const Params *P, const float *x, int T, int train);
// dx [T,d] += d/dx; s->dS (and s->dkey) must be filled.
void score_backward(Score *s, Params *P, float *dx, const float *x, int T);
// Writes ",\"<mean_stat>\":[...]" (if the source has one; f NULL: nothing) and resets the mean.
void score_write_stats(Score *s, FILE *f);
// Sums the mean's accumulators over the data-parallel ranks (collective; no-op on one rank).
void score_stats_reduce(Score *s);

// The offset of the layer's expert tensor layers.<layer>.ffn.<what> [n,a,b] (registered after the
// source, so found at first use) for sources that read the experts' own weights; dies if absent.
long score_expert_tensor(const Score *s, const Params *P, const char *what, int a, int b);

// AoE norms shared by the AoE sources (score_aoe.c): the kind model.ffn.aoe_norm names, and the
// norm of c [r] with, if g != NULL, g += k·∂||c||/∂c (float and double twins).
int aoe_norm_kind(const Config *c);
double aoe_norm_f(int kind, const float *c, int r, double k, float *g);
double aoe_norm_d(int kind, const double *c, int r, double k, double *g);
// Naive twins of the AoE keys of expert e: c [r] = x_t·W_down^e; G += x_t ⊗ dc, dxt += W_down^e·dc.
void aoe_key_naive(const Score *s, const Params *P, const float *xt, int e, double *c);
void aoe_key_backward_naive(const Score *s, const Params *P, const float *xt, int e, const double *dc, double *G,
                            double *dxt);

extern const ScoreOps score_router, score_aoe_norm, score_aoe_at, score_grap, score_router_lowrank, score_router_mlp,
    score_expert_norm;

#endif
