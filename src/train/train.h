// train.h — pieces of the training command that other commands (resume, eval, bench) reuse.
#ifndef AOE_TRAIN_H
#define AOE_TRAIN_H

#include <stdint.h>

#include "config/config.h"
#include "data/loader.h"
#include "model/model.h"

// Resolves defaults <- CONFIG.json <- key=value overrides and validates; exits 2 on bad input.
// resume may be NULL (then --resume is rejected as an unknown option).
void train_parse_args(int argc, char **argv, Config *c, int *dry_run, const char **resume);
// Mean validation loss over train.eval_batches batches from the start of `val`.
double evaluate(Model *m, Loader *val, int32_t *x, int32_t *y);

// Memory a run needs, estimated before allocating (estimate.c). Bytes.
typedef struct {
    double total, params, grads, optim, acts, bf16, base;  // one process (rank)
    int ranks;               // the MPI ranks the batch is split over
    int complete;            // 0: the estimate ran out of address space (total is a lower bound)
    double avail;            // what the machine allows (< 0 unknown), and where that came from
    const char *avail_what;
} MemEstimate;
// One rank of a run on `ranks` MPI ranks (1 = no MPI): its B/ranks sequences and, with
// train.expert_parallel = E, its 1/E of the experts (parameters, gradients, optimizer state,
// bf16 copies) and the E-fold buffers for the rows other ranks send. Returns 0, or -1 if no
// estimate could be made.
int train_mem_estimate(const Config *c, int V, int ranks, MemEstimate *e);
// "412.00 MiB (parameters ..., ...)" into buf.
void mem_estimate_line(const MemEstimate *e, char *buf, size_t n);
// dry_run: prints "memory estimate: ...; available: ..." on stderr. Otherwise exits 2 with one
// line naming the estimate and the limit if the run cannot fit. The estimate is one rank's (see
// train_mem_estimate); the check counts it `local` times (the ranks on this machine).
void train_mem_check(const Config *c, int V, int ranks, int local, int dry_run);

#endif
