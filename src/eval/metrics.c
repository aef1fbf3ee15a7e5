// metrics.c — lm-eval's metric definitions on already-scored items: acc / acc_norm (argmax of
// the log-likelihood, and of the log-likelihood divided by the choice's length in characters),
// greedy accuracy and perplexity for cloze tasks, word/byte perplexity and bits per byte for
// rolling log-likelihood. Standard errors are lm-eval's mean_stderr: sample std / sqrt(n).
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval/metrics.h"
#include "util/common.h"

void mean_stderr(const double *x, int n, double *mean, double *se) {
    double s = 0;
    for (int i = 0; i < n; i++) s += x[i];
    double mu = n ? s / n : 0, v = 0;
    for (int i = 0; i < n; i++) v += (x[i] - mu) * (x[i] - mu);
    *mean = mu;
    *se = n > 1 ? sqrt(v / (n - 1)) / sqrt((double)n) : 0;
}

static void add(TaskResult *r, const char *name, double v, double se, int hib) {
    if (r->n_m >= (int)(sizeof r->m / sizeof r->m[0])) die("internal: too many metrics");
    Metric *m = &r->m[r->n_m++];
    snprintf(m->name, sizeof m->name, "%s", name);
    m->value = v; m->stderr_ = se; m->higher_is_better = hib;
}

const Metric *result_metric(const TaskResult *r, const char *name) {
    for (int i = 0; i < r->n_m; i++)
        if (!strcmp(r->m[i].name, name)) return &r->m[i];
    return NULL;
}

// First index of the maximum (numpy argmax semantics, ties -> lowest index).
static int argmax_d(const double *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

void item_mc(int n_opts, const double *lls, const int *clen, int gold, double *acc, double *acc_norm) {
    int k = n_opts < 256 ? n_opts : 256;
    double norm[256];
    *acc = argmax_d(lls, k) == gold;
    if (!acc_norm) return;
    for (int j = 0; j < k; j++) norm[j] = lls[j] / (clen[j] > 0 ? clen[j] : 1);
    *acc_norm = argmax_d(norm, k) == gold;
}

void metrics_mc(TaskResult *r, int n, const int *n_opts, const double *const *lls,
                const int *const *clen, const int *gold, int with_norm) {
    double *acc = xmalloc(sizeof(double) * (n ? n : 1)), *accn = xmalloc(sizeof(double) * (n ? n : 1));
    for (int i = 0; i < n; i++) item_mc(n_opts[i], lls[i], clen[i], gold[i], &acc[i], with_norm ? &accn[i] : NULL);
    double mu, se;
    r->n = n;
    mean_stderr(acc, n, &mu, &se);
    add(r, "acc", mu, se, 1);
    if (with_norm) {
        mean_stderr(accn, n, &mu, &se);
        add(r, "acc_norm", mu, se, 1);
    }
    free(acc); free(accn);
}

void metrics_cloze(TaskResult *r, int n, const double *ll, const int *greedy) {
    double *a = xmalloc(sizeof(double) * (n ? n : 1)), *nll = xmalloc(sizeof(double) * (n ? n : 1));
    for (int i = 0; i < n; i++) { a[i] = greedy[i]; nll[i] = -ll[i]; }
    double mu, se, mn, sn;
    mean_stderr(nll, n, &mn, &sn);
    mean_stderr(a, n, &mu, &se);
    r->n = n;
    // lm-eval: perplexity = exp(-mean(ll_i)); its stderr is bootstrapped there, here the delta
    // method: exp(mean) * stderr(mean).
    add(r, "perplexity", exp(mn), exp(mn) * sn, 0);
    add(r, "acc", mu, se, 1);
    free(a); free(nll);
}

void metrics_ppl(TaskResult *r, double nll, double words, double bytes, double tokens) {
    add(r, "word_perplexity", exp(nll / (words > 0 ? words : 1)), -1, 0);
    add(r, "byte_perplexity", exp(nll / (bytes > 0 ? bytes : 1)), -1, 0);
    add(r, "bits_per_byte", nll / (log(2.0) * (bytes > 0 ? bytes : 1)), -1, 0);
    add(r, "token_perplexity", exp(nll / (tokens > 0 ? tokens : 1)), -1, 0);
}
