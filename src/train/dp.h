// dp.h — what the training loop does differently on N MPI ranks (dist.h does the MPI).
// Data parallelism: train.batch_size stays the global micro-batch; rank r trains on B/N of its
// sequences (the loader's rank striding), every rank scales its gradient by 1/N and the ranks'
// gradients are summed, so the sum is the gradient of the global mean loss. Batch statistics
// (loss, balancing-loss counts, load.jsonl counts, validation loss) are reduced before use.
// Expert parallelism (train.expert_parallel = E) is set up here and runs in model/moe_ep.c: a
// rank computes and trains only its experts' slices of the expert tensors. Their gradients are
// summed over the N/E replicas only; every other gradient over all N ranks. Parameters and
// optimizer state are allocated whole on every rank (the other experts' slices go stale between
// checkpoints and are never read); dp_gather_experts makes them whole before a checkpoint.
#ifndef AOE_DP_H
#define AOE_DP_H

#include "config/config.h"
#include "model/params.h"
#include "train/optim.h"

// Checks the launch against the config (batch divisible by the rank count, E divides it), sets
// up the expert-parallel groups and returns this rank's micro-batch (sequences). Exits 2 with one
// line naming the key on a mismatch.
int dp_setup(const Config *c);
// After model_create: notes the expert tensors (expert parallelism only).
void dp_bind(const Params *P);
// Sums the gradient over the ranks in fp32: one all-reduce; with expert parallelism the expert
// slices over their replicas and the rest over all ranks. No-op on one rank.
void dp_sum_grads(Params *P);
// The global gradient norm after dp_sum_grads (grad_norm, plus the other ranks' expert slices).
double dp_grad_norm(const Params *P);
// Expert parallelism: copies every expert slice (weights and optimizer state) from its owner to
// the group, so rank 0 holds the whole model for a checkpoint. Collective; no-op without EP.
void dp_gather_experts(Params *P, Optim *o);
// Averages loss and aux over the ranks.
void dp_step_stats(double *loss, double *aux);
// The stop decision every rank takes: this rank's signal, else SIGTERM if any other rank got one.
int dp_stop_agree(int stop);
// One line (rank 0's stdout) with this rank's communication per training step since
// dist_stats_reset: measured all-reduce and all-to-all bytes against their formulas (ring
// all-reduce 4·P·2(N-1)/N for P parameters; moe_ep_uniform_bytes), and the share of `wall` seconds.
void dp_report_comm(const Config *c, size_t n_params, long tokens_per_micro, long steps, double wall);
// The test hook for "one rank dies": AOE_TEST_KILL_RANK=r limits AOE_TEST_KILL_AT_STEP to rank r.
int dp_kill_hook_applies(void);

#endif
