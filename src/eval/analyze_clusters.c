// analyze_clusters.c — `aoe analyze clusters CKPT --text FILE`: how well a sparse model's experts
// partition the token representations (ETR paper Eq.13, Fig. 9; methods.md §3.5). The text is
// tokenized with the checkpoint's tokenizer and run through the model in windows of seq_len
// (eval forwards). In every sparse layer each token joins the cluster of the expert that
// processes it with the largest gate (tokens no expert processed are counted, not clustered), and
// the points are the layer's FFN inputs (the normalised state the router / keys see). Per layer:
//   B = Σ_i n_i·||c_i − c||²,  W = Σ_i Σ_{x∈C_i} ||x − c_i||²   (c_i cluster means, c overall mean)
//   CH = (B/(k−1)) / (W/(N−k))   (Calinski–Harabasz, k non-empty clusters, N points)
// The paper's Eq.13 prints the ratio B/W without the degrees of freedom; both are reported.
// Random assignments give CH ≈ 1; larger = tighter, better separated expert clusters.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "eval/analyze.h"
#include "eval/open.h"
#include "model/kernels.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: aoe analyze clusters CKPT|RUN_DIR --text FILE [--max-tokens N] [--batch N]\n"
            "                            [--tokenizer PATH] [--threads N] [--out FILE.json]\n"
            "\n"
            "Calinski-Harabasz index (ETR paper Eq.13) of the sparse layers' FFN inputs grouped by the expert\n"
            "that processes each token (largest gate), per layer, on held-out text. Random assignment gives\n"
            "CH ~ 1; B/W is the paper's printed ratio (no degrees-of-freedom factors).\n"
            "  --text FILE      UTF-8 text, tokenized with the checkpoint's tokenizer (required)\n"
            "  --max-tokens N   first N tokens of the text (default 65536)\n"
            "  --batch N        sequences of seq_len per forward (default 8)\n"
            "  --tokenizer PATH tokenizer (default: the checkpoint config's; must be the one it trained with)\n"
            "  --threads N      threads (default: OMP_NUM_THREADS, else all cores)\n"
            "  --out FILE       write the per-layer results and cluster sizes as JSON\n");
}

ClusterAcc *cluster_acc_new(int n, int d) {
    ClusterAcc *a = xcalloc(1, sizeof *a);
    a->n = n;
    a->d = d;
    a->cnt = xcalloc(n, sizeof(long));
    a->sum = xcalloc((size_t)n * d, sizeof(double));
    return a;
}

void cluster_acc_free(ClusterAcc *a) {
    if (!a) return;
    free(a->cnt); free(a->sum); free(a);
}

void cluster_acc_add(ClusterAcc *a, const float *x, int label) {
    if (label < 0) { a->unrouted++; return; }
    double *s = a->sum + (size_t)label * a->d, q = 0;
    for (int k = 0; k < a->d; k++) { s[k] += x[k]; q += (double)x[k] * x[k]; }
    a->sq += q;
    a->cnt[label]++;
}

void cluster_acc_finish(const ClusterAcc *a, long *N, int *k, double *ch, double *bw) {
    int n = a->n, d = a->d;
    double *c = xcalloc(d, sizeof(double)), within = a->sq, between = 0;
    *N = 0; *k = 0;
    for (int e = 0; e < n; e++) {
        *N += a->cnt[e];
        *k += a->cnt[e] > 0;
        for (int j = 0; j < d; j++) c[j] += a->sum[(size_t)e * d + j];
    }
    for (int j = 0; j < d; j++) c[j] /= *N > 0 ? *N : 1;
    for (int e = 0; e < n; e++) {
        if (!a->cnt[e]) continue;
        double q = 0, b = 0;
        for (int j = 0; j < d; j++) {
            double ci = a->sum[(size_t)e * d + j] / a->cnt[e];
            q += ci * ci;
            b += (ci - c[j]) * (ci - c[j]);
        }
        within -= a->cnt[e] * q;
        between += a->cnt[e] * b;
    }
    free(c);
    *bw = within > 0 ? between / within : NAN;
    *ch = *k >= 2 && *N > *k && within > 0 ? (between / (*k - 1)) / (within / (*N - *k)) : NAN;
}

// The expert that processes token t with the largest gate (ties: earlier slot), -1 if none.
static int top_expert(const Selection *sel, int t) {
    int best = -1;
    float g = -INFINITY;
    for (int j = 0; j < sel->kmax; j++) {
        size_t i = (size_t)t * sel->kmax + j;
        if (sel->expert[i] >= 0 && sel->gate[i] > g) { g = sel->gate[i]; best = sel->expert[i]; }
    }
    return best;
}

typedef struct {
    int nacc, *layer;
    ClusterAcc **acc;
} Clusters;

static void clusters_add(void *ctx, const Model *m, int B, int S) {
    Clusters *c = ctx;
    for (int k = 0; k < c->nacc; k++) {
        const Selection *sel = analyze_layer_selection(m, c->layer[k]);
        const float *x = m->blocks[c->layer[k]].ln2;
        for (int t = 0; t < B * S; t++) cluster_acc_add(c->acc[k], x + (size_t)t * m->d, top_expert(sel, t));
    }
}

int analyze_clusters(int argc, char **argv) {
    if (wants_help(argc, argv)) { usage(stdout); return 0; }
    TextRun tr;
    const char *out = NULL;
    int rc = analyze_text_open(&tr, argc, argv, "clusters", &out);
    if (rc) { usage(stderr); return rc; }
    Model *m = tr.m;
    const char *path = tr.path, *text_path = tr.text_path;
    int nt = tr.nt, nacc = 0;
    ClusterAcc **acc = xcalloc(m->L, sizeof(ClusterAcc *));
    int *layer = xcalloc(m->L, sizeof(int));
    for (int l = 0; l < m->L; l++)
        if (ffn_is_sparse_layer(&m->cfg, l)) {
            layer[nacc] = l;
            acc[nacc++] = cluster_acc_new(m->cfg.ffn.n_experts, m->d);
        }
    Clusters cl = {nacc, layer, acc};
    analyze_text_run(&tr, clusters_add, &cl, "analyze clusters");
    CkptMeta meta = tr.meta;
    Buf js = {0};
    bprintf(&js, "{\"v\":1,\"checkpoint\":");
    analyze_json_string(&js, path);
    bprintf(&js, ",\"step\":%ld,\"text\":", ckpt_meta_step(&meta));
    analyze_json_string(&js, text_path);
    bprintf(&js, ",\"tokens\":%d,\"layers\":[", nt);
    printf("# aoe analyze clusters %s (step %ld) on %s: %d tokens\n", path, ckpt_meta_step(&meta), text_path, nt);
    printf("| layer | clustered | clusters | CH | B/W | unrouted |\n|---:|---:|---:|---:|---:|---:|\n");
    for (int k = 0; k < nacc; k++) {
        const ClusterAcc *a = acc[k];
        long N;
        int nk;
        double ch, bw;
        cluster_acc_finish(a, &N, &nk, &ch, &bw);
        printf("| %d | %ld | %d | %.2f | %.4f | %ld |\n", layer[k], N, nk, ch, bw, a->unrouted);
        bprintf(&js, "%s{\"layer\":%d,\"clustered\":%ld,\"clusters\":%d,\"unrouted\":%ld,", k ? "," : "", layer[k], N, nk,
                a->unrouted);
        if (isfinite(ch)) bprintf(&js, "\"ch\":%.9g,", ch);
        else bprintf(&js, "\"ch\":null,");
        if (isfinite(bw)) bprintf(&js, "\"bw\":%.9g,\"counts\":[", bw);
        else bprintf(&js, "\"bw\":null,\"counts\":[");
        for (int e = 0; e < a->n; e++) bprintf(&js, "%s%ld", e ? "," : "", a->cnt[e]);
        bprintf(&js, "]}");
        cluster_acc_free(acc[k]);
    }
    bprintf(&js, "]}\n");
    analyze_write(out, js.s);
    if (out) fprintf(stderr, "aoe analyze clusters: wrote %s\n", out);
    free(js.s); free(acc); free(layer);
    analyze_text_close(&tr);
    return 0;
}
