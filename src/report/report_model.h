// report_model.h — what `aoe report` knows about a set of runs: each run's config, curves and
// final numbers, the seed groups and the table columns. report_read.c builds it from the run
// directories; report.c (tables) and report_plot.c (figures) only read it. Internal to src/report.
#ifndef AOE_REPORT_MODEL_H
#define AOE_REPORT_MODEL_H

typedef struct {
    char *key, *val;  // dotted config key ("model.ffn.d_low") and its value as text
} ConfKV;

typedef struct {
    char *dir, *name;              // as given; basename
    ConfKV *kv;                    // flattened config.json
    int nkv;
    long step, steps, seed;        // last logged step, train.steps, train.seed
    double val_bpb;                // bits per byte of the last validation (metrics.jsonl val_bpb)
    double val_loss, bpb, tps, rss_mb, ent_load, ent_conf, dropped_pct, unrouted_pct;  // NAN = not available
    int bpb_from_eval;             // bpb: 1 from eval results (shards task), 0 val_bpb of metrics.jsonl
    int bpb_unrecorded;            // has a val loss but its metrics line has no val_bpb (older aoe)
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
// Value of key in a flattened config, or NULL; two optional values are equal (both NULL or same text).
const char *kv_find(const ConfKV *kv, int n, const char *key);
int same_val(const char *a, const char *b);
// "dir/name", malloc'd.
char *path_in(const char *dir, const char *name);
void free_kv(ConfKV *kv, int n);
void report_free(Report *R);

#endif
