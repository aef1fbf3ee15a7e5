// eval_task.c — one task on one model: build lm-eval's requests (few-shot prefix + context,
// delimiter + continuation), tokenize them (EOT prefix, left-truncated to S+1 tokens), score them
// in length-sorted batches that keep all choices of a question together, and turn the scores into
// metrics. Perplexity tasks use lm-eval's rolling windows (disjoint windows of S predicted tokens,
// the first one conditioned on EOT). Shard perplexity ("shards:GLOB") scores the loader's windows.
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/loader.h"
#include "eval/eval_task.h"
#include "eval/log_samples.h"
#include "util/common.h"

static char *join(const char *a, const char *b, const char *c) {
    size_t la = strlen(a), lb = strlen(b), lc = strlen(c);
    char *s = xmalloc(la + lb + lc + 1);
    memcpy(s, a, la); memcpy(s + la, b, lb); memcpy(s + la + lb, c, lc); s[la + lb + lc] = 0;
    return s;
}

static int n_requests(const Task *t, int i) { return t->kind == TK_CLOZE ? 1 : t->items[i].n_opts; }

// The text of item s as a solved example: context + " " + gold target.
static char *shot_text(const Task *t, int s) {
    const Item *it = &t->items[s];
    switch (t->kind) {
    case TK_MC: return join(it->ctx, " ", it->opts[it->gold]);
    case TK_PARTIAL: return join(it->opts[it->gold], " ", it->cont);
    case TK_CLOZE: return join(it->ctx, " ", it->cont);
    default: return xstrdup(it->opts[0]);
    }
}

// Few-shot prefix of item i: `shots` distinct other items drawn with a seed that depends only on
// (seed, task, i), so --limit and batch order do not change any prompt.
static char *fewshot_prefix(const Task *t, int i, int shots, uint64_t seed) {
    if (shots <= 0 || t->kind == TK_PAIR || t->kind == TK_PPL || t->n < 2) return xstrdup("");
    if (shots > t->n - 1) shots = t->n - 1;
    Rng r;
    rng_seed(&r, hash64(t->name, strlen(t->name), seed * 0x9E3779B97F4A7C15ULL + (uint64_t)i));
    int *pick = xmalloc(sizeof(int) * shots);
    int k = 0;
    while (k < shots) {
        int s = (int)rng_below(&r, t->n);
        int dup = s == i;
        for (int q = 0; q < k && !dup; q++) dup = pick[q] == s;
        if (!dup) pick[k++] = s;
    }
    char *out = xstrdup("");
    for (int q = 0; q < k; q++) {
        char *st = shot_text(t, pick[q]);
        char *n = join(out, st, t->fewshot_sep);
        free(out); free(st);
        out = n;
    }
    free(pick);
    return out;
}

void build_request(const Task *t, int i, int j, int shots, uint64_t seed, char **ctx, char **cont) {
    const Item *it = &t->items[i];
    char *pre = fewshot_prefix(t, i, shots, seed);
    switch (t->kind) {
    case TK_MC: *ctx = join(pre, it->ctx, ""); *cont = join(" ", it->opts[j], ""); break;
    case TK_PARTIAL: *ctx = join(pre, it->opts[j], ""); *cont = join(" ", it->cont, ""); break;
    case TK_CLOZE: *ctx = join(pre, it->ctx, ""); *cont = join(" ", it->cont, ""); break;
    case TK_PAIR: *ctx = xstrdup(""); *cont = join(" ", it->opts[j], ""); break;
    default: die("internal: build_request on a perplexity task");
    }
    free(pre);
}

// Characters (UTF-8 code points), Python's len(): the acc_norm divisor.
static int utf8_len(const char *s) {
    int n = 0;
    for (; *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

typedef struct { int item, maxlen; } Order;
static int cmp_order(const void *a, const void *b) {
    const Order *x = a, *y = b;
    if (x->maxlen != y->maxlen) return y->maxlen - x->maxlen;  // longest first, like lm-eval
    return x->item - y->item;
}

static void set_result(TaskResult *r, const char *name, const Task *t, int n_orig, int shots) {
    memset(r, 0, sizeof *r);
    snprintf(r->task, sizeof r->task, "%s", name);
    r->n_original = n_orig;
    r->shots = shots;
    r->kind = t->kind;
    r->main_metric = t->main_metric;
}

static int eval_choice_task(Scorer *sc, const Tokenizer *tk, const Task *t, int n, int shots,
                            uint64_t seed, TaskResult *out, int max_out, int S, FILE *samples) {
    double t0 = now_sec();
    long tok0 = scorer_tokens(sc), pos0 = scorer_positions(sc);
    int *first = xmalloc(sizeof(int) * (n + 1));
    first[0] = 0;
    for (int i = 0; i < n; i++) first[i + 1] = first[i] + n_requests(t, i);
    int nr = first[n];
    Seq *seqs = xcalloc(nr ? nr : 1, sizeof(Seq));
    int *clen = xcalloc(nr ? nr : 1, sizeof(int));
    Order *ord = xcalloc(n ? n : 1, sizeof(Order));
    // tokenize all requests (in parallel: the tokenizer is read-only)
#pragma omp parallel for schedule(dynamic, 16)
    for (int i = 0; i < n; i++) {
        ord[i].item = i;
        for (int j = 0; j < n_requests(t, i); j++) {
            char *ctx, *cont;
            build_request(t, i, j, shots, seed, &ctx, &cont);
            Seq *q = &seqs[first[i] + j];
            q->tok = encode_pair(tk, ctx, cont, S + 1, &q->n, &q->ncont);
            clen[first[i] + j] = utf8_len(cont) - 1;  // without the delimiter, as lm-eval's len(choice)
            if (q->n > ord[i].maxlen) ord[i].maxlen = q->n;
            free(ctx); free(cont);
        }
    }
    qsort(ord, n, sizeof(Order), cmp_order);
    // flatten in sorted order; each question's requests stay adjacent (one batch when they fit)
    Seq *flat = xmalloc(sizeof(Seq) * (nr ? nr : 1));
    int *where = xmalloc(sizeof(int) * (nr ? nr : 1));
    for (int k = 0, f = 0; k < n; k++) {
        int i = ord[k].item;
        for (int j = first[i]; j < first[i + 1]; j++) { flat[f] = seqs[j]; where[f++] = j; }
    }
    SeqScore *fs = xmalloc(sizeof(SeqScore) * (nr ? nr : 1)), *res = xmalloc(sizeof(SeqScore) * (nr ? nr : 1));
    Progress p;
    progress_start(&p, t->name, "items", n);
    int done_items = 0;
    for (int k = 0, start = 0; k < n;) {
        // chunks of whole items, about 256 requests, for progress updates
        int k2 = k, cnt = 0;
        while (k2 < n && cnt < 256) { cnt += n_requests(t, ord[k2].item); k2++; }
        scorer_run(sc, flat + start, cnt, fs + start);
        start += cnt;
        done_items += k2 - k;
        k = k2;
        progress_update(&p, done_items);
    }
    progress_end(&p, n);
    int finite = 1;
    for (int f = 0; f < nr; f++) {
        res[where[f]] = fs[f];
        finite &= isfinite(fs[f].ll) != 0;
    }
    if (finite && samples)
        for (int i = 0; i < n; i++) samples_choice(samples, t, i, shots, seed, seqs + first[i], res + first[i], clen + first[i]);

    int ng = t->n_groups > 1 ? t->n_groups : 1, nout = finite ? 0 : -1;
    for (int g = -1; finite && g < ng && nout < max_out; g++) {
        if (g >= 0 && t->n_groups <= 1) break;
        // g = -1: the whole task; g >= 0: sub-task of group g
        int m = 0;
        int *nopt = xmalloc(sizeof(int) * (n ? n : 1)), *gold = xmalloc(sizeof(int) * (n ? n : 1));
        int *greedy = xmalloc(sizeof(int) * (n ? n : 1));
        double *ll1 = xmalloc(sizeof(double) * (n ? n : 1));
        const double **lls = xmalloc(sizeof(double *) * (n ? n : 1));
        const int **cl = xmalloc(sizeof(int *) * (n ? n : 1));
        double *llv = xmalloc(sizeof(double) * (nr ? nr : 1));
        for (int f = 0; f < nr; f++) llv[f] = res[f].ll;
        for (int i = 0; i < n; i++) {
            if (g >= 0 && t->items[i].group != g) continue;
            nopt[m] = n_requests(t, i);
            gold[m] = t->items[i].gold;
            lls[m] = llv + first[i];
            cl[m] = clen + first[i];
            ll1[m] = res[first[i]].ll;
            greedy[m] = res[first[i]].greedy;
            m++;
        }
        char name[160];
        task_result_name(t, g, name, sizeof name);
        TaskResult *r = &out[nout++];
        set_result(r, name, t, g < 0 ? t->n : m, t->kind == TK_PAIR ? 0 : shots);
        r->subtask = g >= 0;
        if (g >= 0) { r->n_original = 0; for (int i = 0; i < t->n; i++) r->n_original += t->items[i].group == g; }
        if (t->kind == TK_CLOZE) metrics_cloze(r, m, ll1, greedy);
        else metrics_mc(r, m, nopt, lls, cl, gold, t->kind == TK_MC);
        r->seconds = now_sec() - t0;
        r->tokens = (double)(scorer_tokens(sc) - tok0);
        r->positions = (double)(scorer_positions(sc) - pos0);
        free(nopt); free(gold); free(greedy); free(ll1); free(lls); free(cl); free(llv);
    }
    for (int j = 0; j < nr; j++) free((void *)seqs[j].tok);
    free(seqs); free(clen); free(ord); free(flat); free(where); free(fs); free(res); free(first);
    return nout;
}

// lm-eval count_words: len(re.split(r"\s+", doc)).
static double count_words(const char *s) {
    double n = 1;
    for (const char *p = s; *p;) {
        if (isspace((unsigned char)*p)) {
            n++;
            while (*p && isspace((unsigned char)*p)) p++;
        } else p++;
    }
    return n;
}

// Rolling windows of one document (lm-eval get_rolling_token_windows, context_len 1).
static int rolling_windows(const int32_t *full /*[EOT]+tokens*/, int ntok, int S, Seq *out) {
    int nw = 0;
    if (ntok <= 0) return 0;
    int first = ntok < S ? ntok : S;
    out[nw++] = (Seq){full, first + 1, first};
    int predicted = first;
    const int32_t *tok = full + 1;
    while (predicted < ntok) {
        int w = ntok - predicted < S ? ntok - predicted : S;
        int end = predicted + w;
        out[nw++] = (Seq){tok + end - S - 1, S + 1, w};
        predicted += w;
    }
    return nw;
}

static int eval_ppl_task(Scorer *sc, const Tokenizer *tk, const Task *t, int n, TaskResult *out, int S,
                         FILE *samples) {
    double t0 = now_sec();
    long tok0 = scorer_tokens(sc), pos0 = scorer_positions(sc);
    double nll = 0, words = 0, bytes = 0, ntoks = 0;
    Progress p;
    progress_start(&p, t->name, "docs", n);
    for (int d = 0; d < n; d++) {
        const char *doc = t->docs[d];
        size_t len = strlen(doc);
        int nt = 0;
        int32_t *ids = tok_encode(tk, doc, len, &nt);
        int32_t *full = xmalloc(sizeof(int32_t) * (nt + 1));
        full[0] = tok_eot(tk);
        memcpy(full + 1, ids, sizeof(int32_t) * nt);
        Seq *w = xmalloc(sizeof(Seq) * (nt / (S > 0 ? S : 1) + 2));
        int nw = rolling_windows(full, nt, S, w);
        SeqScore *r = xmalloc(sizeof(SeqScore) * (nw ? nw : 1));
        scorer_run(sc, w, nw, r);
        double ll = 0;
        for (int i = 0; i < nw; i++) ll += r[i].ll;
        nll -= ll;
        if (samples && isfinite(ll)) samples_rolling(samples, d, doc, ll, count_words(doc), (double)len, nt);
        words += count_words(doc);
        bytes += len;
        ntoks += nt;
        free(ids); free(full); free(w); free(r);
        progress_update(&p, d + 1);
    }
    progress_end(&p, n);
    if (!isfinite(nll)) return -1;
    set_result(out, t->name, t, t->n_docs, 0);
    out->n = n;
    metrics_ppl(out, nll, words, bytes, ntoks);
    out->seconds = now_sec() - t0;
    out->tokens = (double)(scorer_tokens(sc) - tok0);
    out->positions = (double)(scorer_positions(sc) - pos0);
    return 1;
}

// Held-out shards: the loader's windows (seq_len+1 tokens, unshuffled), all S targets scored —
// the same quantity as the training validation loss, plus per-byte and per-word normalisations
// (bytes and words of the decoded targets; EOT counts as no byte).
static int eval_shard_task(Scorer *sc, const Tokenizer *tk, const Task *t, int limit, TaskResult *out, int S,
                           FILE *samples) {
    double t0 = now_sec();
    long tok0 = scorer_tokens(sc), pos0 = scorer_positions(sc);
    Loader *L = loader_open(t->shards, S, 1, 0, 0, 0, 1);
    loader_require(L, 0, tok_hash(tk));
    uint64_t total = loader_total_windows(L), nw = total;
    if (limit > 0 && (uint64_t)limit < nw) nw = (uint64_t)limit;
    enum { CH = 16 };
    int32_t *buf = xmalloc(sizeof(int32_t) * CH * (S + 1));
    Seq seqs[CH];
    SeqScore r[CH];
    double nll = 0, bytes = 0, words = 0, ntok = 0;
    int eot = tok_eot(tk);
    Progress p;
    progress_start(&p, t->name, "windows", (double)nw);
    for (uint64_t g = 0; g < nw;) {
        int k = 0;
        for (; k < CH && g < nw; k++, g++) {
            int32_t *w = buf + (size_t)k * (S + 1);
            loader_window(L, g, w);
            seqs[k] = (Seq){w, S + 1, S};
            for (int i = 1; i <= S; i++) {
                if (w[i] == eot) { words++; continue; }
                size_t len;
                const unsigned char *pc = tok_piece(tk, w[i], &len);
                bytes += len;
                for (size_t q = 0; q < len; q++) {
                    int sp = pc[q] == ' ' || pc[q] == '\n' || pc[q] == '\t' || pc[q] == '\r';
                    words += sp;
                }
            }
            ntok += S;
        }
        scorer_run(sc, seqs, k, r);
        for (int i = 0; i < k; i++) {
            nll -= r[i].ll;
            if (samples && isfinite(r[i].ll)) samples_window(samples, (long)(g - k + i), t->shards, r[i].ll, S);
        }
        progress_update(&p, (double)g);
    }
    progress_end(&p, (double)nw);
    loader_close(L);
    free(buf);
    if (!isfinite(nll)) return -1;
    set_result(out, t->name, t, (int)total, 0);
    out->n = (int)nw;
    metrics_ppl(out, nll, words, bytes, ntok);
    out->seconds = now_sec() - t0;
    out->tokens = (double)(scorer_tokens(sc) - tok0);
    out->positions = (double)(scorer_positions(sc) - pos0);
    return 1;
}

// --limit counts per sub-task, as lm-eval limits each BLiMP paradigm, so every paradigm is scored:
// the first `limit` items of each, in file order. keep (may be NULL) gets them.
static int per_subtask(const Task *t, int limit, Item *keep) {
    int *taken = xcalloc(t->n_groups, sizeof(int)), n = 0;
    for (int i = 0; i < t->n; i++)
        if (taken[t->items[i].group]++ < limit) {
            if (keep) keep[n] = t->items[i];
            n++;
        }
    free(taken);
    return n;
}

int eval_task_limit(const Task *t, int limit, int *total) {
    int all = t->kind == TK_PPL ? t->n_docs : t->n;
    if (total) *total = all;
    if (limit > 0 && t->kind != TK_PPL && t->n_groups > 1) return per_subtask(t, limit, NULL);
    return limit > 0 && limit < all ? limit : all;
}

int eval_task_count(const Task *t) { return t->kind != TK_PPL && t->n_groups > 1 ? 1 + t->n_groups : 1; }

int eval_task(Scorer *sc, const Tokenizer *tk, const Task *t, int limit, int shots, uint64_t seed,
              TaskResult *out, int max_out) {
    return eval_task_logged(sc, tk, t, limit, shots, seed, out, max_out, NULL);
}

int eval_task_logged(Scorer *sc, const Tokenizer *tk, const Task *t, int limit, int shots, uint64_t seed,
                     TaskResult *out, int max_out, FILE *samples) {
    int S = scorer_seq_len(sc);
    if (max_out < eval_task_count(t)) die("internal: eval_task needs room for %d results, got %d", eval_task_count(t), max_out);
    if (t->shards) return eval_shard_task(sc, tk, t, limit, out, S, samples);
    int n = eval_task_limit(t, limit, NULL);
    if (t->kind == TK_PPL) return eval_ppl_task(sc, tk, t, n, out, S, samples);
    if (limit > 0 && t->n_groups > 1) {
        Task sub = *t;
        sub.items = xmalloc(sizeof(Item) * (t->n ? t->n : 1));
        sub.n = per_subtask(t, limit, sub.items);
        int got = eval_choice_task(sc, tk, &sub, sub.n, shots, seed, out, max_out, S, samples);
        // "original" sample counts are the file's, not the subset's (out[0] = task, 1+g = group g)
        int *all = xcalloc(t->n_groups, sizeof(int));
        for (int i = 0; i < t->n; i++) all[t->items[i].group]++;
        for (int k = 0; k < got; k++) out[k].n_original = k == 0 ? t->n : all[k - 1];
        free(all);
        free(sub.items);
        return got;
    }
    return eval_choice_task(sc, tk, t, n, shots, seed, out, max_out, S, samples);
}
