// moe.h — sparse FFN layers: router MoE (model.ffn.type = moe) and Autonomy-of-Experts
// (model.ffn.type = aoe), both FfnOps. The layer owns the experts and the dispatch (tokens grouped
// by expert, one matrix product per expert); the scores S [T,n] come from a score source
// (src/model/score.h: router, AoE key norms, GrAP affinities), and which experts a token uses,
// the gate weights, the auxiliary losses and the load statistics from a selection method
// (src/select, model.ffn.select). The layer has no branch on either.
//
// Parameters (row-vector convention y = x·W, row-major, d = d_model, n experts, D = expert width):
//   router MoE: layers.L.ffn.router [d,n] (logits = X·R), w_gate [n,d,D], w_proj [n,d,D],
//               w_out [n,D,d]; expert e: (SiLU(x·Wg_e) ⊙ (x·Wp_e))·Wo_e, D = model.ffn.d_ff.
//   AoE:        layers.L.ffn.w_down [d,n·r] (column block e = expert e's W_down), w_up [n,r,Dw],
//               w_proj [n,d,Dw], w_out [n,Dw,d]; Dw = ffn_d_wide(c), r = model.ffn.d_low.
//               scores S[t,e] = ||x_t·W_down_e||; expert e: (SiLU(c_te·Wup_e) ⊙ (x·Wp_e))·Wo_e
//               with the cached key c_te = x_t·W_down_e.
//   ETR (model.ffn.type moe, select etr): as router MoE without the router; scores are the fixed
//               GrAP affinities of src/model/grap.h (d_model divisible by n_experts).
//   The score part (router, w_down, none) is registered by the score source, first.
// All tensors (router included) are initialised N(0, model.init_std²) and weight-decayed, except
// w_out: N(0, (init_std/sqrt(2·n_layer))²), like the dense FFN's output projection.
#ifndef AOE_MOE_H
#define AOE_MOE_H

#include "model/ffn.h"
#include "model/score.h"
#include "select/select.h"

extern const FfnOps ffn_moe_ops, ffn_aoe_ops;

// Layer state (exposed for the reference implementation and tests; treat as private).
typedef struct {
    const char *type;         // model.ffn.type (moe | aoe), for the statistics line
    int layer, d, n, K, kmax, D, r, max_T;  // D: expert width (d_ff or d_wide); r: key width
    int e0, ne;               // the experts this process holds: e0 .. e0+ne-1 (all n without EP)
    int gin;                  // width of the experts' gate-branch input: r if the source has keys, else d
    size_t o_gate;            // w_gate [n,d,D] (input x) or w_up [n,r,D] (input: the source's key)
    size_t o_proj, o_out;     // w_proj [n,d,D], w_out [n,D,d]
    Score score;              // the score source: S [T,n], its parameters and backward
    Selection *sel;
    // cache of the last forward (T tokens, R = T·kmax dispatch rows at most)
    int T, rows;
    int *cnt, *start;         // [n], [n+1]: rows of expert e are start[e] .. start[e+1]-1
    int *row_slot;            // [R] flat slot index t*kmax+j of each row (tokens ascending per expert)
    int *slot_row;            // [T,kmax] row of each slot, -1 if the slot is empty or dropped
    // Xe, Ce, A, dY: activation blocks (kernels.h; fp32 under expert parallelism, except A)
    float *Xe, *Ce;           // [R,d] gathered inputs, [R,r] gathered keys (r > 0)
    float *U, *V, *A;         // [R,D] gate pre-activation, projection, SiLU(U)⊙V
    float *Y;                 // [R,d] expert outputs before the gate
    // backward scratch
    float *dY, *dU, *dV, *dXe, *dCe, *dgate;
    // The rows the experts run on: the local dispatch (cnt, start, Xe, Ce, Y, dY, dXe, dCe
    // above) or, under expert parallelism, the rows the group's ranks sent to this rank's experts
    // (moe_ep.c; cnt is 0 for experts held elsewhere). U, V, A, dU, dV are expert-side only.
    struct ExpertRows {
        int *cnt, *start;     // [n], [n+1]
        float *Xe, *Ce, *Y, *dY, *dXe, *dCe;
    } ex;
    struct MoeEp *ep;         // expert-parallel exchange state, NULL when off
} MoeLayer;

// The reference: per-token loops with double accumulation, the same selection rules (top-K
// token choice only), capacity and auxiliary losses. out [T,d]; returns the weighted auxiliary
// loss; choice [T,kmax] (may be NULL) gets the chosen experts (after capacity: -1 if dropped).
double moe_forward_naive(const MoeLayer *L, const Params *P, float *out, const float *x, int T, int *choice);
// The objective Σ_t,k G[t,k]·out[t,k] + aux_scale·aux entirely in double (for finite differences,
// whose backward is dout = G).
double moe_objective_naive(const MoeLayer *L, const Params *P, const float *x, int T, const float *G,
                           double aux_scale, int *choice);
// dx [T,d] (overwritten); dW [P->total] += parameter gradients, aux gradients scaled by aux_scale.
void moe_backward_naive(const MoeLayer *L, const Params *P, float *dx, float *dW, const float *dout,
                        const float *x, int T, float aux_scale);

// 1 = run experts in an OpenMP loop (one single-thread product each), 0 = one after another with
// multi-threaded products, -1 = choose by size (default). For benchmarks and tests.
void moe_set_expert_parallel(int mode);

#endif
