// eval_task.h — runs one task on a scorer: builds each item's requests (few-shot prefix +
// context, continuation), scores them and fills its results.
#ifndef AOE_EVAL_TASK_H
#define AOE_EVAL_TASK_H

#include <stdint.h>
#include <stdio.h>

#include "eval/metrics.h"
#include "eval/scorer.h"
#include "eval/tasks.h"

// Runs one task on a scorer (shots drawn from the task itself with `seed`, excluding the item).
// Writes its results (sub-tasks after the main one; out must have room for eval_task_count(t))
// and returns their count, or -1 when a log-likelihood is not finite (the model diverged or
// is corrupt: nothing is scored, the caller refuses the checkpoint).
int eval_task(Scorer *sc, const Tokenizer *tk, const Task *t, int limit, int shots, uint64_t seed,
              TaskResult *out, int max_out);
// As eval_task, and with samples != NULL one JSON line per scored document (log_samples.h).
int eval_task_logged(Scorer *sc, const Tokenizer *tk, const Task *t, int limit, int shots, uint64_t seed,
                     TaskResult *out, int max_out, FILE *samples);
// Results eval_task writes for t: 1, plus one per sub-task (BLiMP paradigm).
int eval_task_count(const Task *t);
// What --limit leaves of a task that is not a shards task (windows depend on the model): the
// items (documents for perplexity) eval_task scores, and *total (may be NULL) of the file.
int eval_task_limit(const Task *t, int limit, int *total);
// Builds the prompt (few-shot prefix + context) of request j of item i; cont gets the
// continuation with its delimiter. Both malloc'd. Exposed for tests.
void build_request(const Task *t, int i, int j, int shots, uint64_t seed, char **ctx, char **cont);

#endif
