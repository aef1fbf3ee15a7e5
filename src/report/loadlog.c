// loadlog.c — see loadlog.h. Every key the schema requires is checked on every line; keys this
// reader does not know are ignored (docs/stats.md: future selection methods may add keys).
#include "report/loadlog.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util/common.h"
#include "util/json.h"

static _Noreturn void bad_line(const char *path, int line, const char *what) {
    die_input("%s:%d: %s (schema: docs/stats.md)", path, line, what);
}

static double num_key(cJSON *j, const char *key, const char *path, int line) {
    cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!cJSON_IsNumber(v)) {
        char msg[96];
        snprintf(msg, sizeof msg, "missing or non-numeric key '%s'", key);
        bad_line(path, line, msg);
    }
    return v->valuedouble;
}

// Reads a numeric array of length *n (*n < 0: any length, returned in *n) into a fresh buffer.
static double *arr_key(cJSON *j, const char *key, int *n, const char *path, int line, int required) {
    cJSON *a = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!a && !required) return NULL;
    char msg[128];
    if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) < 1) {
        snprintf(msg, sizeof msg, "key '%s' must be a non-empty array of numbers", key);
        bad_line(path, line, msg);
    }
    int m = cJSON_GetArraySize(a);
    if (*n >= 0 && m != *n) {
        snprintf(msg, sizeof msg, "key '%s' has %d entries, expected %d (one per expert)", key, m, *n);
        bad_line(path, line, msg);
    }
    *n = m;
    double *v = xmalloc(sizeof(double) * m);
    int i = 0;
    cJSON *e;
    cJSON_ArrayForEach(e, a) {
        if (!cJSON_IsNumber(e)) {
            snprintf(msg, sizeof msg, "key '%s' entry %d is not a number", key, i);
            bad_line(path, line, msg);
        }
        v[i++] = e->valuedouble;
    }
    return v;
}

typedef struct { LoadLayer *ls; int nl; } Acc;

static LoadLayer *find_layer(Acc *a, int layer) {
    for (int i = 0; i < a->nl; i++)
        if (a->ls[i].layer == layer) return &a->ls[i];
    a->ls = xrealloc(a->ls, sizeof(LoadLayer) * (a->nl + 1));
    LoadLayer *L = &a->ls[a->nl++];
    memset(L, 0, sizeof *L);
    L->layer = layer;
    L->n = -1;
    return L;
}

static void parse_line(cJSON *j, const char *path, int line, void *ctx) {
    double v = num_key(j, "v", path, line);
    if (v < 1 || v > LOADLOG_VERSION) {
        char msg[96];
        snprintf(msg, sizeof msg, "schema version %g is not one this aoe reads (1..%d)", v, LOADLOG_VERSION);
        bad_line(path, line, msg);
    }
    int layer = (int)num_key(j, "layer", path, line);
    if (layer < 0) bad_line(path, line, "key 'layer' must be >= 0");
    LoadLayer *L = find_layer(ctx, layer);
    LoadRec r = {0};
    r.step = (long)num_key(j, "step", path, line);
    r.ent_load = num_key(j, "ent_load", path, line);
    r.ent_conf = num_key(j, "ent_conf", path, line);
    r.cv = num_key(j, "cv", path, line);
    r.mm = num_key(j, "max_minus_min", path, line);
    r.dead = (long)num_key(j, "dead", path, line);
    r.dropped = (long)num_key(j, "dropped", path, line);
    r.lb = num_key(j, "lb_loss", path, line);
    cJSON *tk = cJSON_GetObjectItemCaseSensitive(j, "tokens");
    r.tokens = cJSON_IsNumber(tk) ? (long)tk->valuedouble : 0;
    int n = L->n;
    r.frac = arr_key(j, "counts", &n, path, line, 1);
    double sum = 0;
    for (int e = 0; e < n; e++) {
        if (r.frac[e] < 0) bad_line(path, line, "negative entry in 'counts'");
        sum += r.frac[e];
    }
    for (int e = 0; e < n; e++) r.frac[e] = sum > 0 ? r.frac[e] / sum : 0;
    r.norm = arr_key(j, "norm_mean", &n, path, line, 0);
    cJSON *o;  // optional keys of newer methods: absent in older lines
    r.k_mean = cJSON_IsNumber(o = cJSON_GetObjectItemCaseSensitive(j, "k_mean")) ? o->valuedouble : NAN;
    r.unrouted = cJSON_IsNumber(o = cJSON_GetObjectItemCaseSensitive(j, "unrouted")) ? (long)o->valuedouble : -1;
    r.erc_loss = cJSON_IsNumber(o = cJSON_GetObjectItemCaseSensitive(j, "erc_loss")) ? o->valuedouble : NAN;
    r.erc_eps = cJSON_IsNumber(o = cJSON_GetObjectItemCaseSensitive(j, "erc_eps")) ? o->valuedouble : NAN;
    if (cJSON_IsString(o = cJSON_GetObjectItemCaseSensitive(j, "select"))) snprintf(L->select, sizeof L->select, "%s", o->valuestring);
    L->n = n;
    cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "type"), *k = cJSON_GetObjectItemCaseSensitive(j, "k");
    if (cJSON_IsString(t)) snprintf(L->type, sizeof L->type, "%s", t->valuestring);
    if (cJSON_IsNumber(k)) L->k = k->valueint;
    if (L->nr == L->cap) L->r = xrealloc(L->r, sizeof(LoadRec) * (L->cap = L->cap ? 2 * L->cap : 64));
    L->r[L->nr++] = r;
}

static int cmp_layer(const void *a, const void *b) {
    return ((const LoadLayer *)a)->layer - ((const LoadLayer *)b)->layer;
}

LoadLayer *loadlog_read(const char *path, int *nl) {
    Acc a = {0};
    jsonl_each(path, parse_line, &a, "schema: docs/stats.md");
    if (a.nl) qsort(a.ls, a.nl, sizeof *a.ls, cmp_layer);
    *nl = a.nl;
    return a.ls;
}

void loadlog_free(LoadLayer *ls, int nl) {
    for (int i = 0; i < nl; i++) {
        for (int j = 0; j < ls[i].nr; j++) { free(ls[i].r[j].frac); free(ls[i].r[j].norm); }
        free(ls[i].r);
    }
    free(ls);
}
