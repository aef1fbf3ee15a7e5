// scorer.c — log-likelihood and greedy scoring of token sequences on a Model, lm-eval style.
// A sequence [EOT, ctx..., cont...] is fed as inputs tok[0..n-2] with targets tok[1..n-1]; only
// the last ncont targets count: ll = sum log p(target | everything before it), greedy = every
// scored target is the argmax. Sequences are padded to the forward length with targets -1.
// A batch runs at the length of its longest member (capped at the model's S), with as many
// sequences as the token budget allows: model_forward accepts a shorter
// S with a larger batch in eval (model.h). Attention is causal and RoPE tables agree on the
// shared positions, so a short forward gives the same numbers as the full-length model. No KV
// cache: each sequence is recomputed from its first token (a model change would be needed for
// prefix reuse).
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval/scorer.h"
#include "util/common.h"

// LEN_STEP: forward lengths are multiples of it. 1 (no rounding) padded least and ran fastest on
// the bench model (docs/performance.md: 5-12% padding on choice tasks, vs 14-16% at 8, 19-22% at 16).
enum { LEN_STEP = 1, MAX_BATCH = 64 };

struct Scorer {
    Model *m;
    Model *sm;           // scoring model: m's weights, sized for maxT positions (m itself if it is)
    int maxT;            // positions per forward (the token budget, at least one full sequence)
    int32_t *tok, *tgt;  // [maxT] staging
    float *loss;
    long tokens, positions;
    ScorerHook hook;     // optional, after each forward
    void *hook_ctx;
    int *len;            // [MAX_BATCH] real input positions of each row (for the hook)
};

static int clampi(int x, int lo, int hi) { return x < lo ? lo : x > hi ? hi : x; }

Scorer *scorer_new(Model *m, int tok_budget) {
    Scorer *s = xcalloc(1, sizeof *s);
    s->m = m;
    if (tok_budget < 1) tok_budget = 2048;
    int B = clampi(tok_budget / m->S, 1, MAX_BATCH);
    // a model of m's config and weights for B full sequences (no random init, no gradients)
    s->sm = B <= m->max_B ? m : model_create_shared(&m->cfg, m->V, B, m);
    s->maxT = s->sm->max_B * m->S;
    s->sm->score_only = 1;  // head and loss only where a target is scored (model.h)
    s->tok = xmalloc(sizeof(int32_t) * s->maxT);
    s->tgt = xmalloc(sizeof(int32_t) * s->maxT);
    s->loss = xmalloc(sizeof(float) * s->maxT);
    return s;
}

void scorer_free(Scorer *s) {
    if (!s) return;
    free(s->len);
    if (s->sm == s->m) s->m->score_only = 0;
    else {
        s->sm->P.w = NULL;  // owned by the main model
        model_free(s->sm);
    }
    free(s->tok); free(s->tgt); free(s->loss);
    free(s);
}

void scorer_set_hook(Scorer *s, ScorerHook fn, void *ctx) {
    s->hook = fn;
    s->hook_ctx = ctx;
    if (!s->len) s->len = xcalloc(MAX_BATCH, sizeof(int));
}

int scorer_seq_len(const Scorer *s) { return s->m->S; }
long scorer_tokens(const Scorer *s) { return s->tokens; }
long scorer_positions(const Scorer *s) { return s->positions; }

// Forward length for `len` input positions: rounded up to LEN_STEP, at most the model's S.
static int len_for(const Scorer *s, int len) {
    int S = (len + LEN_STEP - 1) / LEN_STEP * LEN_STEP;
    return S < s->m->S ? (S > 0 ? S : LEN_STEP) : s->m->S;
}
// Sequences of length S that fit one forward.
static int batch_for(const Scorer *s, int S) { return clampi(s->maxT / S, 1, MAX_BATCH); }

static int argmax(const float *p, int V) {
    int best = 0;
    for (int i = 1; i < V; i++)
        if (p[i] > p[best]) best = i;
    return best;
}

// Forwards seqs[0..n) (all at most S input positions) as one batch of length S.
static void run_batch(Scorer *s, int S, const Seq *seqs, int n, SeqScore *out) {
    Model *m = s->sm;
    int V = m->V;
    for (int r = 0; r < n; r++) {
        const Seq *q = &seqs[r];
        int L = q->n - 1;  // input positions
        int32_t *tk = s->tok + (size_t)r * S, *tg = s->tgt + (size_t)r * S;
        for (int t = 0; t < S; t++) {
            tk[t] = t < L ? q->tok[t] : q->tok[0];
            tg[t] = (t < L && t + 1 >= q->n - q->ncont) ? q->tok[t + 1] : -1;
        }
        s->tokens += L;
    }
    s->positions += (long)n * S;
    model_forward(m, s->tok, s->tgt, n, S, s->loss, 0, NULL);
    if (s->hook) {
        for (int r = 0; r < n; r++) s->len[r] = seqs[r].n - 1;
        s->hook(s->hook_ctx, m, s->len, n, S);
    }
    for (int r = 0; r < n; r++) {
        double ll = 0;
        int greedy = 1;
        for (int t = 0; t < S; t++) {
            int32_t y = s->tgt[(size_t)r * S + t];
            if (y < 0) continue;
            ll -= s->loss[(size_t)r * S + t];
            if (greedy && argmax(m->logits + ((size_t)r * S + t) * V, V) != y) greedy = 0;
        }
        out[r].ll = ll;
        out[r].greedy = greedy;
    }
}

void scorer_run(Scorer *s, const Seq *seqs, int n, SeqScore *out) {
    int i = 0;
    while (i < n) {
        // grow the batch while one more still fits the budget at the batch's (rounded) length and,
        // once it has a few rows, would pad less than 1/8 of its length (callers sort by length)
        int maxlen = 0, j = i, S = LEN_STEP;
        while (j < n) {
            int len = seqs[j].n - 1 > maxlen ? seqs[j].n - 1 : maxlen;
            if (seqs[j].n - 1 > s->m->S) die("internal: scorer sequence of %d tokens exceeds S=%d", seqs[j].n, s->m->S);
            int SS = len_for(s, len);
            if (j - i + 1 > batch_for(s, SS)) break;
            if (j - i >= 4 && (seqs[j].n - 1) * 8 < SS * 7 && (j - i) * SS >= 256) break;
            maxlen = len; S = SS; j++;
        }
        run_batch(s, S, seqs + i, j - i, out + i);
        i = j;
    }
}

const float *scorer_next_probs(Scorer *s, const int32_t *tok, int n) {
    if (n < 1 || n > s->m->S) die("internal: scorer_next_probs length %d", n);
    Model *m = s->sm;
    int S = len_for(s, n);
    for (int t = 0; t < S; t++) { s->tok[t] = t < n ? tok[t] : tok[0]; s->tgt[t] = -1; }
    m->score_only = 0;  // this caller wants probabilities at an unscored position
    model_forward(m, s->tok, s->tgt, 1, S, NULL, 0, NULL);
    if (s->hook) {
        s->len[0] = n;
        s->hook(s->hook_ctx, m, s->len, 1, S);
    }
    m->score_only = 1;
    s->tokens += n; s->positions += S;
    return m->logits + (size_t)(n - 1) * m->V;
}

int32_t *encode_pair(const Tokenizer *tk, const char *ctx, const char *cont, int max_len, int *n,
                     int *ncont) {
    size_t lc = strlen(ctx), lk = strlen(cont);
    size_t keep = lc;
    while (keep > 0 && (ctx[keep - 1] == ' ' || ctx[keep - 1] == '\t' || ctx[keep - 1] == '\n' ||
                        ctx[keep - 1] == '\r'))
        keep--;
    char *whole = xmalloc(lc + lk + 1);
    memcpy(whole, ctx, lc); memcpy(whole + lc, cont, lk); whole[lc + lk] = 0;
    int nw = 0, nc = 0;
    int32_t *w = tok_encode(tk, whole, lc + lk, &nw);
    int32_t *c = tok_encode(tk, ctx, keep, &nc);
    int ncn = nw - nc;
    if (ncn < 0) ncn = 0;
    int total = 1 + nc + ncn;
    int start = total > max_len ? total - max_len : 0;  // left-truncate, keeping the end
    int len = total - start;
    int32_t *seq = xmalloc(sizeof(int32_t) * (total > 0 ? total : 1));
    seq[0] = tok_eot(tk);
    memcpy(seq + 1, c, sizeof(int32_t) * nc);
    memcpy(seq + 1 + nc, w + (nw - ncn), sizeof(int32_t) * ncn);
    if (start) memmove(seq, seq + start, sizeof(int32_t) * len);
    *n = len;
    *ncont = ncn < len - 1 ? ncn : len - 1;
    free(whole); free(w); free(c);
    return seq;
}
