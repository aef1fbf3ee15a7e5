// scorer.h — the scorer: (context, continuation) token sequences -> summed log-likelihoods and
// greedy flags on a Model, the way lm-evaluation-harness scores. It does not reuse a KV cache: the
// model API recomputes every sequence, so a question's shared context is "shared" only in the
// sense that all its choices run in the same batch.
#ifndef AOE_EVAL_SCORER_H
#define AOE_EVAL_SCORER_H

#include <stdint.h>

#include "data/tokenizer.h"
#include "model/model.h"

// A sequence to score: tok[0..n) (tok[0] is the EOT prefix); its last ncont tokens are scored,
// each given everything before it. n <= S+1 of the model (callers left-truncate).
typedef struct { const int32_t *tok; int n, ncont; } Seq;
typedef struct { double ll; int greedy; } SeqScore;

typedef struct Scorer Scorer;
// Wraps m (not owned) with a scoring model that shares m's weights and holds tok_budget positions
// (at least one sequence of m->S); short sequences run at short S (their longest member) in
// larger batches. tok_budget bounds B*S per forward (memory ~ L*H*budget*S).
Scorer *scorer_new(Model *m, int tok_budget);
void scorer_free(Scorer *s);
// Scores n sequences; forwards batch as many consecutive ones as fit the budget, in the given order.
void scorer_run(Scorer *s, const Seq *seqs, int n, SeqScore *out);
// One forward of tok[0..n) (n <= S); returns the probability row [V] of the last position.
const float *scorer_next_probs(Scorer *s, const int32_t *tok, int n);
// Optional: called after every forward with the scoring model, the batch shape [B,S] and each
// row's real (unpadded) input positions len [B] (e.g. expert-load statistics, eval/loadstats.h).
typedef void (*ScorerHook)(void *ctx, const Model *m, const int *len, int B, int S);
void scorer_set_hook(Scorer *s, ScorerHook fn, void *ctx);
int scorer_seq_len(const Scorer *s);   // the model's S (longest sequence)
long scorer_tokens(const Scorer *s);     // tokens forwarded so far (padding excluded)
long scorer_positions(const Scorer *s);  // positions forwarded (padding included)

// lm-eval's pair encoding: trailing spaces of ctx move to the continuation; the continuation's
// ids are encode(ctx+cont) minus the prefix of encode(ctx). Returns [EOT] + ctx ids + cont ids
// left-truncated to max_len tokens (malloc'd), *ncont = continuation ids kept.
int32_t *encode_pair(const Tokenizer *tk, const char *ctx, const char *cont, int max_len, int *n,
                     int *ncont);

#endif
