// eval_task.h — runs one task on a scorer: builds each item's requests (few-shot prefix +
// context, continuation), scores them and fills its results.
#ifndef AOE_EVAL_TASK_H
#define AOE_EVAL_TASK_H

#include <stdint.h>

#include "eval/metrics.h"
#include "eval/scorer.h"
#include "eval/tasks.h"

// Runs one task on a scorer (shots drawn from the task itself with `seed`, excluding the item).
// Writes one or more results (sub-tasks after the main one); returns their count.
int eval_task(Scorer *sc, const Tokenizer *tk, const Task *t, int limit, int shots, uint64_t seed,
              TaskResult *out, int max_out);
// Builds the prompt (few-shot prefix + context) of request j of item i; cont gets the
// continuation with its delimiter. Both malloc'd. Exposed for tests.
void build_request(const Task *t, int i, int j, int shots, uint64_t seed, char **ctx, char **cont);

#endif
