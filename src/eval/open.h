// open.h — opening a checkpoint for inference the way every eval-side command does (`aoe eval`,
// `aoe analyze`): a checkpoint file or a run directory (its newest complete checkpoint), the
// model built from the stored config, and the tokenizer it was trained with (identity checked).
#ifndef AOE_EVAL_OPEN_H
#define AOE_EVAL_OPEN_H

#include "ckpt/ckpt.h"
#include "data/tokenizer.h"
#include "model/model.h"

// CKPT file or RUN_DIR -> checkpoint path (malloc'd). Exits 2 with a one-line message if none.
char *eval_resolve_ckpt(const char *arg);

// Tokenizer path for a checkpoint (malloc'd): the run directory's copy (RUN_TOKENIZER, train/run.h), else the
// config's data.tokenizer as given, else relative to the checkpoint's directory. Exits 2 naming
// them if none exists.
char *eval_find_tokenizer(const char *cfg_tok, const char *ckpt);

// Loads the tokenizer (tok_path, else the config's) for the model of checkpoint `ckpt` (its
// stored config and vocabulary size V) and checks that it is the one the checkpoint was trained
// with (meta->tok_hash) and fits the vocabulary. Exits 2 naming the files otherwise. *path_out
// (may be NULL) gets the path used.
Tokenizer *eval_open_tokenizer(const Config *cfg, int V, const CkptMeta *meta, const char *ckpt, const char *tok_path,
                               char **path_out);

#endif
