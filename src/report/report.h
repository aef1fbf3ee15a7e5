// report.h — the pieces of `aoe report` (report.c: reading run directories, grouping seeds, the
// Markdown/CSV tables; report_plot.c: the gnuplot figures). Internal to src/report.
#ifndef AOE_REPORT_H
#define AOE_REPORT_H

#include <stdio.h>

typedef struct {
    char *key, *val;  // dotted config key ("model.ffn.d_low") and its value as text
} ConfKV;

typedef struct {
    char *dir, *name;              // as given; basename
    ConfKV *kv;                    // flattened config.json
    int nkv;
    long step, steps, seed;        // last logged step, train.steps, train.seed
    double val_loss, bpb, tps, rss_mb, ent_load, ent_conf, dropped_pct, unrouted_pct;  // NAN = not available
    int bpb_from_eval;             // bpb: 1 from eval results (shards task), 0 computed from val loss
    double *vstep, *vloss;         // validation-loss curve
    int nv;
    int nl;                        // sparse layers in load.jsonl
    int *layer;                    // [nl] layer indices
    double *lay_ent_load, *lay_ent_conf;  // [nl] last logged interval
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
    int *differ_nvals;             // distinct values of each over the runs
    int ndiffer;
    ConfKV *dflt;                  // the config schema's defaults, flattened
    int ndflt;
} Report;

// Value of config key in a run, or NULL.
const char *run_conf(const Run *r, const char *key);
// Mean and sample standard deviation of column c over group g's members that have it; returns
// how many had it (std is NAN below 2).
int group_stat(const Report *R, const Group *g, int c, double *mean, double *std);
// What sets a run apart, "d_low=32 lb_coef=0": the differing keys (last component unless two
// share it) except type and select (the method column), AoE-only keys of other types, keys listed
// in skip (space-separated), and default values of keys with fewer than 3 distinct values.
// Malloc'd.
char *differs_text(const Report *R, const Run *r, const char *skip);
// Index of a column by CSV name, or -1.
int report_col(const Report *R, const char *csv);

// Writes the plots' data files and report.gp into dir and runs gnuplot there. Returns gnuplot's
// status (0 ok) and lists the PNG names written in png[] (*npng).
int report_plots(const Report *R, const char *dir, const char **png, int *npng);

#endif
