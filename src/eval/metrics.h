// metrics.h — one task's result (TaskResult: lm-eval's metrics with standard errors) and the
// functions that fill it from per-item scores.
#ifndef AOE_EVAL_METRICS_H
#define AOE_EVAL_METRICS_H

#include "eval/tasks.h"

typedef struct {
    char name[40];
    double value, stderr_;  // stderr_ < 0: not applicable ("N/A" in lm-eval)
    int higher_is_better;
} Metric;

typedef struct {
    char task[192];
    int n, n_original;          // items scored (after --limit) and in the file
    int shots;
    int subtask;                // a sub-task (BLiMP paradigm) of the preceding task
    TaskKind kind;
    Metric m[8];
    int n_m;
    const char *main_metric;
    double seconds, tokens;     // wall time and real (unpadded) tokens forwarded
    double positions;           // positions forwarded, padding included
} TaskResult;

// Mean and standard error of the mean (sample std / sqrt(n), lm-eval's mean_stderr).
void mean_stderr(const double *x, int n, double *mean, double *se);
// Multiple choice metrics from per-choice log-likelihoods: lls[i][j] for item i, choice j, with
// clen[i][j] the choice length in characters (acc_norm divisor). with_norm adds acc_norm.
void metrics_mc(TaskResult *r, int n, const int *n_opts, const double *const *lls,
                const int *const *clen, const int *gold, int with_norm);
// One item's acc (argmax of lls is gold, ties to the lowest index) and, if acc_norm != NULL, its
// acc_norm (argmax of lls[j] / clen[j]).
void item_mc(int n_opts, const double *lls, const int *clen, int gold, double *acc, double *acc_norm);
void metrics_cloze(TaskResult *r, int n, const double *ll, const int *greedy);
void metrics_ppl(TaskResult *r, double nll, double words, double bytes, double tokens);
const Metric *result_metric(const TaskResult *r, const char *name);

#endif
