// model.h — the Llama-style decoder: token embedding, n_layer pre-RMSNorm blocks (causal MHA with
// RoPE, then the FFN slot: dense / MoE / AoE), final RMSNorm, LM head (tied or untied). fp32.
// All activations of a training forward are kept for the backward pass; those that feed only
// matrix products are activation blocks (kernels.h act_*), stored in bf16 when the model is
// built in bf16 precision.
#ifndef AOE_MODEL_H
#define AOE_MODEL_H

#include <stdint.h>
#include <stdio.h>

#include "config/config.h"
#include "model/ffn.h"
#include "model/params.h"

typedef struct {
    size_t attn_norm, wq, wk, wv, wo, ffn_norm;  // parameter offsets
    const FfnOps *ffn;
    void *ffn_state;
    // activations [T,d] unless noted; ln1, q, k, v, atty are activation blocks (kernels.h)
    float *x, *ln1, *rstd1, *q, *k, *v, *att /*[B,H,S,S]*/, *atty, *xmid, *ln2, *rstd2, *ffo;
} Block;

typedef struct {
    Config cfg;
    int V, d, L, H, hd, S, max_B;
    Params P;
    size_t wte, final_norm, lm_head;  // lm_head [d,V] untied; tied uses wte [V,d] transposed
    Block *blocks;
    float *xL, *lnf, *rstdf, *logits /*[T,V] -> probs after forward*/, *cosb, *sinb;
    // backward scratch
    float *dres, *dln, *dq, *dk, *dv, *datty, *datt, *dlnf;
    int B, T;  // shape of the last forward
    const int32_t *tokens;
    double aux;  // weighted auxiliary loss of the last training forward
    // Scoring mode (eval), 0 by default: a non-training forward computes the LM head only at
    // positions with a target >= 0, and leaves raw logits (not probabilities) in their rows of
    // m->logits; the other rows are not written. Losses and argmax are unchanged; it saves the
    // head products of context and padding positions.
    int score_only;
    // Optional: model_backward calls grad_ready(grad_ctx, lo, hi) for each range [lo, hi) of P.g
    // as soon as it has finished writing it (the head and final norm, then each block from the
    // last, then the embedding), so a data-parallel step can start summing it. NULL: not called.
    void (*grad_ready)(void *ctx, size_t lo, size_t hi);
    void *grad_ctx;
} Model;

// The whole config's rules, each checked once: config_validate (training keys), attention
// shapes, then the FFN kind's check (sparse: layer placement, score source, selection method).
// Returns NULL or a message naming the keys (static or in buf).
const char *model_check_config(const Config *cfg, char *buf, int len);
// config_validate + model_check_config; exits 2 with "<src>: <message>".
void model_validate_config(const Config *cfg, const char *src);
// Can config key `key` ("model.ffn.d_low") change a model built from cfg or its training? 0 for a
// model.ffn.* key that only other FFN kinds, score sources or selection methods read (their
// `keys` lists: d_low on a router MoE, etr_* with select topk, everything sparse on dense);
// 1 for every other key, and whenever cfg names an unknown kind or method.
int model_key_used(const Config *cfg, const char *key);

// Builds the parameter table for cfg (vocab V; cfg must have passed model_validate_config) and
// allocates activations for up to max_B sequences of cfg->seq_len. Parameters are initialised from `seed`.
Model *model_create(const Config *cfg, int V, int max_B, uint64_t seed);
// A model of src's weights (not copied: src must outlive it) with another seq_len / max_B in cfg
// (the rest of cfg must equal src->cfg): no parameter initialisation, no gradient block (P.g is
// NULL), so forward only. Set P.w = NULL before model_free so the shared block is not freed.
Model *model_create_shared(const Config *cfg, int V, int max_B, const Model *src);
void model_free(Model *m);

// Forward over tokens [B,S]; targets [B,S] (negative = ignored). Returns mean cross-entropy.
// Training: B <= max_B and S = the built seq_len. train = 0 also takes any shorter S with
// B*S <= max_B*seq_len (more, shorter sequences; same numbers as a model built at that S).
// losses [B*S] optional (per-token NLL). train = 1 keeps caches and computes aux losses.
// After it, m->logits holds softmax probabilities [B*S, V] (raw logits at scored positions only
// when m->score_only, see above).
double model_forward(Model *m, const int32_t *tokens, const int32_t *targets, int B, int S,
                     float *losses, int train, Rng *rng);
// Backward of the last training forward; grads accumulate (+=) into m->P.g. loss_scale multiplies
// the mean-loss gradient and the auxiliary gradients (1/grad_accum).
void model_backward(Model *m, const int32_t *targets, float loss_scale);

// Counts: total and active (per-token) parameters, forward FLOPs per token (matrix products,
// attention over the full context).
void model_count(const Config *cfg, int V, double *total, double *active, double *flops_fwd);
// Training progress in [0,1] (step / (train.steps - 1)) for layers with schedules (ETR capacity);
// the training loop sets it before each step. Default 0.
void model_set_progress(Model *m, float progress);
// The precision the products of a model loaded with config cfg should use: `override` (fp32|bf16|auto) when given,
// else the one its config records (train writes the choice it made; "auto" remains only in
// checkpoints written before train.precision existed, which trained in fp32). Dies (exit 2) on
// an override that names none; warns when bf16 has no native support on this CPU.
int model_precision(const Config *cfg, const char *override);
// Writes one load-statistics line per sparse layer and resets the accumulators. Under data
// parallelism every rank calls it (the counts are summed across ranks); f = NULL on all but rank 0.
void model_write_stats(Model *m, FILE *f, long step);

#endif
