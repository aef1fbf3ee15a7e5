// analyze.h — `aoe analyze <analysis> CKPT ...`: post-hoc measurements of a trained checkpoint
// that are not benchmark scores. Each analysis is one file (analyze_<name>.c) and one line in the
// table of analyze.c; each prints a table and can write JSON (--out FILE, written atomically).
//   erc       ε, the n×n matrix M and the ERC loss over a list of α (ERC paper Table 2)
//   clusters  Calinski–Harabasz index of FFN inputs grouped by chosen expert (ETR paper Fig. 9)
//   load      expert load per layer on text: counts, Ent_load, Ent_conf (AoE paper Fig. 3)
#ifndef AOE_ANALYZE_H
#define AOE_ANALYZE_H

#include "ckpt/ckpt.h"
#include "data/tokenizer.h"
#include "model/model.h"
#include "select/select.h"

int analyze_erc(int argc, char **argv);
int analyze_clusters(int argc, char **argv);
int analyze_load(int argc, char **argv);

// ---- a checkpoint run over a text file (clusters, load) ----
typedef struct {
    char *path;             // the checkpoint
    const char *text_path;
    Model *m;
    Tokenizer *tk;
    CkptMeta meta;
    int32_t *ids;
    int nt, B;              // tokens used (first --max-tokens), sequences per forward
} TextRun;
// Parses CKPT --text FILE [--max-tokens N] [--batch N] [--tokenizer P] [--threads N] [--out F]
// (*out gets F or NULL), then opens the checkpoint, its tokenizer and the text. Returns 0, or 2
// after a one-line message for a usage error (the caller prints its usage). Bad files exit 2.
int analyze_text_open(TextRun *r, int argc, char **argv, const char *name, const char **out);
// Runs the model (eval forwards, no LM head) over the tokens in windows of seq_len, B at a time;
// after each forward of B rows × S positions (all real tokens) calls fn(ctx, m, B, S).
void analyze_text_run(TextRun *r, void (*fn)(void *ctx, const Model *m, int B, int S), void *ctx, const char *what);
void analyze_text_close(TextRun *r);

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
