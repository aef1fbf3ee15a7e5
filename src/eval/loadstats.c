// loadstats.c — expert-load statistics on evaluation tokens (loadstats.h).
#include "eval/loadstats.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval/analyze.h"

typedef struct {
    int layer, n;
    long *counts;     // [n] processed assignments
    double ent_conf;  // Σ over tokens of H(softmax(S_t))
} Acc;

struct LoadStats {
    int nl;
    long tokens;
    Acc *a;
};

LoadStats *loadstats_new(const Model *m) {
    LoadStats *ls = xcalloc(1, sizeof *ls);
    ls->a = xcalloc(m->L, sizeof(Acc));
    for (int l = 0; l < m->L; l++) {
        const Selection *s = analyze_layer_selection(m, l);
        if (!s) continue;
        Acc *a = &ls->a[ls->nl++];
        a->layer = l;
        a->n = s->n;
        a->counts = xcalloc(s->n, sizeof(long));
    }
    return ls;
}

void loadstats_free(LoadStats *ls) {
    if (!ls) return;
    for (int i = 0; i < ls->nl; i++) free(ls->a[i].counts);
    free(ls->a);
    free(ls);
}

void loadstats_reset(LoadStats *ls) {
    ls->tokens = 0;
    for (int i = 0; i < ls->nl; i++) {
        memset(ls->a[i].counts, 0, sizeof(long) * ls->a[i].n);
        ls->a[i].ent_conf = 0;
    }
}

void loadstats_add(LoadStats *ls, const Model *m, const int *len, int B, int S) {
    for (int b = 0; b < B; b++) ls->tokens += len[b];
    for (int i = 0; i < ls->nl; i++) {
        Acc *a = &ls->a[i];
        const Selection *s = analyze_layer_selection(m, a->layer);
        int n = s->n, km = s->kmax;
        for (int b = 0; b < B; b++)
            for (int p = 0; p < len[b]; p++) {
                size_t t = (size_t)b * S + p;
                for (int j = 0; j < km; j++) {
                    int e = s->expert[t * km + j];
                    if (e >= 0) a->counts[e]++;
                }
                const float *pr = s->prob + t * n;
                double h = 0;
                for (int e = 0; e < n; e++)
                    if (pr[e] > 0) h -= pr[e] * log(pr[e]);
                a->ent_conf += h;
            }
    }
}

void loadstats_hook(void *ctx, const Model *m, const int *len, int B, int S) { loadstats_add(ctx, m, len, B, S); }

void loadstats_json(const LoadStats *ls, Buf *b) {
    bprintf(b, "{\"tokens\":%ld,\"layers\":[", ls->tokens);
    for (int i = 0; i < ls->nl; i++) {
        const Acc *a = &ls->a[i];
        long tot = 0;
        for (int e = 0; e < a->n; e++) tot += a->counts[e];
        double ent = 0, fmx = 0, fmn = 1;
        bprintf(b, "%s{\"layer\":%d,\"counts\":[", i ? "," : "", a->layer);
        for (int e = 0; e < a->n; e++) {
            double f = tot ? (double)a->counts[e] / tot : 0;
            if (f > 0) ent -= f * log(f);
            fmx = fmax(fmx, f);
            fmn = fmin(fmn, f);
            bprintf(b, "%s%ld", e ? "," : "", a->counts[e]);
        }
        bprintf(b, "],\"ent_load\":%.6g,\"ent_conf\":%.6g,\"max_minus_min\":%.6g}", ent,
                ls->tokens ? a->ent_conf / ls->tokens : 0.0, tot ? fmx - fmn : 0.0);
    }
    bprintf(b, "]}");
}
