// report_eval.c — see report_eval.h.
#include "report/report_eval.h"

#include <glob.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util/common.h"
#include "util/json.h"

static double metric_of(const cJSON *t, const char *name) {
    char key[64];
    snprintf(key, sizeof key, "%s,none", name);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(t, key);
    if (cJSON_IsString(v) && !strcmp(v->valuestring, "inf")) return INFINITY;  // an overflowing perplexity
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

// Is name listed in one of the arrays of group_subtasks ({"blimp": ["blimp_adjunct_island", ...]})?
static int is_subtask(const cJSON *group_subtasks, const char *name) {
    const cJSON *arr, *e;
    cJSON_ArrayForEach(arr, group_subtasks) {
        cJSON_ArrayForEach(e, arr) {
            if (cJSON_IsString(e) && !strcmp(e->valuestring, name)) return 1;
        }
    }
    return 0;
}

// load_stats.json in the directory of the results (`aoe eval --load-stats`, docs/eval.md):
// Ent_load and Ent_conf averaged over its tasks and sparse layers.
static void read_load_stats(Run *r, const char *results) {
    char *path = xstrdup(results), *slash = strrchr(path, '/');
    size_t n = strlen(path) + 32;
    char *p = xmalloc(n);
    if (slash) *slash = 0;
    snprintf(p, n, "%s/load_stats.json", slash ? path : ".");
    free(path);
    if (!file_exists(p)) { free(p); return; }
    cJSON *root = json_load_file(p);
    const cJSON *tasks = cJSON_GetObjectItemCaseSensitive(root, "tasks"), *t, *l;
    if (!cJSON_IsArray(tasks)) die_input("%s: key 'tasks' must be an array (docs/eval.md)", p);
    double sl = 0, sc = 0;
    int k = 0;
    cJSON_ArrayForEach(t, tasks) {
        const cJSON *layers = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(t, "stats"), "layers");
        if (!cJSON_IsArray(layers)) die_input("%s: every task needs stats.layers, an array (docs/eval.md)", p);
        cJSON_ArrayForEach(l, layers) {
            const cJSON *a = cJSON_GetObjectItemCaseSensitive(l, "ent_load"), *b = cJSON_GetObjectItemCaseSensitive(l, "ent_conf");
            if (!cJSON_IsNumber(a) || !cJSON_IsNumber(b)) die_input("%s: a layer without numbers ent_load, ent_conf", p);
            sl += a->valuedouble;
            sc += b->valuedouble;
            k++;
        }
    }
    if (k) { r->ev_ent_load = sl / k; r->ev_ent_conf = sc / k; }
    cJSON_Delete(root);
    free(p);
}

void report_read_eval(Run *r) {
    const char *path = r->eval_path;
    if (!path) return;
    cJSON *root = json_load_file(path);
    const cJSON *res = cJSON_GetObjectItemCaseSensitive(root, "results");
    if (!cJSON_IsObject(res)) die_input("%s: key 'results' must be an object of tasks (docs/eval.md)", path);
    const cJSON *sub = cJSON_GetObjectItemCaseSensitive(root, "group_subtasks"), *t;
    cJSON_ArrayForEach(t, res) {
        if (!cJSON_IsObject(t)) die_input("%s: results.%s must be an object of metrics", path, t->string);
        if (sub && is_subtask(sub, t->string)) continue;
        if (!strcmp(t->string, "shards")) {
            r->eval_bpb = metric_of(t, "bits_per_byte");
            continue;
        }
        double v = metric_of(t, "acc_norm");
        if (isnan(v)) v = metric_of(t, "acc");
        if (isnan(v)) continue;
        r->task = xrealloc(r->task, sizeof(char *) * (r->nt + 1));
        r->score = xrealloc(r->score, sizeof(double) * (r->nt + 1));
        r->task[r->nt] = xstrdup(t->string);
        r->score[r->nt++] = v;
    }
    const cJSON *ck = cJSON_GetObjectItemCaseSensitive(root, "checkpoint");
    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(ck, "params_total"), *pa = cJSON_GetObjectItemCaseSensitive(ck, "params_active");
    if (isnan(r->params_total) && cJSON_IsNumber(pt) && cJSON_IsNumber(pa)) {  // a run older than model.json
        r->params_total = pt->valuedouble;
        r->params_active = pa->valuedouble;
    }
    cJSON_Delete(root);
    read_load_stats(r, path);
}

// realpath of the directory part of path, malloc'd, or NULL.
static char *real_dir_of(const char *path) {
    char *d = xstrdup(path), *slash = strrchr(d, '/'), buf[PATH_MAX];
    if (slash) *slash = 0;
    char *r = realpath(slash ? (*d ? d : "/") : ".", buf) ? xstrdup(buf) : NULL;
    free(d);
    return r;
}

// The run a results.json belongs to (index), or -1; *step gets its checkpoint step.
static int owner_of(const char *file, Run *runs, char *const *real, int nrun, long *step) {
    cJSON *root = json_load_file(file);
    const cJSON *ck = cJSON_GetObjectItemCaseSensitive(root, "checkpoint");
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(ck, "path"), *l = cJSON_GetObjectItemCaseSensitive(ck, "label");
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(ck, "step");
    if (!cJSON_IsString(p) || !cJSON_IsNumber(s))
        die_input("%s: expected \"checkpoint\": {\"path\": ..., \"step\": ...} (a results.json of aoe eval)", file);
    *step = (long)s->valuedouble;
    int who = -1;
    char *rd = real_dir_of(p->valuestring);
    for (int i = 0; i < nrun && rd; i++)
        if (real[i] && !strcmp(rd, real[i])) who = i;
    free(rd);
    if (who < 0 && cJSON_IsString(l) && strchr(l->valuestring, '/')) {  // moved, or evaluated from elsewhere
        size_t n = strchr(l->valuestring, '/') - l->valuestring;
        for (int i = 0; i < nrun; i++)
            if (strlen(runs[i].name) == n && !strncmp(runs[i].name, l->valuestring, n)) who = who == -1 ? i : -2;
    }
    cJSON_Delete(root);
    return who < 0 ? -1 : who;
}

void report_find_evals(Run *runs, int nrun, const char *const *evdirs, int nev) {
    long *best = xmalloc(sizeof(long) * (nrun ? nrun : 1));
    char **real = xcalloc(nrun ? nrun : 1, sizeof(char *)), buf[PATH_MAX];
    for (int i = 0; i < nrun; i++) {
        best[i] = -1;
        real[i] = realpath(runs[i].dir, buf) ? xstrdup(buf) : NULL;
    }
    for (int d = 0; d < nev; d++) {
        if (!is_directory(evdirs[d])) die_input("%s: not a directory (expected the --out DIR of aoe eval)", evdirs[d]);
        char pat[2][4200];
        snprintf(pat[0], sizeof pat[0], "%s/results.json", evdirs[d]);
        snprintf(pat[1], sizeof pat[1], "%s/*/results.json", evdirs[d]);
        int used = 0;
        for (int q = 0; q < 2; q++) {
            glob_t g;
            if (glob(pat[q], 0, NULL, &g)) continue;
            for (size_t k = 0; k < g.gl_pathc; k++) {
                const char *f = g.gl_pathv[k];
                long step;
                int who = owner_of(f, runs, real, nrun, &step);
                if (who < 0) {
                    fprintf(stderr, "aoe report: %s: its checkpoint is in none of the run directories given; not used\n", f);
                    continue;
                }
                used++;
                if (step == best[who])
                    die_input("%s and %s: two eval results for %s at step %ld (give the --eval directory of one)",
                              runs[who].eval_path, f, runs[who].dir, step);
                if (step > best[who]) {
                    free(runs[who].eval_path);
                    runs[who].eval_path = xstrdup(f);
                    best[who] = step;
                }
            }
            globfree(&g);
        }
        if (!used) fprintf(stderr, "aoe report: --eval %s: no results.json there belongs to the runs given\n", evdirs[d]);
    }
    for (int i = 0; i < nrun; i++) {
        char *p = path_in(runs[i].dir, "eval/results.json");
        if (!runs[i].eval_path && file_exists(p)) runs[i].eval_path = p;
        else free(p);
        free(real[i]);
    }
    free(real);
    free(best);
}
