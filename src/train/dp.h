// dp.h — what the training loop does differently on N MPI ranks (dist.h does the MPI).
// Data parallelism: train.batch_size stays the global micro-batch; rank r trains on B/N of its
// sequences (the loader's rank striding), every rank scales its gradient by 1/N and the ranks'
// gradients are summed, so the sum is the gradient of the global mean loss. Batch statistics
// (loss, balancing-loss counts, load.jsonl counts, validation loss) are reduced before use.
// The optimizer step is split (without expert parallelism or overlapped sums): the gradient is
// reduce-scattered instead of all-reduced, rank r updates only its 1/N part of the flat block
// and the updated weights are all-gathered — the same bytes as one all-reduce, and each rank runs
// 1/N of the optimizer instead of all of it. The optimizer state is then current on each rank
// only in its part until dp_optim_gather collects it for a checkpoint.
// Expert parallelism (train.expert_parallel = E) is set up here and runs in model/moe_ep.c: a
// rank holds, computes and trains only its experts' slices of the expert tensors (parameters,
// gradients, optimizer state and bf16 copies are allocated for those slices only; the other
// parameters are replicated). Expert gradients are summed over the N/E replicas only, every other
// gradient over all N ranks. A checkpoint holds the whole model: rank 0's writer gathers each
// expert tensor from its group, one tensor at a time (dp_ckpt_gather / dp_ckpt_send).
#ifndef AOE_DP_H
#define AOE_DP_H

#include "config/config.h"
#include "model/model.h"
#include "model/params.h"
#include "train/optim.h"

// Checks the launch against the config (batch divisible by the rank count, E divides it), sets
// up the expert-parallel groups and returns this rank's micro-batch (sequences). Exits 2 with one
// line naming the key on a mismatch.
int dp_setup(const Config *c);
// After model_create: notes the expert tensors (expert parallelism) or this rank's part of a
// split optimizer step.
void dp_bind(const Params *P);
// on = 1: the next model_backward starts summing each part of the gradient as soon as it is
// final (non-blocking, bucketed by block) and dp_sum_grads then only waits; call it with on = 1
// before the last micro-batch's backward of a step only (the others' gradients are not final).
void dp_overlap_next_backward(Model *m, int on);
// Sums the gradient over the ranks in fp32: one all-reduce; with expert parallelism the expert
// slices over their replicas and the rest over all ranks; with a split step only this rank's
// part (reduce-scatter). No-op on one rank.
void dp_sum_grads(Params *P);
// The global gradient norm after dp_sum_grads (grad_norm, plus the other ranks' expert slices;
// or the parts' sums of squares).
double dp_grad_norm(const Params *P);
// optim_step_scaled, or with a split step: this rank's part, then the weights all-gathered.
void dp_optim_step(Optim *o, Params *P, const Config *c, float lr, float gscale);
// Before a checkpoint is written (every rank): with a split step, all-gathers each optimizer state
// array so rank 0 holds all of it. No-op otherwise.
void dp_optim_gather(Optim *o);
// Floats of the flat block this rank's optimizer updates with a split step, else 0.
size_t dp_optim_share(void);
// The checkpoint writer's gather (ckpt.h CkptGatherFn) on rank 0: the whole tensor t from rank
// 0's slices in `local` and its group's; the group's other ranks call dp_ckpt_send meanwhile,
// which feeds every gather in the writer's order. No-op on ranks outside rank 0's group.
void dp_ckpt_gather(const float *local, const TensorInfo *t, float *whole);
void dp_ckpt_send(const Params *P, const Optim *o);
// Floats of expert slices this rank holds (0 without expert parallelism).
size_t dp_expert_floats(void);
// Ring all-reduce bytes one rank sends per step for a block of n_params local floats: the
// non-expert part over all N ranks, the expert slices over their N/E replicas.
double dp_ring_bytes(size_t n_params);
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
