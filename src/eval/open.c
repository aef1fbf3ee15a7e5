// open.c — checkpoint and tokenizer lookup shared by the eval-side commands (open.h).
#include "eval/open.h"

#include <stdlib.h>
#include <string.h>

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
    if (file_exists(cfg_tok)) return xstrdup(cfg_tok);
    char dir[1024], p[1600];
    snprintf(dir, sizeof dir, "%s", ckpt);
    char *s = strrchr(dir, '/');
    if (s && cfg_tok[0] != '/') {
        *s = 0;
        snprintf(p, sizeof p, "%s/%s", dir, cfg_tok);
        if (file_exists(p)) return xstrdup(p);
    }
    die_input("%s: tokenizer '%s' from the checkpoint's config not found; pass --tokenizer PATH", ckpt,
              cfg_tok[0] ? cfg_tok : "(none)");
}

Tokenizer *eval_open_tokenizer(const Model *m, const CkptMeta *meta, const char *ckpt, const char *tok_path,
                               char **path_out) {
    char *tp = tok_path ? xstrdup(tok_path) : eval_find_tokenizer(m->cfg.tokenizer, ckpt);
    Tokenizer *tk = tok_load(tp);
    uint64_t want = ckpt_meta_tok_hash(meta);
    if (want && tok_hash(tk) != want)
        die_input("%s: tokenizer %s (identity %016llx) is not the one this checkpoint was trained with "
                  "(%016llx); pass the right one with --tokenizer", ckpt, tp,
                  (unsigned long long)tok_hash(tk), (unsigned long long)want);
    if (tok_vocab_size(tk) > m->V)
        die_input("%s: tokenizer %s has %d tokens but the model only %d", ckpt, tp, tok_vocab_size(tk), m->V);
    if (path_out) *path_out = tp;
    else free(tp);
    return tk;
}
