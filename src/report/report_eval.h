// report_eval.h — which eval results belong to which run of a report, and reading them.
#ifndef AOE_REPORT_EVAL_H
#define AOE_REPORT_EVAL_H

#include "report/report_model.h"

// Sets each run's eval_path. Without evdirs: RUN/eval/results.json when present (tools/sweep.sh,
// `aoe eval RUN --out RUN/eval`). Each DIR of evdirs is an `aoe eval ... --out DIR`: DIR/results.json
// (one checkpoint) and DIR/*/results.json (several); a file belongs to the run whose directory holds
// the checkpoint it names ("checkpoint"."path", else the run directory's name as the first part of
// its label), and such a file replaces RUN/eval/results.json. Of several files for one run the one
// of the latest checkpoint step is taken; two at the same step are an error.
void report_find_evals(Run *runs, int nrun, const char *const *evdirs, int nev);
// Reads r->eval_path (lm-eval shape, docs/eval.md): each top-level task's main metric (acc_norm,
// else acc; perplexity-only tasks and sub-tasks such as BLiMP paradigms are skipped), the bits per
// byte of the shards task, and the parameter counts of the checkpoint block when r has none.
void report_read_eval(Run *r);

#endif
