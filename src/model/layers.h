// layers.h — the dense building blocks of the decoder, each a _forward/_backward pair on raw
// row-major float arrays. Backward functions overwrite input gradients unless noted and
// accumulate (+=) parameter gradients. T = B*S flattened tokens.
#ifndef AOE_LAYERS_H
#define AOE_LAYERS_H

#include <stdint.h>

// out [T,d] = wte[tok[t]]
void embedding_forward(float *out, const int32_t *tok, const float *wte, int T, int d);
// dwte [V,d] += scatter of dout [T,d] (deterministic: serial over tokens per row block)
void embedding_backward(float *dwte, const float *dout, const int32_t *tok, int T, int d, int V);

// y [T,d] = x / rms(x) * w; rstd [T] cached.
void rmsnorm_forward(float *y, float *rstd, const float *x, const float *w, int T, int d, float eps);
// dx [T,d] += d/dx (accumulates: the residual stream adds), dw [d] +=.
void rmsnorm_backward(float *dx, float *dw, const float *dy, const float *x, const float *w,
                      const float *rstd, int T, int d);

// RoPE on q or k [B,S,H,hd] in place (rotate pairs (2i, 2i+1)); inverse=1 applies the transpose
// (used in backward). cos/sin tables [S, hd/2].
void rope_tables(float *cosb, float *sinb, int S, int hd, float theta);
void rope_apply(float *x, const float *cosb, const float *sinb, int B, int S, int H, int hd, int inverse);

// Causal multi-head attention core (after projections and RoPE).
// q,k,v [B,S,H*hd]; out [B,S,H*hd]; att [B,H,S,S] holds softmax probabilities (cache).
void attention_forward(float *out, float *att, const float *q, const float *k, const float *v,
                       int B, int S, int H, int hd);
// dq, dk, dv [B,S,H*hd] overwritten; datt [B,H,S,S] scratch.
void attention_backward(float *dq, float *dk, float *dv, float *datt, const float *dout,
                        const float *q, const float *k, const float *v, const float *att,
                        int B, int S, int H, int hd);
// Rows per causal tile (default 64; <= 0 restores it). For tests and benchmarks.
void attention_set_block(int rows);
// Oracle: per-element loops in double.
void attention_forward_naive(float *out, const float *q, const float *k, const float *v,
                             int B, int S, int H, int hd);

// Cross-entropy of logits [T,V] against targets [T]: overwrites logits with softmax
// probabilities, returns mean loss; losses [T] optional. Targets < 0 are ignored.
double crossentropy_forward(float *logits, float *losses, const int32_t *targets, int T, int V);
// The same losses and mean without touching logits (one read-only pass per row, rows with
// targets < 0 skipped): for scoring, where probabilities are not needed.
double crossentropy_loss(const float *logits, float *losses, const int32_t *targets, int T, int V);
// dlogits [T,V] = (probs - onehot) * scale, in place on probs.
void crossentropy_backward(float *probs, const int32_t *targets, int T, int V, float scale);

#endif
