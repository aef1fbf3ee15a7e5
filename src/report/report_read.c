// report_read.c — see report_read.h; docs/sweeps.md describes every value it derives.
#include "report/report_read.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "report/loadlog.h"
#include "report/report_eval.h"
#include "util/common.h"
#include "util/json.h"

static double conf_num(const Run *r, const char *key, double dflt) {
    const char *v = run_conf(r, key);
    char *end;
    double x = v ? strtod(v, &end) : dflt;
    return v && (end == v || *end) ? dflt : x;
}

// Appends every leaf of a config object as ("model.ffn.d_low", "48").
static void flatten(ConfKV **kv, int *n, const cJSON *o, const char *prefix) {
    const cJSON *it;
    cJSON_ArrayForEach(it, o) {
        char key[256];
        snprintf(key, sizeof key, "%s%s%s", prefix, *prefix ? "." : "", it->string ? it->string : "?");
        if (cJSON_IsObject(it)) { flatten(kv, n, it, key); continue; }
        char buf[64], *val;
        if (cJSON_IsString(it)) val = xstrdup(it->valuestring);
        else if (cJSON_IsNumber(it)) {  // configs hold float32 values: 6 digits round-trip them
            double x = it->valuedouble;
            snprintf(buf, sizeof buf, x == floor(x) && fabs(x) < 1e15 ? "%.0f" : "%.6g", x);
            val = xstrdup(buf);
        }
        else if (cJSON_IsBool(it)) val = xstrdup(cJSON_IsTrue(it) ? "true" : "false");
        else val = cJSON_PrintUnformatted(it);
        *kv = xrealloc(*kv, sizeof(ConfKV) * (*n + 1));
        (*kv)[(*n)++] = (ConfKV){xstrdup(key), val};
    }
}

static double opt_num(cJSON *j, const char *key, const char *path, int line) {
    cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!v) return NAN;
    if (!cJSON_IsNumber(v)) die_input("%s:%d: key '%s' must be a number", path, line, key);
    return v->valuedouble;
}

typedef struct { Run *r; double *tps; int ntps; } MetricsAcc;

static void push_point(double **xs, double **ys, int *n, double x, double y) {
    *xs = xrealloc(*xs, sizeof(double) * (*n + 1));
    *ys = xrealloc(*ys, sizeof(double) * (*n + 1));
    (*xs)[*n] = x;
    (*ys)[(*n)++] = y;
}

static void metrics_line(cJSON *j, const char *path, int line, void *ctx) {
    MetricsAcc *a = ctx;
    Run *r = a->r;
    double step = opt_num(j, "step", path, line);
    if (isnan(step)) die_input("%s:%d: missing key 'step' (a metrics.jsonl line of aoe train)", path, line);
    r->step = (long)step;
    double vl = opt_num(j, "val_loss", path, line), tps = opt_num(j, "tokens_per_s", path, line);
    double tl = opt_num(j, "loss", path, line);
    if (!isnan(tl)) push_point(&r->tstep, &r->tloss, &r->ntl, step, tl);
    double rss = opt_num(j, "peak_rss_mb", path, line);
    if (!isnan(vl)) {
        push_point(&r->vstep, &r->vloss, &r->nv, step, vl);
        r->val_loss = vl;
        r->val_bpb = opt_num(j, "val_bpb", path, line);  // NAN on lines of an aoe that did not record it
    }
    if (!isnan(tps)) {
        a->tps = xrealloc(a->tps, sizeof(double) * (a->ntps + 1));
        a->tps[a->ntps++] = tps;
    }
    if (!isnan(rss) && (isnan(r->rss_mb) || rss > r->rss_mb)) r->rss_mb = rss;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

// Tokens/s is the median over logged intervals: robust to the intervals that include a
// validation pass and to a busy machine.
static void read_metrics(Run *r) {
    char *path = path_in(r->dir, "metrics.jsonl");
    if (!file_exists(path)) die_input("%s: missing (is %s a run directory of aoe train that has logged a step?)", path, r->dir);
    MetricsAcc a = {r, NULL, 0};
    jsonl_each(path, metrics_line, &a, "expected a metrics.jsonl line of aoe train");
    if (a.ntps) {
        qsort(a.tps, a.ntps, sizeof(double), cmp_double);
        r->tps = a.ntps % 2 ? a.tps[a.ntps / 2] : 0.5 * (a.tps[a.ntps / 2 - 1] + a.tps[a.ntps / 2]);
    }
    free(a.tps);
    free(path);
}

// Ent_load / Ent_conf: mean over sparse layers of each layer's last logged interval. Over all
// intervals and layers: dropped = Σ dropped / Σ tokens·k_mean (k without k_mean) and unrouted =
// Σ unrouted / Σ tokens, in % (unrouted only when the lines carry it).
static void read_load(Run *r) {
    char *path = path_in(r->dir, "load.jsonl");
    const char *type = run_conf(r, "model.ffn.type");
    if (!file_exists(path)) {
        if (type && strcmp(type, "dense"))
            die_input("%s: missing (a %s run writes it every train.log_every steps; docs/stats.md)", path, type);
        free(path);
        return;
    }
    int nl;
    LoadLayer *ls = loadlog_read(path, &nl);
    double dropped = 0, assigned = 0, el = 0, ec = 0, unrouted = 0, toks = 0;
    int has_unrouted = 0;
    r->nl = nl;
    r->layer = xmalloc(sizeof(int) * (nl ? nl : 1));
    r->lay_ent_load = xmalloc(sizeof(double) * (nl ? nl : 1));
    r->lay_ent_conf = xmalloc(sizeof(double) * (nl ? nl : 1));
    for (int i = 0; i < nl; i++) {
        const LoadRec *last = &ls[i].r[ls[i].nr - 1];
        r->layer[i] = ls[i].layer;
        el += r->lay_ent_load[i] = last->ent_load;
        ec += r->lay_ent_conf[i] = last->ent_conf;
        for (int j = 0; j < ls[i].nr; j++) {
            const LoadRec *q = &ls[i].r[j];
            dropped += q->dropped;
            assigned += (double)q->tokens * (!isnan(q->k_mean) ? q->k_mean : ls[i].k > 0 ? ls[i].k : 1);
            toks += q->tokens;
            if (q->unrouted >= 0) { unrouted += q->unrouted; has_unrouted = 1; }
        }
    }
    // ERC ε per layer over training, on the steps every layer logged (the shortest record list)
    int ne = nl ? ls[0].nr : 0;
    for (int i = 0; i < nl; i++) {
        if (ls[i].nr < ne) ne = ls[i].nr;
        for (int j = 0; j < ls[i].nr; j++) ne = isnan(ls[i].r[j].erc_eps) ? 0 : ne;
    }
    if (ne) {
        r->ne = ne;
        r->estep = xmalloc(sizeof(double) * ne);
        r->eps = xmalloc(sizeof(double) * ne * nl);
        for (int j = 0; j < ne; j++) r->estep[j] = ls[0].r[j].step;
        for (int i = 0; i < nl; i++)
            for (int j = 0; j < ne; j++) r->eps[(size_t)i * ne + j] = ls[i].r[j].erc_eps;
    }
    if (nl) {
        r->ent_load = el / nl;
        r->ent_conf = ec / nl;
        r->dropped_pct = assigned > 0 ? 100 * dropped / assigned : NAN;
        r->unrouted_pct = has_unrouted && toks > 0 ? 100 * unrouted / toks : NAN;
    }
    loadlog_free(ls, nl);
    free(path);
}

// RUN/model.json (aoe train): parameter counts. Older runs have none (the eval results may).
static void read_model_json(Run *r) {
    char *path = path_in(r->dir, "model.json");
    if (file_exists(path)) {
        cJSON *j = json_load_file(path);
        r->params_total = opt_num(j, "params_total", path, 1);
        r->params_active = opt_num(j, "params_active", path, 1);
        cJSON_Delete(j);
    }
    free(path);
}

static void read_run(Run *r, const char *dir) {
    memset(r, 0, sizeof *r);
    r->dir = xstrdup(dir);
    size_t n = strlen(r->dir);
    while (n > 1 && r->dir[n - 1] == '/') r->dir[--n] = 0;
    const char *slash = strrchr(r->dir, '/');
    r->name = xstrdup(slash ? slash + 1 : r->dir);
    r->val_loss = r->val_bpb = r->eval_bpb = r->params_total = r->params_active = r->tps = r->rss_mb = r->ent_load =
        r->ent_conf = r->dropped_pct = r->unrouted_pct = NAN;
    r->ev_ent_load = r->ev_ent_conf = NAN;
    if (!is_directory(dir)) die_input("%s: not a directory (expected a run directory, the run.out of aoe train)", dir);
    char *cp = path_in(r->dir, "config.json");
    if (!file_exists(cp)) die_input("%s: missing (is %s a run directory of aoe train?)", cp, dir);
    cJSON *cfg = json_load_file(cp);
    flatten(&r->kv, &r->nkv, cfg, "");
    r->cfg = xmalloc(sizeof(Config));
    config_defaults(r->cfg);
    for (int k = 0; k < r->nkv && r->cfg; k++)
        if (config_try_set(r->cfg, r->kv[k].key, r->kv[k].val) && !strncmp(r->kv[k].key, "model.ffn.", 10)) {
            free(r->cfg);  // an older or newer FFN setting: every differing key is shown
            r->cfg = NULL;
        }
    cJSON_Delete(cfg);
    free(cp);
    r->steps = (long)conf_num(r, "train.steps", 0);
    r->seed = (long)conf_num(r, "train.seed", 0);
    read_metrics(r);
    read_load(r);
    read_model_json(r);
    r->val_bpb_missing = !isnan(r->val_loss) && isnan(r->val_bpb);
}

// ---------------------------------------------------------------- grouping

// Keys that never split groups and are not shown as differences: the output directory, the seed
// (the grouping key), and settings that change neither the model nor the data.
static int ignored_key(const char *k) {
    static const char *const ign[] = {"run.out", "train.seed", "train.threads", "train.ckpt_every", "train.keep_ckpts",
                                      "run.ckpt_compress", "train.log_every", "train.eval_every"};
    for (size_t i = 0; i < sizeof ign / sizeof *ign; i++)
        if (!strcmp(k, ign[i])) return 1;
    return 0;
}


static void find_differ_keys(Report *R) {
    for (int i = 0; i < R->nrun; i++)
        for (int k = 0; k < R->run[i].nkv; k++) {
            const char *key = R->run[i].kv[k].key;
            if (ignored_key(key)) continue;
            int seen = 0, differs = 0;
            for (int j = 0; j < R->ndiffer && !seen; j++) seen = !strcmp(R->differ_keys[j], key);
            for (int j = 0; j < R->nrun && !differs && !seen; j++)
                differs = !same_val(run_conf(&R->run[j], key), R->run[i].kv[k].val);
            if (!differs) continue;
            R->differ_keys = xrealloc(R->differ_keys, sizeof(char *) * (R->ndiffer + 1));
            R->differ_keys[R->ndiffer++] = xstrdup(key);
        }
}

// A config.json written before a key existed lacks it: the run gets the schema's default, so an
// old and a new run with the same setting do not differ.
static void fill_defaults(Report *R) {
    Config c;
    config_defaults(&c);
    char *js = config_to_json(&c);
    cJSON *j = cJSON_Parse(js);
    ConfKV *d = NULL;
    int nd = 0;
    flatten(&d, &nd, j, "");
    cJSON_Delete(j);
    free(js);
    for (int i = 0; i < R->nrun; i++) {
        Run *r = &R->run[i];
        for (int k = 0; k < nd; k++)
            if (!run_conf(r, d[k].key)) {
                r->kv = xrealloc(r->kv, sizeof(ConfKV) * (r->nkv + 1));
                r->kv[r->nkv++] = (ConfKV){xstrdup(d[k].key), xstrdup(d[k].val)};
            }
    }
    free_kv(d, nd);
}

static int same_group(const Report *R, const Run *a, const Run *b) {
    for (int j = 0; j < R->ndiffer; j++)
        if (!same_val(run_conf(a, R->differ_keys[j]), run_conf(b, R->differ_keys[j]))) return 0;
    return 1;
}

// "moe+lb", "aoe/topp", "moe/expert_choice+erc": FFN type, selection method unless top-k, and
// the auxiliary losses that are on.
static char *method_of(const Run *r) {
    const char *type = run_conf(r, "model.ffn.type"), *sel = run_conf(r, "model.ffn.select");
    char m[128];
    snprintf(m, sizeof m, "%s", type ? type : "?");
    if (type && strcmp(type, "dense")) {
        if (sel && strcmp(sel, "topk")) snprintf(m + strlen(m), sizeof m - strlen(m), "/%s", sel);
        if (conf_num(r, "model.ffn.lb_coef", 0) > 0) snprintf(m + strlen(m), sizeof m - strlen(m), "+lb");
        if (conf_num(r, "model.ffn.erc_coef", 0) > 0) snprintf(m + strlen(m), sizeof m - strlen(m), "+erc");
    }
    return xstrdup(m);
}

// The first member's name with its seed written as '*' ("aoe_d_low-64_seed-*").
static char *group_label(const Run *r, int n) {
    char pat[64];
    snprintf(pat, sizeof pat, "seed-%ld", r->seed);
    const char *at = strstr(r->name, pat);
    if (n < 2 || !at) return xstrdup(r->name);
    Buf b = {0};
    bprintf(&b, "%.*sseed-*%s", (int)(at - r->name), r->name, at + strlen(pat));
    return b.s;
}

static void make_groups(Report *R) {
    fill_defaults(R);
    find_differ_keys(R);
    for (int i = 0; i < R->nrun; i++) {
        int g = 0;
        while (g < R->ngroup && !same_group(R, &R->run[R->group[g].member[0]], &R->run[i])) g++;
        if (g == R->ngroup) {
            R->group = xrealloc(R->group, sizeof(Group) * (R->ngroup + 1));
            memset(&R->group[R->ngroup++], 0, sizeof(Group));
        }
        Group *G = &R->group[g];
        G->member = xrealloc(G->member, sizeof(int) * (G->n + 1));
        G->member[G->n++] = i;
        R->run[i].group = g;
    }
    for (int g = 0; g < R->ngroup; g++) {
        Group *G = &R->group[g];
        const Run *r = &R->run[G->member[0]];
        G->label = group_label(r, G->n);
        G->method = method_of(r);
        G->differs = differs_text(R, r, NULL);
    }
}

// ---------------------------------------------------------------- columns

static void add_col(Report *R, const char *name, const char *csv, const char *fmt, double md_scale, int task) {
    R->col = xrealloc(R->col, sizeof(Column) * (R->ncol + 1));
    R->col[R->ncol++] = (Column){name, csv, fmt, md_scale, task};
}

static void make_columns(Report *R) {
    // training (config.json, model.json, metrics.jsonl, load.jsonl), then eval results
    add_col(R, "params (M)", "params_total", "%.2f", 1e6, 0);
    add_col(R, "active (M)", "params_active", "%.2f", 1e6, 0);
    add_col(R, "val loss", "val_loss", "%.4f", 1, 0);
    add_col(R, "val bpb", "val_bpb", "%.4f", 1, 0);
    add_col(R, "tok/s", "tokens_per_s", "%.0f", 1, 0);
    add_col(R, "peak MB", "peak_rss_mb", "%.0f", 1, 0);
    add_col(R, "Ent_load", "ent_load", "%.3f", 1, 0);
    add_col(R, "Ent_conf", "ent_conf", "%.3f", 1, 0);
    add_col(R, "dropped %", "dropped_pct", "%.2f", 1, 0);
    add_col(R, "unrouted %", "unrouted_pct", "%.2f", 1, 0);
    int nfixed = R->ncol, any_eval_bpb = 0;
    for (int i = 0; i < R->nrun; i++) any_eval_bpb |= !isnan(R->run[i].eval_bpb);
    if (any_eval_bpb) add_col(R, "eval bpb", "eval_bpb", "%.4f", 1, 0);
    int first_task = R->ncol;
    for (int i = 0; i < R->nrun; i++)  // benchmark columns: every task any run has, first-seen order
        for (int t = 0; t < R->run[i].nt; t++)
            if (report_col(R, R->run[i].task[t]) < 0) add_col(R, R->run[i].task[t], R->run[i].task[t], "%.1f", 1, 1);
    int any_task = R->ncol > first_task;
    if (any_task) add_col(R, "avg", "avg", "%.1f", 1, 0);
    int any_ev = 0;
    for (int i = 0; i < R->nrun; i++) any_ev |= !isnan(R->run[i].ev_ent_load);
    if (any_ev) {
        add_col(R, "eval Ent_load", "eval_ent_load", "%.3f", 1, 0);
        add_col(R, "eval Ent_conf", "eval_ent_conf", "%.3f", 1, 0);
    }
    for (int i = 0; i < R->nrun; i++) {
        Run *r = &R->run[i];
        r->col = xmalloc(sizeof(double) * R->ncol);
        for (int c = 0; c < R->ncol; c++) r->col[c] = NAN;
        double vals[] = {r->params_total, r->params_active, r->val_loss, r->val_bpb, r->tps, r->rss_mb, r->ent_load,
                         r->ent_conf, r->dropped_pct, r->unrouted_pct};
        for (int k = 0; k < nfixed; k++) r->col[k] = vals[k];
        if (any_eval_bpb) r->col[nfixed] = r->eval_bpb;
        double sum = 0;
        for (int t = 0; t < r->nt; t++) {
            r->col[report_col(R, r->task[t])] = 100 * r->score[t];
            sum += 100 * r->score[t];
        }
        if (any_task && r->nt) r->col[report_col(R, "avg")] = sum / r->nt;
        if (any_ev) {
            r->col[report_col(R, "eval_ent_load")] = r->ev_ent_load;
            r->col[report_col(R, "eval_ent_conf")] = r->ev_ent_conf;
        }
    }
}

void report_read(Report *R, const char *const *dirs, int nd, const char *const *evdirs, int nev) {
    memset(R, 0, sizeof *R);
    R->run = xcalloc(nd ? nd : 1, sizeof(Run));
    for (int i = 0; i < nd; i++) {
        for (int j = 0; j < i; j++)
            if (!strcmp(dirs[i], dirs[j])) die_input("report: run directory %s given twice", dirs[i]);
        read_run(&R->run[R->nrun++], dirs[i]);
    }
    report_find_evals(R->run, R->nrun, evdirs, nev);
    for (int i = 0; i < R->nrun; i++) report_read_eval(&R->run[i]);
    make_groups(R);
    make_columns(R);
}
