// loadlog.h — the reader of load.jsonl (schema: docs/stats.md), shared by `aoe stats` and
// `aoe report`: one record per sparse layer and logging interval, validated line by line.
#ifndef AOE_LOADLOG_H
#define AOE_LOADLOG_H

#define LOADLOG_VERSION 1  // newest load.jsonl schema this reader understands

typedef struct {
    long step, dead, dropped, tokens;
    double ent_load, ent_conf, cv, mm, lb;
    double *frac;   // [n] load fractions counts/Σcounts
    double *norm;   // [n] AoE mean key norms, or NULL
    // optional keys (docs/stats.md): NAN / -1 when the line has none
    double k_mean, erc_loss, erc_eps;
    long unrouted;
} LoadRec;

typedef struct {
    int layer, n, k;
    char type[16];
    char select[16];  // selection method, "" if the lines do not say
    LoadRec *r;     // in file order
    int nr, cap;
} LoadLayer;

// Reads a load.jsonl file; returns its layers sorted by index (*nl = 0 and NULL for an empty
// file). Exits 2 with "path:LINE: what is wrong (schema: docs/stats.md)" on a malformed line.
LoadLayer *loadlog_read(const char *path, int *nl);
void loadlog_free(LoadLayer *ls, int nl);

#endif
