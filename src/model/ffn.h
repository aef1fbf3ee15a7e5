// ffn.h — the feed-forward slot of a transformer block. Dense SwiGLU, router MoE and AoE all
// implement FfnOps; the model picks one per layer by `model.ffn.type` (see ffn_ops_for).
#ifndef AOE_FFN_H
#define AOE_FFN_H

#include <stdio.h>

#include "config/config.h"
#include "model/params.h"
#include "model/vmath.h"

typedef struct {
    const char *name;  // value of model.ffn.type
    // Registers this layer's parameters in P (names "layers.<l>.ffn.*") and allocates caches for
    // up to max_T tokens. Returns the layer state.
    void *(*create)(Params *P, const Config *c, int layer, int max_T);
    // out [T,d] = FFN(x [T,d]) (overwritten). train = 1: keep caches for backward, compute aux
    // losses and accumulate load statistics. rng: for methods that draw noise (may be NULL in eval).
    void (*forward)(void *self, const Params *P, float *out, const float *x, int T, int train, Rng *rng);
    // dx [T,d] (overwritten) from dout [T,d]; parameter gradients accumulate (+=) into P->g.
    // aux_scale multiplies the gradients of the layer's auxiliary losses (1/grad_accum).
    void (*backward)(void *self, Params *P, float *dx, const float *dout, const float *x, int T, float aux_scale);
    // Weighted auxiliary loss of the last training forward (0 for dense). Added to the objective,
    // reported separately from the LM loss.
    double (*aux_loss)(void *self);
    // Writes the accumulated load statistics as one JSON line (no-op for dense) and resets them.
    void (*write_stats)(void *self, FILE *f, long step, int layer);
    // Parameter counts (total and active per token) and forward FLOPs per token.
    void (*count)(const Config *c, double *total, double *active, double *flops);
    void (*destroy)(void *self);
    // Optional: training progress in [0,1] (step / (train.steps - 1)) before each optimizer step,
    // for schedules inside the layer (ETR capacity). NULL = the layer has none.
    void (*set_progress)(void *self, float progress);
    // Optional: this FFN kind's config rules (NULL if fine, else a message naming the keys,
    // static or in buf), run once by model_validate_config; create() may assert, not re-check.
    const char *(*check)(const Config *c, char *buf, int len);
    // The model.ffn.* keys this kind reads (names after "model.ffn.", space-separated). A kind
    // that lists "select" has sparse layers, whose score source and selection method list their
    // own keys (ScoreOps.keys, SelectMethod.keys); model_key_used combines the three.
    const char *keys;
} FfnOps;

const FfnOps *ffn_ops_for(const char *type);  // NULL if unknown
int ffn_key_listed(const char *name);          // does any kind list model.ffn.<name> in its keys?

extern const FfnOps ffn_dense_ops;

// SwiGLU building blocks shared by dense and expert FFNs (row-major, y = x·W).
// h = (SiLU(x·Wg) ⊙ (x·Wp))·Wo;  x [T,d], Wg/Wp [d,D], Wo [D,d]; caches u=x·Wg, v=x·Wp, a [T,D].
void swiglu_forward(float *h, float *u, float *v, float *a, const float *x, const float *Wg,
                    const float *Wp, const float *Wo, int T, int d, int D, int single_thread);
// dx [T,d] (overwritten), dWg/dWp/dWo accumulate; du/dv are [T,D] scratch. dh is [T,d].
void swiglu_backward(float *dx, float *dWg, float *dWp, float *dWo, float *du, float *dv,
                     const float *dh, const float *x, const float *u, const float *v, const float *a,
                     const float *Wg, const float *Wp, const float *Wo, int T, int d, int D, int single_thread);
static inline float silu(float u) { return u / (1.0f + exp_fast(-u)); }
static inline float silu_grad(float u) {
    float s = 1.0f / (1.0f + exp_fast(-u));
    return s * (1.0f + u * (1.0f - s));
}

#endif
