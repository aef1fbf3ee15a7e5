// eval_mem.h — memory estimate of `aoe eval` before a checkpoint is loaded (eval_mem.c).
#ifndef AOE_EVAL_MEM_H
#define AOE_EVAL_MEM_H

// Exits 2 with one line naming the estimate and the limit if evaluating the checkpoint at `path`
// with a scorer of `budget` tokens per forward (precision override `prec`, may be NULL) cannot fit.
// dry_run: prints the estimate and what is available on stderr instead (as `aoe train --dry-run`)
// and never exits. Returns the estimate in bytes, or -1 if none could be made.
double eval_mem_check(const char *path, int budget, const char *prec, int dry_run);

#endif
