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

#endif
