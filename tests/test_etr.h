// test_etr.h — the ETR layer fixture shared by test_etr.c and test_etr_ablate.c (defined in
// test_fixtures.c): a router-free MoE layer (model.ffn.select etr or etr_ecr) with initialised
// parameters and a training progress.
#ifndef AOE_TEST_ETR_H
#define AOE_TEST_ETR_H

#include "model/moe.h"

typedef struct {
    const char *gate;   // etr_gate: grap | cosine
    int d, n, K, D, T, groups;
    float std, lb, loc, cap0, cap1, progress;
    // optional (zero = default): method (etr | etr_ecr), etr_tau (0 = 1, off), etr_renorm
    const char *method;
    float tau;
    int renorm;
} Spec;

typedef struct {
    Config c;
    Params P;
    MoeLayer *L;
} Fix;

void cfg_etr(Config *c);  // defaults + type moe, select etr, top-1
void fix_make(Fix *f, const Spec *s, uint64_t seed);
void fix_free(Fix *f);
void train_forward(Fix *f, float *out, const float *x, int T);  // training forward, rng seed 1

#endif
