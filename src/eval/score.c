// score.c — log-likelihood and greedy scoring of token sequences on a Model, lm-eval style.
// A sequence [EOT, ctx..., cont...] is fed as inputs tok[0..n-2] with targets tok[1..n-1]; only
// the last ncont targets count: ll = sum log p(target | everything before it), greedy = every
// scored target is the argmax. Sequences are padded to the forward length with targets -1.
// Short sequences run on "bucket" models (same config with a shorter seq_len, weights shared
// with the main model); attention is causal and RoPE tables agree on the shared positions, so a
// bucket gives the same numbers as the full-length model. No KV cache: each sequence is
// recomputed from its first token (a model change would be needed for prefix reuse).
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval/eval.h"
#include "util/common.h"

enum { MAX_BUCKETS = 16, MIN_BUCKET = 32, MAX_BATCH = 64 };

struct Scorer {
    Model *m;
    int nb;
    Model *bm[MAX_BUCKETS];  // by increasing S; the last has S = m->S (m itself when its batch suffices)
    int bS[MAX_BUCKETS], bB[MAX_BUCKETS];
    int32_t *tok, *tgt;      // [maxB*S] staging
    float *loss;
    long tokens, positions;
};

static int clampi(int x, int lo, int hi) { return x < lo ? lo : x > hi ? hi : x; }

// A model of the same config at sequence length S and batch B whose weights are m's.
static Model *bucket_model(Model *m, int S, int B) {
    Config c = m->cfg;
    c.seq_len = S;
    Model *b = model_create(&c, m->V, B, 0);
    free(b->P.w); free(b->P.g);  // never used: the bucket reads the main model's weights
    b->P.w = m->P.w; b->P.g = NULL;
    return b;
}

Scorer *scorer_new(Model *m, int tok_budget) {
    Scorer *s = xcalloc(1, sizeof *s);
    s->m = m;
    if (tok_budget < 1) tok_budget = 2048;
    size_t stage = 0;
    // lengths grow by 1.5x (multiples of 16): 32, 48, 80, 128, 192, 288, ... — less padding than
    // powers of two for a few more activation buffers
    for (int S = MIN_BUCKET; s->nb < MAX_BUCKETS; S = (S * 3 / 2 + 15) / 16 * 16) {
        if (S >= m->S) S = m->S;
        int B = clampi(tok_budget / S, 1, MAX_BATCH);
        if (S == m->S && B <= m->max_B) {
            s->bm[s->nb] = m; s->bS[s->nb] = S; s->bB[s->nb] = m->max_B; B = m->max_B;
        } else {
            s->bm[s->nb] = bucket_model(m, S, B); s->bS[s->nb] = S; s->bB[s->nb] = B;
        }
        if ((size_t)B * S > stage) stage = (size_t)B * S;
        s->nb++;
        if (S == m->S) break;
    }
    s->tok = xmalloc(sizeof(int32_t) * stage);
    s->tgt = xmalloc(sizeof(int32_t) * stage);
    s->loss = xmalloc(sizeof(float) * stage);
    return s;
}

void scorer_free(Scorer *s) {
    if (!s) return;
    for (int i = 0; i < s->nb; i++) {
        if (s->bm[i] == s->m) continue;
        s->bm[i]->P.w = NULL;  // owned by the main model
        model_free(s->bm[i]);
    }
    free(s->tok); free(s->tgt); free(s->loss);
    free(s);
}

int scorer_seq_len(const Scorer *s) { return s->m->S; }
long scorer_tokens(const Scorer *s) { return s->tokens; }
long scorer_positions(const Scorer *s) { return s->positions; }

// Smallest bucket whose S holds `len` input positions.
static int bucket_for(const Scorer *s, int len) {
    for (int i = 0; i < s->nb; i++)
        if (s->bS[i] >= len) return i;
    return s->nb - 1;
}

static int argmax(const float *p, int V) {
    int best = 0;
    for (int i = 1; i < V; i++)
        if (p[i] > p[best]) best = i;
    return best;
}

// Forwards seqs[0..n) (all fitting bucket b) as one batch.
static void run_batch(Scorer *s, int b, const Seq *seqs, int n, SeqScore *out) {
    Model *m = s->bm[b];
    int S = s->bS[b], V = m->V;
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
        // grow the batch while the bucket of its longest member still has room for one more
        int maxlen = 0, j = i;
        int b = 0;
        while (j < n) {
            int len = seqs[j].n - 1 > maxlen ? seqs[j].n - 1 : maxlen;
            if (seqs[j].n - 1 > s->m->S) die("internal: scorer sequence of %d tokens exceeds S=%d", seqs[j].n, s->m->S);
            int bb = bucket_for(s, len);
            if (j - i + 1 > s->bB[bb]) break;
            maxlen = len; b = bb; j++;
        }
        run_batch(s, b, seqs + i, j - i, out + i);
        i = j;
    }
}

const float *scorer_next_probs(Scorer *s, const int32_t *tok, int n) {
    if (n < 1 || n > s->m->S) die("internal: scorer_next_probs length %d", n);
    int b = bucket_for(s, n);
    Model *m = s->bm[b];
    int S = s->bS[b];
    for (int t = 0; t < S; t++) { s->tok[t] = t < n ? tok[t] : tok[0]; s->tgt[t] = -1; }
    model_forward(m, s->tok, s->tgt, 1, S, NULL, 0, NULL);
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
