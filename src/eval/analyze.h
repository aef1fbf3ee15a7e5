// analyze.h — `aoe analyze <analysis> CKPT ...`: post-hoc measurements of a trained checkpoint
// that are not benchmark scores. Each analysis is one file (analyze_<name>.c) and one line in the
// table of analyze.c; each prints a table and can write JSON (--out FILE, written atomically).
//   erc       ε, the n×n matrix M and the ERC loss over a list of α (ERC paper Table 2)
//   clusters  Calinski–Harabasz index of FFN inputs grouped by chosen expert (ETR paper Fig. 9)
#ifndef AOE_ANALYZE_H
#define AOE_ANALYZE_H

#include "model/model.h"
#include "select/select.h"

int analyze_erc(int argc, char **argv);
int analyze_clusters(int argc, char **argv);

// ---- Calinski–Harabasz index, streamed (analyze_clusters.c) ----
// Points are added one at a time with their cluster label; sums are kept in double
// (W = Σ||x||² − Σ_i n_i·||c_i||²), so memory does not grow with the number of points.
typedef struct {
    int n, d;
    long *cnt, unrouted;  // [n] points per cluster; points added with label -1
    double *sum, sq;      // [n,d] per-cluster sums; Σ ||x||² over clustered points
} ClusterAcc;
ClusterAcc *cluster_acc_new(int n, int d);
void cluster_acc_free(ClusterAcc *a);
void cluster_acc_add(ClusterAcc *a, const float *x, int label);  // x [d]; label in [0,n) or -1
// N clustered points, k non-empty clusters, CH = (B/(k−1))/(W/(N−k)) and B/W (NAN if undefined).
void cluster_acc_finish(const ClusterAcc *a, long *N, int *k, double *ch, double *bw);

// ---- helpers shared by the analyses (analyze.c) ----
// Parses a comma-separated list of finite numbers in [lo, hi] into out (max entries); exits 2
// naming the option on a bad entry. Returns the count (>= 1).
int analyze_parse_list(const char *opt, const char *v, double lo, double hi, double *out, int max);
long analyze_parse_long(const char *opt, const char *v, long lo, long hi);
// The selection state of layer l after a forward, or NULL for a dense layer.
const Selection *analyze_layer_selection(const Model *m, int l);
// Writes text to path atomically (JSON outputs), or does nothing if path is NULL.
void analyze_write(const char *path, const char *text);
// Appends s as a JSON string (quoted, escaped).
void analyze_json_string(Buf *b, const char *s);

#endif
