// report_model.h — what `aoe report` knows about a set of runs: each run's config, curves and
// final numbers, the seed groups and the table columns. report_read.c builds it from the run
// directories; report.c (tables) and report_plot.c (figures) only read it. Internal to src/report.
#ifndef AOE_REPORT_MODEL_H
#define AOE_REPORT_MODEL_H

#include "config/config.h"

typedef struct {
    char *key, *val;  // dotted config key ("model.ffn.d_low") and its value as text
} ConfKV;

typedef struct {
    char *dir, *name;              // as given; basename
    ConfKV *kv;                    // flattened config.json
    int nkv;
    Config *cfg;                   // config.json as a Config, to ask the model which keys it uses;
                                   // NULL if a model.ffn.* value is not one this aoe knows
    long step, steps, seed;        // last logged step, train.steps, train.seed
    // NAN = not available. Training's numbers (metrics.jsonl, model.json) and eval's
    // (results.json) are kept apart: they never share a column.
    double val_loss, val_bpb;      // last validation pass of training: loss, bits per byte
    int val_bpb_missing;           // has a val loss but its line has no val_bpb (older aoe)
    double params_total, params_active;  // model.json (else the eval results' checkpoint block)
    double eval_bpb;               // eval results: bits per byte of the shards task
    char *eval_path;               // the results.json read, or NULL
    double tps, rss_mb, ent_load, ent_conf, dropped_pct, unrouted_pct;
    double ev_ent_load, ev_ent_conf;  // load_stats.json next to the results (aoe eval --load-stats):
                                      // Ent_load, Ent_conf averaged over its tasks and sparse layers
    double *tstep, *tloss;         // training-loss curve (mean over each logged interval)
    int ntl;
    double *vstep, *vloss;         // validation-loss curve
    int nv;
    int nl;                        // sparse layers in load.jsonl
    int *layer;                    // [nl] layer indices
    double *lay_ent_load, *lay_ent_conf;  // [nl] last logged interval
    double *estep, *eps;           // ERC ε over training (erc_coef > 0 or erc_log): steps [ne], eps [nl,ne]
    int ne;
    char **task;                   // eval benchmark tasks (main metric, fraction), file order
    double *score;
    int nt;
    double *col;                   // [Report.ncol] the table's values (filled by report.c)
    int group;
} Run;

typedef struct {
    int *member;                   // indices into Report.run
    int n;
    char *label, *method, *differs;
} Group;

typedef struct {
    const char *name, *csv, *fmt;  // Markdown header, CSV header, printf format of one value
    double md_scale;               // Markdown shows value / md_scale (CSV: the value)
    int task;                      // a benchmark column (accuracy in %)
} Column;

typedef struct {
    Run *run;
    int nrun;
    Group *group;
    int ngroup;
    Column *col;
    int ncol;
    char **differ_keys;            // config keys whose values differ between runs (seed excluded)
    int ndiffer;
} Report;

// Value of config key in a run, or NULL.
const char *run_conf(const Run *r, const char *key);
// Mean and sample standard deviation of column c over group g's members that have it; returns
// how many had it (std is NAN below 2).
int group_stat(const Report *R, const Group *g, int c, double *mean, double *std);
// What sets a run apart, "d_low=32 lb_coef=0": every key whose value is not the same in all runs
// (defaults included; last component unless two keys share it) and that r's model uses
// (model_key_used: no d_low on a router MoE row, no etr_* on a top-k row), except type and
// select (the method column) and keys listed in skip (space-separated). Malloc'd.
char *differs_text(const Report *R, const Run *r, const char *skip);
// Index of a column by CSV name, or -1.
int report_col(const Report *R, const char *csv);
// Value of key in a flattened config, or NULL; two optional values are equal (both NULL or same text).
const char *kv_find(const ConfKV *kv, int n, const char *key);
int same_val(const char *a, const char *b);
// "dir/name", malloc'd.
char *path_in(const char *dir, const char *name);
void free_kv(ConfKV *kv, int n);
void report_free(Report *R);

#endif
