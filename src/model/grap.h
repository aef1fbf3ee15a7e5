// grap.h — the GrAP affinity score source of Expert-Token Resonance (methods.md §3.1): fixed,
// mutually orthogonal gating vectors instead of a learned router. Expert i owns the feature group
// G_i = [i·m, (i+1)·m) of the token, m = d/n (d divisible by n), with w_i = n/d on G_i, 0 elsewhere.
//   z[t,i] = w_i·x_t = mean of x_t over G_i                          (GrAP logits)
//   δ[t,i] = cos(x_t, w_i) = Σ_{G_i} x_t / (sqrt(m)·||x_t||)          (cosine affinity)
// The vectors are fixed (LocMoE), not learned: no parameters, routing adapts only through the
// hidden states, and orthogonality holds by construction. Cost O(T·d), not O(T·d·n).
// The score source (ScoreOps score_grap, asked for by model.ffn.select etr) and its double-precision
// twin are in grap.c.
#ifndef AOE_GRAP_H
#define AOE_GRAP_H

// x [T,d] -> S [T,n] (z, or δ if cosine), aff [T,n] = δ, xnorm [T] = ||x_t|| (for backward).
void grap_forward(float *S, float *aff, float *xnorm, const float *x, int T, int d, int n, int cosine);
// dx [T,d] += dS [T,n]·∂S/∂x:  z: dx_tk += dS[t,g(k)]/m;
// δ: dx_tk += dS[t,g(k)]/(sqrt(m)·||x_t||) − x_tk·<dS_t, δ_t>/||x_t||²,  g(k) = k/m.
void grap_backward(float *dx, const float *dS, const float *aff, const float *xnorm, const float *x, int T,
                   int d, int n, int cosine);

#endif
