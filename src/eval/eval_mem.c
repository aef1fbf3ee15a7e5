// eval_mem.c — the memory `aoe eval` needs for one checkpoint, estimated before the checkpoint is
// loaded (util/mem.h): a dry child builds the model the way eval does (one sequence of
// activations, the scorer's batched model sharing its weights, bf16 copies when used) and counts
// every allocation; checked against MemAvailable / the cgroup limit.
#include <stdio.h>

#include "ckpt/ckpt.h"
#include "eval/eval_mem.h"
#include "eval/scorer.h"
#include "model/kernels.h"
#include "model/model.h"
#include "util/mem.h"

typedef struct { const Config *c; int V, budget; const char *prec; } Build;

static void build_eval(void *ctx) {
    const Build *b = ctx;
    Model *m = model_create(b->c, b->V, 1, b->c->seed);
    if (model_precision(&m->cfg, b->prec) == PREC_BF16) xmalloc(sizeof(uint16_t) * m->P.total);  // the bf16 weight copy
    scorer_new(m, b->budget);
}

double eval_mem_check(const char *path, int budget, const char *prec, int dry_run) {
    Config c;
    int V;
    ckpt_read_config(path, &c, &V);
    Build b = {&c, V, budget, prec};
    MemCount mc;
    if (mem_count(build_eval, &b, &mc)) {  // no estimate: go on as before
        if (dry_run) fprintf(stderr, "memory estimate: %s: unavailable (could not start the estimating process)\n", path);
        return -1;
    }
    double tot, act, fl;
    model_count(&c, V, &tot, &act, &fl);
    const char *what = "no limit found";
    double avail = mem_available(&what), need = mc.counted + mc.base;
    char t[5][32], line[400];
    snprintf(line, sizeof line, "%s%s (parameters %s, activations, buffers and bf16 copies %s, process so far %s)",
             mc.complete ? "" : "more than ", mem_fmt(need, t[0], 32), mem_fmt(4 * tot, t[1], 32),
             mem_fmt(mc.counted - 4 * tot, t[2], 32), mem_fmt(mc.base, t[3], 32));
    if (dry_run)
        fprintf(stderr, "memory estimate: %s: about %s; available: %s (%s)\n", path, line,
                avail >= 0 ? mem_fmt(avail, t[4], 32) : "unknown", what);
    else if (avail >= 0 && !(mc.complete && mc.counted <= avail))
        die_input("memory: evaluating %s needs about %s but only %s are available (%s); lower --batch-tokens or use a "
                  "larger machine", path, line, mem_fmt(avail, t[4], 32), what);
    return need;
}
