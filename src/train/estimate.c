// estimate.c — the memory one process of `aoe train` will need, estimated before anything big is
// allocated (under MPI: one rank's share of the batch and, with expert parallelism, its experts):
// the model (parameters, gradients, activations and buffers), the optimizer state and the batch
// buffers are built in a dry child (util/mem.h) that counts every allocation without touching
// it; bf16 weight copies (made by the kernels on the first weight update) and what the process
// already holds are added. Checked against MemAvailable / the cgroup limit.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/kernels.h"
#include "model/model.h"
#include "model/moe_ep.h"
#include "train/optim.h"
#include "train/train.h"
#include "util/mem.h"

typedef struct { const Config *c; int V, B, E; } Build;

// Everything cmd_train allocates per run (per rank), in the same calls.
static void build_train(void *ctx) {
    const Build *b = ctx;
    moe_ep_layout(b->E, 0);  // the sparse layers hold 1/E of the experts (every rank the same share)
    // activation blocks take the storage of the precision set when they are allocated (kernels.h,
    // bf16: half): set it as the run does (--dry-run does not set it in the parent)
    kernels_set_precision(precision_parse(b->c->precision) == PREC_BF16 ? PREC_BF16 : PREC_FP32);
    Model *m = model_create(b->c, b->V, b->B, b->c->seed);
    mem_dry_note((double)m->P.total);  // parameter floats this rank holds
    Optim o;
    optim_init(&o, optim_for_config(b->c, "config"), &m->P);
    int T = b->B * b->c->seq_len;
    xmalloc(sizeof(int32_t) * T);
    xmalloc(sizeof(int32_t) * T);
}

int train_mem_estimate(const Config *c, int V, int ranks, MemEstimate *e) {
    memset(e, 0, sizeof *e);
    Build b = {c, V, (c->batch_size + ranks - 1) / ranks, c->expert_parallel};
    MemCount mc;
    if (mem_count(build_train, &b, &mc)) return -1;
    const OptimOps *ops = optim_for_config(c, "config");
    double held = mc.note;  // parameter floats of one rank (all of them without expert parallelism)
    e->ranks = ranks;
    e->params = 4 * held;
    e->grads = 4 * held;
    e->optim = 4 * held * ops->n_state;
    e->bf16 = precision_parse(c->precision) == PREC_BF16 ? 2 * held : 0;
    e->acts = mc.counted - e->params - e->grads - e->optim;
    if (e->acts < 0) e->acts = 0;
    e->base = mc.base;
    e->complete = mc.complete;
    e->total = mc.counted + e->bf16 + e->base;
    e->avail = mem_available(&e->avail_what);
    return 0;
}

void mem_estimate_line(const MemEstimate *e, char *buf, size_t n) {
    char t[7][32];
    snprintf(buf, n, "%s%s (parameters %s, gradients %s, optimizer state %s, activations and buffers %s, bf16 copies %s, "
             "process so far %s)", e->complete ? "" : "more than ", mem_fmt(e->total, t[0], 32), mem_fmt(e->params, t[1], 32),
             mem_fmt(e->grads, t[2], 32), mem_fmt(e->optim, t[3], 32), mem_fmt(e->acts, t[4], 32),
             mem_fmt(e->bf16, t[5], 32), mem_fmt(e->base, t[6], 32));
}

void train_mem_check(const Config *c, int V, int ranks, int local, int dry_run) {
    MemEstimate e;
    if (train_mem_estimate(c, V, ranks, &e)) {
        if (dry_run) fprintf(stderr, "memory estimate: unavailable (could not start the estimating process)\n");
        return;
    }
    char line[512], av[32];
    mem_estimate_line(&e, line, sizeof line);
    if (dry_run) {
        char who[96] = "";
        if (ranks > 1)
            snprintf(who, sizeof who, " per rank of %d (%d sequences each, expert parallel %d)", ranks,
                     (c->batch_size + ranks - 1) / ranks, c->expert_parallel);
        fprintf(stderr, "memory estimate%s: %s; available: %s (%s)\n", who, line,
                e.avail >= 0 ? mem_fmt(e.avail, av, sizeof av) : "unknown", e.avail_what);
        return;
    }
    // what is already resident is part of the estimate and no longer part of "available"; the
    // other ranks on this machine are starting the same allocation from the same free memory
    if (e.avail >= 0 && (!e.complete || local * (e.total - e.base) > e.avail)) {
        char per[64] = "";
        if (local > 1) snprintf(per, sizeof per, " per rank, times %d ranks on this machine,", local);
        die_input("memory: this training run needs about %s%s but only %s are available (%s); reduce the model or "
                  "train.batch_size%s", line, per, mem_fmt(e.avail, av, sizeof av), e.avail_what,
                  local > 1 ? ", or start fewer ranks per machine (or use train.expert_parallel)" : "");
    }
}
