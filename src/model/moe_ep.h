// moe_ep.h — expert parallelism for the sparse layers (train.expert_parallel = E, dist.h groups).
// Each rank of a group of E holds experts e0 .. e0+n/E-1 (e0 = group rank · n/E) for compute.
// After selection a rank's dispatch rows are sorted by expert, so the rows for rank q's experts
// are one contiguous block: MPI_Alltoallv sends them (inputs x, for AoE also the key c = x·W_down_e
// of the chosen expert), the experts run on what arrived, and the outputs go back the same way;
// the backward sends dY out and brings dX (and dc) back. Selection, gates and the score source
// stay on the token's rank: the router, and for AoE W_down, are replicated (every rank needs all
// n scores of its tokens to rank them; docs/performance.md).
#ifndef AOE_MOE_EP_H
#define AOE_MOE_EP_H

#include "model/moe.h"

// The expert layout sparse layers are built with: groups of E, this process at group rank me
// (holds experts me·n/E .. (me+1)·n/E-1). train/ sets it from the MPI groups before model_create;
// a memory estimate sets it to count one rank's share. Default 1, 0 (every expert).
void moe_ep_layout(int E, int me);
int moe_ep_group_size(void);   // E (1 = off)
int moe_ep_layout_rank(void);  // me
// NULL when E = 1; else points L->ex at buffers for R rows arriving at this rank (what it sends
// with balanced routing); moe_ep_dispatch regrows them, and L's U, V, A, dU, dV, when more arrive.
struct MoeEp *moe_ep_create(MoeLayer *L, size_t R);
void moe_ep_destroy(MoeLayer *L);  // before L's buffers are freed (some are shared)
void moe_ep_dispatch(MoeLayer *L);       // L->Xe, L->Ce -> L->ex (rows of this rank's experts)
void moe_ep_combine(MoeLayer *L);        // L->ex.Y -> L->Y (rows of this rank's tokens)
void moe_ep_dispatch_grad(MoeLayer *L);  // L->dY -> L->ex.dY
void moe_ep_combine_grad(MoeLayer *L);   // L->ex.dXe, dCe -> L->dXe, L->dCe
// Bytes one rank sends per training step (forward + backward) when its T tokens per micro-batch
// choose experts uniformly: each of the n_sparse layers sends S = T·K·(E-1)/E rows off-rank and
// gets as many back; a row costs d floats out and d back in each pass, plus AoE's key (r floats)
// out in the forward and its gradient back in the backward:  n_sparse · S · (4d + 2r) · 4 bytes
// per micro-batch (router MoE: r = 0, i.e. tokens × d_model × 4 × 2 per pass). 0 without EP.
double moe_ep_uniform_bytes(const Config *c, int E, long T);

#endif
