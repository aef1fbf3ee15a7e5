// test_eval_fixtures.h — tiny tokenizer / model / checkpoint for the eval tests
// (test_eval_fixtures.c).
#ifndef AOE_TEST_EVAL_FIXTURES_H
#define AOE_TEST_EVAL_FIXTURES_H

#include <stddef.h>

#include "data/tokenizer.h"
#include "model/model.h"

extern const char *eval_corpus;  // a few English sentences
Tokenizer *eval_tiny_tok(int vocab);  // BPE trained on eval_corpus
// d_model 32, 2 layers, init_std 0.2; ffn "dense", "moe" or "aoe" (4 experts, top 2)
Model *eval_tiny_model(const char *ffn, int V, int S, int maxB);
// Writes DIR/tok.bpe (eval_tiny_tok(300)) and DIR/ckpt-STEP.aoec (an eval_tiny_model, S 64,
// parameters only) and returns their paths; 0 on success.
int eval_tiny_ckpt(const char *dir, const char *ffn, long step, char *ck, size_t ck_cap, char *tok, size_t tok_cap);

#endif
