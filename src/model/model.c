// model.c — see model.h. Residual stream per block l: x -> xmid = x + Attn(RMSNorm(x)) ->
// x_{l+1} = xmid + FFN(RMSNorm(xmid)).
#include "model/model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/kernels.h"
#include "model/layers.h"
#include "model/score.h"
#include "util/common.h"
#include "util/prof.h"

// shared_w: use these weights (another model's, same config but seq_len/max_B) instead of
// allocating and initialising a parameter block; such a model has no gradient block.
static Model *model_build(const Config *cfg, int V, int max_B, uint64_t seed, float *shared_w) {
    Model *m = xcalloc(1, sizeof *m);
    m->cfg = *cfg;
    m->V = V; m->d = cfg->d_model; m->L = cfg->n_layer; m->H = cfg->n_head;
    m->hd = m->d / m->H; m->S = cfg->seq_len; m->max_B = max_B;
    int d = m->d, T = max_B * m->S;
    float std = cfg->init_std, out_std = cfg->init_std / sqrtf(2.0f * m->L);
    Params *P = &m->P;
    char nm[64];
    m->wte = params_add(P, "wte", 1, INIT_NORMAL, std, 2, V, d);
    m->blocks = xcalloc(m->L, sizeof(Block));
    for (int l = 0; l < m->L; l++) {
        Block *b = &m->blocks[l];
#define ADD(field, suffix, decay, init, sc, ...) \
        snprintf(nm, sizeof nm, "layers.%d.%s", l, suffix); b->field = params_add(P, nm, decay, init, sc, __VA_ARGS__)
        ADD(attn_norm, "attn_norm", 0, INIT_ONES, 0, 1, d);
        ADD(wq, "attn.wq", 1, INIT_NORMAL, std, 2, d, d);
        ADD(wk, "attn.wk", 1, INIT_NORMAL, std, 2, d, d);
        ADD(wv, "attn.wv", 1, INIT_NORMAL, std, 2, d, d);
        ADD(wo, "attn.wo", 1, INIT_NORMAL, out_std, 2, d, d);
        ADD(ffn_norm, "ffn_norm", 0, INIT_ONES, 0, 1, d);
#undef ADD
        b->ffn = ffn_is_sparse_layer(cfg, l) ? ffn_ops_for(cfg->ffn.type) : &ffn_dense_ops;
        if (!b->ffn) die_input("model.ffn.type: '%s' is not built into this aoe", cfg->ffn.type);
        b->ffn_state = b->ffn->create(P, cfg, l, T);
    }
    m->final_norm = params_add(P, "final_norm", 0, INIT_ONES, 0, 1, d);
    if (!cfg->tie_embeddings) m->lm_head = params_add(P, "lm_head", 1, INIT_NORMAL, std, 2, d, V);
    if (shared_w) {
        P->w = shared_w;
    } else {
        params_alloc(P);
        Rng rng;
        rng_seed(&rng, seed);
        params_init(P, &rng);
    }

    size_t Td = (size_t)T * d, att = (size_t)max_B * m->H * m->S * m->S;
    for (int l = 0; l < m->L; l++) {
        Block *b = &m->blocks[l];
        b->x = falloc(Td); b->ln1 = act_alloc(Td); b->rstd1 = falloc(T); b->q = act_alloc(Td); b->k = act_alloc(Td);
        b->v = act_alloc(Td); b->att = falloc(att); b->atty = act_alloc(Td); b->xmid = falloc(Td);
        b->ln2 = falloc(Td); b->rstd2 = falloc(T); b->ffo = falloc(Td);
    }
    m->xL = falloc(Td); m->lnf = falloc(Td); m->rstdf = falloc(T); m->logits = falloc((size_t)T * V);
    m->cosb = falloc((size_t)m->S * m->hd / 2); m->sinb = falloc((size_t)m->S * m->hd / 2);
    rope_tables(m->cosb, m->sinb, m->S, m->hd, cfg->rope_theta);
    m->dres = falloc(Td); m->dln = falloc(Td); m->dq = falloc(Td); m->dk = falloc(Td); m->dv = falloc(Td);
    m->datty = falloc(Td); m->datt = falloc(att); m->dlnf = falloc(Td);
    return m;
}

const char *model_check_config(const Config *c, char *buf, int len) {
    if (c->d_model % c->n_head) {
        snprintf(buf, len, "model.d_model (%d) must be divisible by model.n_head (%d)", c->d_model, c->n_head);
        return buf;
    }
    if ((c->d_model / c->n_head) % 2) {
        snprintf(buf, len, "model.d_model / model.n_head (%d) must be even for RoPE", c->d_model / c->n_head);
        return buf;
    }
    const FfnOps *ops = ffn_ops_for(c->ffn.type);
    if (!ops) {
        snprintf(buf, len, "model.ffn.type: '%s' is not built into this aoe", c->ffn.type);
        return buf;
    }
    return ops->check ? ops->check(c, buf, len) : NULL;
}

int model_key_used(const Config *cfg, const char *key) {
    if (strncmp(key, "model.ffn.", 10)) return 1;
    const char *k = key + 10;
    if (!ffn_key_listed(k) && !score_key_listed(k) && !select_key_listed(k)) return 1;  // read by all (type)
    const FfnOps *f = ffn_ops_for(cfg->ffn.type);
    if (!f || word_in(f->keys, k)) return 1;
    if (!word_in(f->keys, "select")) return 0;  // no sparse layers: no score source, no selection
    const SelectMethod *m = select_find(cfg->ffn.select);
    const ScoreOps *s = score_for(cfg);
    return !m || !s || word_in(m->keys, k) || word_in(s->keys, k);
}

void model_validate_config(const Config *c, const char *src) {
    config_validate(c, src);
    char buf[512], note[512];
    const char *why = model_check_config(c, buf, sizeof buf);
    if (!why) return;
    config_origins(c, why, src, note, sizeof note);
    die_input("%s: %s%s", src, why, note);
}

Model *model_create(const Config *cfg, int V, int max_B, uint64_t seed) {
    return model_build(cfg, V, max_B, seed, NULL);
}

Model *model_create_shared(const Config *cfg, int V, int max_B, const Model *src) {
    return model_build(cfg, V, max_B, 0, src->P.w);
}

void model_free(Model *m) {
    if (!m) return;
    for (int l = 0; l < m->L; l++) {
        Block *b = &m->blocks[l];
        b->ffn->destroy(b->ffn_state);
        float *bufs[] = {b->x, b->rstd1, b->att, b->xmid, b->ln2, b->rstd2, b->ffo}, *acts[] = {b->ln1, b->q, b->k, b->v, b->atty};
        for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) free(bufs[i]);
        for (size_t i = 0; i < sizeof acts / sizeof *acts; i++) act_free(acts[i]);
    }
    float *bufs[] = {m->xL, m->lnf, m->rstdf, m->logits, m->cosb, m->sinb, m->dres, m->dln, m->dq, m->dk,
                     m->dv, m->datty, m->datt, m->dlnf};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) free(bufs[i]);
    free(m->blocks);
    params_free(&m->P);
    free(m);
}

static void add_into(float *y, const float *a, const float *b, long n) {
#pragma omp parallel for
    for (long i = 0; i < n; i++) y[i] = a[i] + b[i];
}

// logits [n,V] = x [n,d] · head (lm_head [d,V], or wte [V,d] transposed when tied)
static void head_logits(Model *m, float *logits, const float *x, int n) {
    int d = m->d, V = m->V;
    const float *W = m->P.w;
    if (m->cfg.tie_embeddings) matmul(logits, V, x, d, W + m->wte, d, n, V, d, 0, 1, 1, 0);
    else matmul(logits, V, x, d, W + m->lm_head, V, n, V, d, 0, 0, 1, 0);
}

// score_only: the head and the loss only at positions with a target. The scored rows of lnf are
// gathered into dlnf (backward scratch, unused in eval), their logits computed into the first
// rows of m->logits, the losses taken without normalising, and each row moved to its position
// (in descending order: row j goes to idx[j] >= j, never over a row still to be moved).
static double head_scored_rows(Model *m, const int32_t *targets, float *losses, int T) {
    int d = m->d, V = m->V, n = 0;
    int *idx = xmalloc(sizeof(int) * T);
    int32_t *tg = xmalloc(sizeof(int32_t) * T);
    float *ls = xmalloc(sizeof(float) * T);
    for (int t = 0; t < T; t++)
        if (targets[t] >= 0) { tg[n] = targets[t]; idx[n++] = t; }
    double loss = 0;
    if (n > 0) {
        if (n < T)
            for (int j = 0; j < n; j++) memcpy(m->dlnf + (size_t)j * d, m->lnf + (size_t)idx[j] * d, sizeof(float) * d);
        head_logits(m, m->logits, n < T ? m->dlnf : m->lnf, n);
        loss = crossentropy_loss(m->logits, ls, tg, n, V);
        for (int j = n - 1; j >= 0; j--)
            if (idx[j] != j) memcpy(m->logits + (size_t)idx[j] * V, m->logits + (size_t)j * V, sizeof(float) * V);
    }
    if (losses) {
        for (int t = 0; t < T; t++) losses[t] = 0;
        for (int j = 0; j < n; j++) losses[idx[j]] = ls[j];
    }
    free(idx); free(tg); free(ls);
    return loss;
}

double model_forward(Model *m, const int32_t *tokens, const int32_t *targets, int B, int S,
                     float *losses, int train, Rng *rng) {
    // training: the built shape; eval: any S <= m->S with B*S <= max_B*m->S positions (every
    // buffer is sized by positions, attention's B*H*S*S by max_B*H*m->S^2 >= it, RoPE tables by m->S)
    if (B < 1 || S < 1 || S > m->S || (long)B * S > (long)m->max_B * m->S || (train && (B > m->max_B || S != m->S)))
        die("internal: model_forward shape [%d,%d] does not fit [%d,%d]%s", B, S, m->max_B, m->S, train ? " (training)" : "");
    int d = m->d, T = B * S, V = m->V;
    const float *W = m->P.w;
    float eps = m->cfg.norm_eps;
    m->B = B; m->T = T; m->tokens = tokens; m->aux = 0;
    double t0 = prof_begin();
    embedding_forward(m->blocks[0].x, tokens, W + m->wte, T, d);
    prof_end(PROF_ELEM, t0);
    for (int l = 0; l < m->L; l++) {
        Block *b = &m->blocks[l];
        float *xnext = l + 1 < m->L ? m->blocks[l + 1].x : m->xL;
        // attention: ln1 [T,d] -> q,k,v [T,d] -> atty [T,d] -> xmid = x + atty·Wo. ln1, q, k, v and
        // atty feed only products (activation blocks, kernels.h): when stored in bf16 they are
        // computed in the backward scratch of the same shape (free during a forward), then stored.
        size_t Td = (size_t)T * d;
        t0 = prof_begin();
        float *ln1 = act_out(b->ln1, m->dln);
        rmsnorm_forward(ln1, b->rstd1, b->x, W + b->attn_norm, T, d, eps);
        act_store(b->ln1, ln1, Td);
        prof_end(PROF_ELEM, t0);
        t0 = prof_begin();
        float *q = act_out(b->q, m->dq), *k = act_out(b->k, m->dk), *v = act_out(b->v, m->dv);
        kernels_operand_begin(b->ln1, Td);  // read by three products
        matmul(q, d, b->ln1, d, W + b->wq, d, T, d, d, 0, 0, 1, 0);
        matmul(k, d, b->ln1, d, W + b->wk, d, T, d, d, 0, 0, 1, 0);
        matmul(v, d, b->ln1, d, W + b->wv, d, T, d, d, 0, 0, 1, 0);
        kernels_operand_end(b->ln1);
        rope_apply(q, m->cosb, m->sinb, B, S, m->H, m->hd, 0);
        rope_apply(k, m->cosb, m->sinb, B, S, m->H, m->hd, 0);
        act_store(b->q, q, Td); act_store(b->k, k, Td); act_store(b->v, v, Td);
        float *atty = act_out(b->atty, m->datty);
        attention_forward(atty, b->att, b->q, b->k, b->v, B, S, m->H, m->hd);
        act_store(b->atty, atty, Td);
        memcpy(b->xmid, b->x, sizeof(float) * T * d);
        matmul(b->xmid, d, b->atty, d, W + b->wo, d, T, d, d, 0, 0, 1, 1);
        prof_end(PROF_ATTN, t0);
        // feed-forward: ln2 -> ffo -> x_{l+1} = xmid + ffo (the FFN times its own phases)
        t0 = prof_begin();
        rmsnorm_forward(b->ln2, b->rstd2, b->xmid, W + b->ffn_norm, T, d, eps);
        prof_end(PROF_ELEM, t0);
        b->ffn->forward(b->ffn_state, &m->P, b->ffo, b->ln2, T, train, rng);
        if (train) m->aux += b->ffn->aux_loss(b->ffn_state);
        t0 = prof_begin();
        add_into(xnext, b->xmid, b->ffo, (long)T * d);
        prof_end(PROF_ELEM, t0);
    }
    t0 = prof_begin();
    rmsnorm_forward(m->lnf, m->rstdf, m->xL, W + m->final_norm, T, d, eps);
    double loss = !train && m->score_only ? head_scored_rows(m, targets, losses, T)
                                          : (head_logits(m, m->logits, m->lnf, T),
                                             crossentropy_forward(m->logits, losses, targets, T, V));
    prof_end(PROF_HEAD, t0);
    return loss;
}

void model_backward(Model *m, const int32_t *targets, float loss_scale) {
    int d = m->d, T = m->T, V = m->V, B = m->B, S = m->S;
    const float *W = m->P.w;
    float *G = m->P.g;
    int counted = 0;
    double t0 = prof_begin();
    for (int t = 0; t < T; t++) counted += targets[t] >= 0;
    crossentropy_backward(m->logits, targets, T, V, counted ? loss_scale / counted : 0);
    float *dlogits = m->logits;  // [T,V]
    if (m->cfg.tie_embeddings) {
        matmul(m->dlnf, d, dlogits, V, W + m->wte, d, T, d, V, 0, 0, 1, 0);   // dlnf = dlogits·wte
        matmul(G + m->wte, d, dlogits, V, m->lnf, d, V, d, T, 1, 0, 1, 1);    // dwte += dlogits^T lnf
    } else {
        matmul(m->dlnf, d, dlogits, V, W + m->lm_head, V, T, d, V, 0, 1, 1, 0);
        matmul(G + m->lm_head, V, m->lnf, d, dlogits, V, d, V, T, 1, 0, 1, 1);
    }
    prof_end(PROF_HEAD, t0);
    t0 = prof_begin();
    float *dres = m->dres;  // gradient of the residual stream, flowing down
    memset(dres, 0, sizeof(float) * T * d);
    rmsnorm_backward(dres, G + m->final_norm, m->dlnf, m->xL, W + m->final_norm, m->rstdf, T, d);
    prof_end(PROF_ELEM, t0);
    if (m->grad_ready) m->grad_ready(m->grad_ctx, m->final_norm, m->P.total);  // (tied: wte is not done yet)
    for (int l = m->L - 1; l >= 0; l--) {
        Block *b = &m->blocks[l];
        // FFN branch: d(ln2) from dres, then into the residual via RMSNorm
        b->ffn->backward(b->ffn_state, &m->P, m->dln, dres, b->ln2, T, loss_scale);
        t0 = prof_begin();
        rmsnorm_backward(dres, G + b->ffn_norm, m->dln, b->xmid, W + b->ffn_norm, b->rstd2, T, d);
        prof_end(PROF_ELEM, t0);
        // attention output projection
        t0 = prof_begin();
        matmul(G + b->wo, d, b->atty, d, dres, d, d, d, T, 1, 0, 1, 1);
        matmul(m->datty, d, dres, d, W + b->wo, d, T, d, d, 0, 1, 1, 0);
        attention_backward(m->dq, m->dk, m->dv, m->datt, m->datty, b->q, b->k, b->v, b->att, B, S, m->H, m->hd);
        rope_apply(m->dq, m->cosb, m->sinb, B, S, m->H, m->hd, 1);
        rope_apply(m->dk, m->cosb, m->sinb, B, S, m->H, m->hd, 1);
        kernels_operand_begin(b->ln1, (size_t)T * d);
        matmul(G + b->wq, d, b->ln1, d, m->dq, d, d, d, T, 1, 0, 1, 1);
        matmul(G + b->wk, d, b->ln1, d, m->dk, d, d, d, T, 1, 0, 1, 1);
        matmul(G + b->wv, d, b->ln1, d, m->dv, d, d, d, T, 1, 0, 1, 1);
        kernels_operand_end(b->ln1);
        matmul(m->dln, d, m->dq, d, W + b->wq, d, T, d, d, 0, 1, 1, 0);
        matmul(m->dln, d, m->dk, d, W + b->wk, d, T, d, d, 0, 1, 1, 1);
        matmul(m->dln, d, m->dv, d, W + b->wv, d, T, d, d, 0, 1, 1, 1);
        prof_end(PROF_ATTN, t0);
        t0 = prof_begin();
        rmsnorm_backward(dres, G + b->attn_norm, m->dln, b->x, W + b->attn_norm, b->rstd1, T, d);
        prof_end(PROF_ELEM, t0);
        // block l's parameters: from its attn_norm to the next block's (or the final norm)
        if (m->grad_ready) m->grad_ready(m->grad_ctx, b->attn_norm, l + 1 < m->L ? m->blocks[l + 1].attn_norm : m->final_norm);
    }
    t0 = prof_begin();
    embedding_backward(G + m->wte, dres, m->tokens, T, d, V);
    prof_end(PROF_ELEM, t0);
    if (m->grad_ready) m->grad_ready(m->grad_ctx, 0, m->blocks[0].attn_norm);
}

void model_count(const Config *cfg, int V, double *total, double *active, double *flops_fwd) {
    double d = cfg->d_model, tot = 0, act = 0, fl = 0;
    for (int l = 0; l < cfg->n_layer; l++) {
        const FfnOps *ops = ffn_is_sparse_layer(cfg, l) ? ffn_ops_for(cfg->ffn.type) : &ffn_dense_ops;
        double t = 0, a = 0, f = 0;
        if (ops) ops->count(cfg, &t, &a, &f);
        tot += 4 * d * d + 2 * d + t;
        act += 4 * d * d + 2 * d + a;
        fl += 2 * 4 * d * d + 2 * 2 * cfg->seq_len * d + f;  // projections, QK^T and PV, FFN
    }
    double emb = (double)V * d, head = cfg->tie_embeddings ? 0 : (double)V * d;
    *total = tot + emb + head + d;
    *active = act + emb + head + d;
    *flops_fwd = fl + 2 * d * V;
}

void model_set_progress(Model *m, float progress) {
    for (int l = 0; l < m->L; l++)
        if (m->blocks[l].ffn->set_progress) m->blocks[l].ffn->set_progress(m->blocks[l].ffn_state, progress);
}

void model_write_stats(Model *m, FILE *f, long step) {
    for (int l = 0; l < m->L; l++) m->blocks[l].ffn->write_stats(m->blocks[l].ffn_state, f, step, l);
}

int model_precision(const Config *cfg, const char *override) {
    const char *rec = cfg->precision;
    int p = override ? precision_parse(override) : !strcmp(rec, "auto") ? PREC_FP32 : precision_parse(rec);
    if (p < 0) die_input("--precision: expected fp32, bf16 or auto, got '%s'", override ? override : rec);
    if (p == PREC_BF16 && !kernels_cpu_has_bf16())
        warnf("this CPU has no native bf16 dot products (AVX512_BF16/AMX-BF16): oneDNN emulates them, slowly");
    return p;
}
