// etr.h — Expert-Token Resonance state, exposed for the reference layer (moe_ref.c) and tests.
// The method itself is select_etr (etr.c); layers only use the SelectMethod interface.
#ifndef AOE_ETR_H
#define AOE_ETR_H

#include "select/select.h"

#define ETR_LOC_ETA 0.01  // D_l = (1−η)·uniform over the local experts + η·uniform over all

typedef struct {
    float cap_start, cap_end, loc_coef;  // model.ffn.etr_cap_start, etr_cap_end, etr_loc_coef
    int groups;                          // model.ffn.etr_groups (G)
    float tau;                           // model.ffn.etr_tau (1 = off)
    // last training forward
    double cap_factor;  // capacity factor c_f at s->progress
    long cap;           // tokens kept per expert, etr_capacity()
    double loc;         // raw locality loss
    double loc_sum;     // Σ loc over the forwards of the current statistics interval
    // scratch
    void *cand;         // [max_T·kmax] ECR candidates
    int *start;         // [n+1] bucket of each expert in cand
    double *dc, *a;     // [G,n] D_c per token group, ln(D_c/D_l)
    int *tg, ne;        // [G] tokens per group (of all data-parallel ranks), non-empty groups
    double tscale;      // tokens of all ranks / this rank's (1 on one process)
    int *sel;           // [n] experts a token keeps (ECR only)
    float *gs;          // [n] their gates
} Etr;

// NULL unless s runs ETR (select etr) / ETR's expert-side stage alone (select etr_ecr).
const Etr *etr_state(const Selection *s);
const Etr *etr_ecr_state(const Selection *s);
// c_f = cap_start + (cap_end − cap_start)·progress (linear over training, progress in [0,1]).
double etr_cap_factor(const Etr *e, float progress);
// Tokens an expert keeps: max(1, ceil(c_f·K·T/n)) (with a 1e-6 relative slack for float factors).
long etr_capacity(double cap_factor, int K, int T, int n);

#endif
