// dp.h — what the training loop does differently on N MPI ranks (dist.h does the MPI).
// Data parallelism: train.batch_size stays the global micro-batch; rank r trains on B/N of its
// sequences (the loader's rank striding), every rank scales its gradient by 1/N and the ranks'
// gradients are summed, so the sum is the gradient of the global mean loss. Batch statistics
// (loss, balancing-loss counts, load.jsonl counts, validation loss) are reduced before use.
// Expert parallelism (train.expert_parallel = E) is set up here and runs in model/moe_ep.c.
#ifndef AOE_DP_H
#define AOE_DP_H

#include "config/config.h"
#include "model/params.h"

// Checks the launch against the config (batch divisible by the rank count, E divides it), sets
// up the expert-parallel groups and returns this rank's micro-batch (sequences). Exits 2 with one
// line naming the key on a mismatch.
int dp_setup(const Config *c);
// Sums the gradient over the ranks in fp32 (one all-reduce; no-op on one rank).
void dp_sum_grads(Params *P);
// Averages loss and aux over the ranks and ORs the stop flags, in one reduction.
void dp_step_stats(double *loss, double *aux, int *stop);
// The test hook for "one rank dies": AOE_TEST_KILL_RANK=r limits AOE_TEST_KILL_AT_STEP to rank r.
int dp_kill_hook_applies(void);

#endif
