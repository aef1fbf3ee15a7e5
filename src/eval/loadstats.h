// loadstats.h — expert-load statistics on evaluation tokens (AoE paper §4.1.2, Eq.7–8, Fig. 3;
// methods.md §1.7): per sparse layer, the processed assignments per expert, Ent_load (entropy of
// the load fractions), Ent_conf (mean per-token entropy of softmax(scores)) and max − min load
// fraction. Filled after each forward from the layers' selection state, for the real (unpadded)
// positions only; `aoe eval --load-stats` feeds it through the scorer's hook and writes
// load_stats.json next to results.json.
#ifndef AOE_EVAL_LOADSTATS_H
#define AOE_EVAL_LOADSTATS_H

#include "model/model.h"
#include "util/common.h"

typedef struct LoadStats LoadStats;

LoadStats *loadstats_new(const Model *m);  // accumulators for m's sparse layers (zero)
void loadstats_free(LoadStats *ls);
void loadstats_reset(LoadStats *ls);
// After a forward of m over B rows of S positions: adds positions 0..len[b]-1 of each row b.
void loadstats_add(LoadStats *ls, const Model *m, const int *len, int B, int S);
// The scorer's hook form of loadstats_add (ctx = the LoadStats).
void loadstats_hook(void *ctx, const Model *m, const int *len, int B, int S);
// Appends {"tokens":N,"layers":[{"layer":l,"counts":[...],"ent_load":..,"ent_conf":..,
// "max_minus_min":..},...]} for what was added since the last reset.
void loadstats_json(const LoadStats *ls, Buf *b);

#endif
