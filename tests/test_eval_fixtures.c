// test_eval_fixtures.c — the tiny tokenizer, model and checkpoint the eval tests score with
// (test_eval.c, test_eval_interop.c). No TESTs here.
#include <stdlib.h>
#include <string.h>

#include "ckpt/ckpt.h"
#include "test.h"
#include "test_eval_fixtures.h"
#include "util/common.h"

const char *eval_corpus =
    "The cat sat on the mat. The dog sat on the log. A bird sang in the tree, and the cat "
    "watched the bird. The sun is hot and the snow is cold. Water flows from the spout when the "
    "faucet is on. She poured milk in the bowl and lost her appetite. He went to the store. ";

Tokenizer *eval_tiny_tok(int vocab) {
    TokTrainer *tr = tok_trainer_new();
    for (int i = 0; i < 4; i++) tok_trainer_add(tr, eval_corpus, strlen(eval_corpus));
    return tok_trainer_finish(tr, vocab);
}

Model *eval_tiny_model(const char *ffn, int V, int S, int maxB) {
    Config c;
    config_defaults(&c);
    c.d_model = 32; c.n_layer = 2; c.n_head = 2; c.seq_len = S; c.init_std = 0.2f;
    snprintf(c.ffn.type, sizeof c.ffn.type, "%s", ffn);
    c.ffn.d_ff = 48;
    if (strcmp(ffn, "dense")) { c.ffn.n_experts = 4; c.ffn.top_k = 2; c.ffn.d_low = 8; }
    return model_create(&c, V, maxB, 11);
}

int eval_tiny_ckpt(const char *dir, const char *ffn, long step, char *ck, size_t ck_cap, char *tok, size_t tok_cap) {
    mkdir_p(dir);
    Tokenizer *tk = eval_tiny_tok(300);
    snprintf(tok, tok_cap, "%s/tok.bpe", dir);
    tok_save(tk, tok);
    Model *m = eval_tiny_model(ffn, tok_vocab_size(tk), 64, 1);
    snprintf(m->cfg.tokenizer, sizeof m->cfg.tokenizer, "%s", tok);
    CkptMeta meta = {0};
    ckpt_meta_put_i64(&meta, "step", step);
    ckpt_meta_put_u64(&meta, "tok_hash", tok_hash(tk));
    snprintf(ck, ck_cap, "%s/ckpt-%ld.aoec", dir, step);
    char err[256];
    int rc = ckpt_save(ck, m, NULL, &meta, 0, err, sizeof err);  // parameters only: all eval needs
    if (rc) fprintf(stderr, "  ckpt_save: %s\n", err);
    model_free(m);
    tok_free(tk);
    return rc;
}
