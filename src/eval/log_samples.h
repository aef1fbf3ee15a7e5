// log_samples.h — `aoe eval --log-samples`: one JSON line per scored document, shaped like
// lm-evaluation-harness's samples_<task>.jsonl (docs/eval.md, "Per-sample logs"). Log-likelihoods
// are written as they are (natural log, full double precision), never exponentiated.
#ifndef AOE_EVAL_LOG_SAMPLES_H
#define AOE_EVAL_LOG_SAMPLES_H

#include <stdint.h>
#include <stdio.h>

#include "eval/scorer.h"
#include "eval/tasks.h"

// Item i of a choice / cloze / pair task: doc, arguments [[context, continuation], ...], resps
// [[[ll, is_greedy]], ...], target and the item's metrics, plus (aoe's addition) the scored token
// ids of each request and how many of its last ids are the continuation. q, r and clen: its
// requests' token sequences, scores and choice lengths (acc_norm divisors), in request order.
void samples_choice(FILE *f, const Task *t, int i, int shots, uint64_t seed, const Seq *q, const SeqScore *r,
                    const int *clen);
// Document doc_id of a rolling-perplexity task: its log-likelihood and the (ll, weight) pairs
// lm-eval keeps per sample for word_perplexity, byte_perplexity and bits_per_byte.
void samples_rolling(FILE *f, int doc_id, const char *doc, double ll, double words, double bytes, int tokens);
// Window g of a shard-perplexity task (S scored tokens).
void samples_window(FILE *f, long g, const char *shards, double ll, int S);

#endif
