// test_sparse.h — the finite-difference loop shared by the sparse-layer tests (test_moe.c,
// test_etr.c, test_select.c); defined in test_fixtures.c.
#ifndef AOE_TEST_SPARSE_H
#define AOE_TEST_SPARSE_H

#include "model/moe.h"

// Central-difference check of a sparse layer (test_fixtures.c): the analytic gradients already in
// P->g and dx [T,d] against moe_objective_naive(L, P, x, T, G, aux_scale), for every tensor from
// first_tensor on, then the input x. Coordinates whose ±eps perturbation changes the kept
// (token, slot) choices [T,kmax] are skipped and counted in *skipped / *total. Errors are relative
// to each tensor's largest gradient (floor max(1e-3·gmax, floor)); tensors above 2e-3 are printed
// with label. Returns the worst error, 1 if a tensor gets no gradient at all.
double test_sparse_fd(const MoeLayer *L, Params *P, float *x, const float *dx, const float *G,
                      int T, int d, int kmax, float aux_scale, int first_tensor, double floor,
                      const char *label, int *skipped, int *total);

#endif
