// open.c — checkpoint and tokenizer lookup shared by the eval-side commands (open.h).
#include "eval/open.h"

#include <stdlib.h>
#include <string.h>

#include "train/run.h"
#include "util/common.h"

char *eval_resolve_ckpt(const char *arg) {
    if (is_directory(arg)) {
        char *p = ckpt_latest(arg);
        if (!p) die_input("%s: no complete checkpoint in this run directory", arg);
        return p;
    }
    if (!file_exists(arg)) die_input("%s: no such checkpoint", arg);
    return xstrdup(arg);
}

char *eval_find_tokenizer(const char *cfg_tok, const char *ckpt) {
    // The run directory's own copy first (written by aoe train, so a moved run keeps working),
    // then the config's path (absolute for runs trained since that copy exists), then that path
    // relative to the checkpoint's directory.
    char dir[1024], copy[1100], rel[1600];
    snprintf(dir, sizeof dir, "%s", ckpt);
    char *s = strrchr(dir, '/');
    if (s) *s = 0;
    else snprintf(dir, sizeof dir, ".");
    snprintf(copy, sizeof copy, "%s/" RUN_TOKENIZER, dir);
    if (file_exists(copy)) return xstrdup(copy);
    if (cfg_tok[0] && file_exists(cfg_tok)) return xstrdup(cfg_tok);
    snprintf(rel, sizeof rel, "%s/%s", dir, cfg_tok);
    if (cfg_tok[0] && cfg_tok[0] != '/' && file_exists(rel)) return xstrdup(rel);
    die_input("%s: no tokenizer: not %s, nor the config's '%s'; pass --tokenizer PATH", ckpt, copy,
              cfg_tok[0] ? cfg_tok : "(none)");
}

Tokenizer *eval_open_tokenizer(const Config *cfg, int V, const CkptMeta *meta, const char *ckpt, const char *tok_path,
                               char **path_out) {
    char *tp = tok_path ? xstrdup(tok_path) : eval_find_tokenizer(cfg->tokenizer, ckpt);
    Tokenizer *tk = tok_load(tp);
    uint64_t want = ckpt_meta_tok_hash(meta);
    if (want && tok_hash(tk) != want)
        die_input("%s: tokenizer %s (identity %016llx) is not the one this checkpoint was trained with "
                  "(%016llx); pass the right one with --tokenizer", ckpt, tp,
                  (unsigned long long)tok_hash(tk), (unsigned long long)want);
    if (tok_vocab_size(tk) > V)
        die_input("%s: tokenizer %s has %d tokens but the model only %d", ckpt, tp, tok_vocab_size(tk), V);
    if (path_out) *path_out = tp;
    else free(tp);
    return tk;
}
