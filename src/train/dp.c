// dp.c — see dp.h.
#include "train/dp.h"

#include <stdlib.h>

#include "dist/dist.h"
#include "util/common.h"

int dp_setup(const Config *c) {
    int N = dist_size(), E = c->expert_parallel;
    if (c->batch_size % N)
        die_input("train.batch_size (%d, the global micro-batch) must be divisible by the %d MPI ranks", c->batch_size, N);
    if (N % E)
        die_input("train.expert_parallel (%d) must divide the number of MPI ranks (%d)", E, N);
    dist_ep_setup(E);
    return c->batch_size / N;
}

void dp_sum_grads(Params *P) { dist_sum_f(P->g, P->total); }

void dp_step_stats(double *loss, double *aux, int *stop) {
    int N = dist_size();
    if (N == 1) return;
    double v[3] = {*loss, *aux, *stop ? 1 : 0};
    dist_sum_d(v, 3);
    *loss = v[0] / N;
    *aux = v[1] / N;
    *stop = *stop ? *stop : (v[2] > 0 ? 15 /* SIGTERM: another rank was asked to stop */ : 0);
}

int dp_kill_hook_applies(void) {
    const char *s = getenv("AOE_TEST_KILL_RANK");
    return !s || !*s || atoi(s) == dist_rank();
}
