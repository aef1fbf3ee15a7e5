// results.h — what `aoe eval` writes: results.json in lm-eval's shape per checkpoint and the
// report.md comparison table (docs/eval.md).
#ifndef AOE_EVAL_RESULTS_H
#define AOE_EVAL_RESULTS_H

#include <stdint.h>

#include "eval/metrics.h"

typedef struct {
    const char *path, *label;
    uint64_t file_hash, tok_hash;
    long step;
    double params_total, params_active;
    const char *config_json;  // resolved config (may be NULL)
    TaskResult *res;
    int n_res;
    double seconds;
    char *load_stats;         // --load-stats: load_stats.json text, else NULL
} CkptResults;

typedef struct {
    const char *tasks_arg;
    int limit, shots, tok_budget, threads;
    uint64_t seed;
    const char *data_dir;
} EvalSettings;

// results.json in lm-eval's shape for one checkpoint (malloc'd JSON text).
char *results_json(const CkptResults *c, const EvalSettings *s);
// report.md: comparison table (rows = checkpoints, columns = main metric of each task + average
// of the accuracy tasks) and per-task details (malloc'd).
char *results_markdown(const CkptResults *c, int n_ckpt, const EvalSettings *s);

#endif
