// report.c — `aoe report RUN_DIR... [--out DIR]`: one table across training runs (what differs
// between them, final validation loss, bits per byte, benchmark scores and their average, tokens/s,
// peak memory, load and confidence entropy, dropped assignments), runs that differ only in
// train.seed grouped into one row with mean ± std, written as Markdown and CSV, plus gnuplot
// figures (report_plot.c). It reads what `aoe train` and `aoe eval` wrote (config.json,
// metrics.jsonl, load.jsonl, eval/results.json); it never loads a model. docs/sweeps.md.
#include <errno.h>
#include <glob.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "config/config.h"
#include "data/loader.h"
#include "data/tokenizer.h"
#include "report/loadlog.h"
#include "report/plot.h"
#include "report/report.h"
#include "util/common.h"
#include "util/json.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: aoe report RUN_DIR... [--out DIR] [--no-plots]\n\n"
            "Compares training runs (the run.out directories of `aoe train`, e.g. from tools/sweep.sh).\n"
            "Reads RUN_DIR/config.json, metrics.jsonl, load.jsonl (MoE/AoE) and, when present,\n"
            "RUN_DIR/eval/results.json (`aoe eval RUN_DIR --out RUN_DIR/eval`). Runs whose configs differ\n"
            "only in train.seed form one row with mean ± std over the seeds.\n\n"
            "Writes (docs/sweeps.md lists every column):\n"
            "  DIR/report.md   the grouped table, the per-run table and the plots\n"
            "  DIR/report.csv  one row per run, then mean and std rows per group\n"
            "  DIR/plots/      val_loss.png (validation loss per group), load_entropy.png (Ent_load and\n"
            "                  Ent_conf per layer), dlow_loss.png (when AoE runs differ in model.ffn.d_low)\n"
            "The grouped table also goes to stdout.\n\n"
            "options:\n"
            "  --out DIR     output directory (default: report)\n"
            "  --no-plots    tables only\n\n"
            "exit status: 0 ok (also without gnuplot: a line on stderr says so), 1 plotting failed,\n"
            "2 bad usage or a missing or malformed file (named with its line).\n");
}

// ---------------------------------------------------------------- reading one run

static const char *kv_find(const ConfKV *kv, int n, const char *key) {
    for (int i = 0; i < n; i++)
        if (!strcmp(kv[i].key, key)) return kv[i].val;
    return NULL;
}

const char *run_conf(const Run *r, const char *key) { return kv_find(r->kv, r->nkv, key); }

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

static void free_kv(ConfKV *kv, int n) {
    for (int k = 0; k < n; k++) { free(kv[k].key); free(kv[k].val); }
    free(kv);
}

static char *path_in(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = xmalloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static double opt_num(cJSON *j, const char *key, const char *path, int line) {
    cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!v) return NAN;
    if (!cJSON_IsNumber(v)) die_input("%s:%d: key '%s' must be a number", path, line, key);
    return v->valuedouble;
}

typedef struct { Run *r; double *tps; int ntps; } MetricsAcc;

static void metrics_line(cJSON *j, const char *path, int line, void *ctx) {
    MetricsAcc *a = ctx;
    Run *r = a->r;
    double step = opt_num(j, "step", path, line);
    if (isnan(step)) die_input("%s:%d: missing key 'step' (a metrics.jsonl line of aoe train)", path, line);
    r->step = (long)step;
    double vl = opt_num(j, "val_loss", path, line), tps = opt_num(j, "tokens_per_s", path, line);
    double rss = opt_num(j, "peak_rss_mb", path, line);
    if (!isnan(vl)) {
        r->vstep = xrealloc(r->vstep, sizeof(double) * (r->nv + 1));
        r->vloss = xrealloc(r->vloss, sizeof(double) * (r->nv + 1));
        r->vstep[r->nv] = step;
        r->vloss[r->nv++] = vl;
        r->val_loss = vl;
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
    if (nl) {
        r->ent_load = el / nl;
        r->ent_conf = ec / nl;
        r->dropped_pct = assigned > 0 ? 100 * dropped / assigned : NAN;
        r->unrouted_pct = has_unrouted && toks > 0 ? 100 * unrouted / toks : NAN;
    }
    loadlog_free(ls, nl);
    free(path);
}

static double metric_of(const cJSON *t, const char *name) {
    char key[64];
    snprintf(key, sizeof key, "%s,none", name);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(t, key);
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

// RUN_DIR/eval/results.json (lm-eval shape, docs/eval.md): each top-level task's main metric
// (acc_norm, else acc; perplexity-only tasks are skipped; BLiMP paradigms and other sub-tasks are
// skipped) and the bits per byte of the held-out shards task.
static void read_eval(Run *r) {
    char *path = path_in(r->dir, "eval/results.json");
    if (!file_exists(path)) { free(path); return; }
    cJSON *root = json_load_file(path);
    const cJSON *res = cJSON_GetObjectItemCaseSensitive(root, "results");
    if (!cJSON_IsObject(res)) die_input("%s: key 'results' must be an object of tasks (docs/eval.md)", path);
    const cJSON *sub = cJSON_GetObjectItemCaseSensitive(root, "group_subtasks"), *t;
    cJSON_ArrayForEach(t, res) {
        if (!cJSON_IsObject(t)) die_input("%s: results.%s must be an object of metrics", path, t->string);
        if (sub && is_subtask(sub, t->string)) continue;
        if (!strcmp(t->string, "shards")) {
            double b = metric_of(t, "bits_per_byte");
            if (!isnan(b)) { r->bpb = b; r->bpb_from_eval = 1; }
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
    cJSON_Delete(root);
    free(path);
}

static int spec_available(const char *spec) {
    char *s = xstrdup(spec), *save = NULL;
    int ok = 1;
    for (char *p = strtok_r(s, ",", &save); p && ok; p = strtok_r(NULL, ",", &save)) {
        glob_t g;
        ok = glob(p, 0, NULL, &g) == 0 && g.gl_pathc > 0;
        globfree(&g);
    }
    free(s);
    return ok;
}

// Bits per byte from the validation loss: bytes per target token over exactly the windows aoe
// train's validation pass scores (the first eval_batches·batch_size windows of data.val,
// unshuffled; EOT has no bytes). NAN when the data or tokenizer is not there (relative paths are
// as in the run's config, i.e. from where training ran).
typedef struct { char *key; double bytes_per_tok; } BptCache;
static BptCache *bpt_cache;
static int n_bpt;

static double val_bytes_per_token(const Run *r) {
    const char *val = run_conf(r, "data.val"), *tokp = run_conf(r, "data.tokenizer");
    int S = (int)conf_num(r, "model.seq_len", 0), B = (int)conf_num(r, "train.batch_size", 0);
    int nb = (int)conf_num(r, "train.eval_batches", 0);
    if (!val || !*val || !tokp || S <= 0 || B <= 0 || nb <= 0 || !file_exists(tokp) || !spec_available(val)) return NAN;
    char key[2048];
    snprintf(key, sizeof key, "%s|%s|%d|%d|%d", val, tokp, S, B, nb);
    for (int i = 0; i < n_bpt; i++)
        if (!strcmp(bpt_cache[i].key, key)) return bpt_cache[i].bytes_per_tok;
    Tokenizer *tk = tok_load(tokp);
    Loader *L = loader_open(val, S, B, 0, 0, 0, 1);
    uint64_t avail = loader_n_windows(L) / B, nbat = (uint64_t)nb < avail ? (uint64_t)nb : avail;
    int32_t *w = xmalloc(sizeof(int32_t) * (S + 1));
    double bytes = 0, toks = 0;
    for (uint64_t g = 0; g < nbat * B; g++) {
        loader_window(L, g, w);
        for (int i = 1; i <= S; i++) {
            size_t len = 0;
            if (w[i] != tok_eot(tk)) tok_piece(tk, w[i], &len);
            bytes += len;
        }
        toks += S;
    }
    free(w);
    loader_close(L);
    tok_free(tk);
    double bpt = bytes > 0 ? bytes / toks : NAN;
    bpt_cache = xrealloc(bpt_cache, sizeof(BptCache) * (n_bpt + 1));
    bpt_cache[n_bpt++] = (BptCache){xstrdup(key), bpt};
    return bpt;
}

static void read_run(Run *r, const char *dir) {
    memset(r, 0, sizeof *r);
    r->dir = xstrdup(dir);
    size_t n = strlen(r->dir);
    while (n > 1 && r->dir[n - 1] == '/') r->dir[--n] = 0;
    const char *slash = strrchr(r->dir, '/');
    r->name = xstrdup(slash ? slash + 1 : r->dir);
    r->val_loss = r->bpb = r->tps = r->rss_mb = r->ent_load = r->ent_conf = r->dropped_pct = r->unrouted_pct = NAN;
    if (!is_directory(dir)) die_input("%s: not a directory (expected a run directory, the run.out of aoe train)", dir);
    char *cp = path_in(r->dir, "config.json");
    if (!file_exists(cp)) die_input("%s: missing (is %s a run directory of aoe train?)", cp, dir);
    cJSON *cfg = json_load_file(cp);
    flatten(&r->kv, &r->nkv, cfg, "");
    cJSON_Delete(cfg);
    free(cp);
    r->steps = (long)conf_num(r, "train.steps", 0);
    r->seed = (long)conf_num(r, "train.seed", 0);
    read_metrics(r);
    read_load(r);
    read_eval(r);
    if (isnan(r->bpb) && !isnan(r->val_loss)) r->bpb = r->val_loss / log(2.0) / val_bytes_per_token(r);
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

static int same_val(const char *a, const char *b) { return (!a && !b) || (a && b && !strcmp(a, b)); }

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
            int nv = 0;  // distinct values over the runs
            for (int j = 0; j < R->nrun; j++) {
                int first = 1;
                for (int q = 0; q < j && first; q++) first = !same_val(run_conf(&R->run[q], key), run_conf(&R->run[j], key));
                nv += first;
            }
            R->differ_keys = xrealloc(R->differ_keys, sizeof(char *) * (R->ndiffer + 1));
            R->differ_nvals = xrealloc(R->differ_nvals, sizeof(int) * (R->ndiffer + 1));
            R->differ_nvals[R->ndiffer] = nv;
            R->differ_keys[R->ndiffer++] = xstrdup(key);
        }
    Config c;  // the schema's defaults, to leave out differences that are default values
    config_defaults(&c);
    char *js = config_to_json(&c);
    cJSON *j = cJSON_Parse(js);
    flatten(&R->dflt, &R->ndflt, j, "");
    cJSON_Delete(j);
    free(js);
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

char *differs_text(const Report *R, const Run *r, const char *skip) {
    Buf b = {0};
    bprintf(&b, "%s", "");
    const char *type = run_conf(r, "model.ffn.type");
    for (int j = 0; j < R->ndiffer; j++) {
        const char *k = R->differ_keys[j], *dot = strrchr(k, '.'), *shortk = dot ? dot + 1 : k;
        const char *v = run_conf(r, k), *d = kv_find(R->dflt, R->ndflt, k);
        if (!strcmp(k, "model.ffn.type") || !strcmp(k, "model.ffn.select") || (skip && strstr(skip, k))) continue;
        if (!strncmp(k, "model.ffn.d_", 12) && strcmp(k, "model.ffn.d_ff") && !same_val(type, "aoe")) continue;
        if (same_val(v, d) && R->differ_nvals[j] < 3) continue;
        for (int i = 0; i < R->ndiffer; i++) {
            const char *o = R->differ_keys[i], *od = strrchr(o, '.');
            if (i != j && !strcmp(od ? od + 1 : o, shortk)) shortk = k;
        }
        bprintf(&b, "%s%s=%s", b.n ? " " : "", shortk, v ? v : "(unset)");
    }
    return b.s;
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

int report_col(const Report *R, const char *csv) {
    for (int c = 0; c < R->ncol; c++)
        if (!strcmp(R->col[c].csv, csv)) return c;
    return -1;
}

static void add_col(Report *R, const char *name, const char *csv, const char *fmt, int task) {
    R->col = xrealloc(R->col, sizeof(Column) * (R->ncol + 1));
    R->col[R->ncol++] = (Column){name, csv, fmt, task};
}

static void make_columns(Report *R) {
    add_col(R, "val loss", "val_loss", "%.4f", 0);
    add_col(R, "bpb", "bpb", "%.4f", 0);
    for (int i = 0; i < R->nrun; i++)  // benchmark columns: every task any run has, first-seen order
        for (int t = 0; t < R->run[i].nt; t++)
            if (report_col(R, R->run[i].task[t]) < 0) add_col(R, R->run[i].task[t], R->run[i].task[t], "%.1f", 1);
    int any_task = R->ncol > 2;
    if (any_task) add_col(R, "avg", "avg", "%.1f", 0);
    add_col(R, "tok/s", "tokens_per_s", "%.0f", 0);
    add_col(R, "peak MB", "peak_rss_mb", "%.0f", 0);
    add_col(R, "Ent_load", "ent_load", "%.3f", 0);
    add_col(R, "Ent_conf", "ent_conf", "%.3f", 0);
    add_col(R, "dropped %", "dropped_pct", "%.2f", 0);
    add_col(R, "unrouted %", "unrouted_pct", "%.2f", 0);
    for (int i = 0; i < R->nrun; i++) {
        Run *r = &R->run[i];
        r->col = xmalloc(sizeof(double) * R->ncol);
        for (int c = 0; c < R->ncol; c++) r->col[c] = NAN;
        double sum = 0;
        for (int t = 0; t < r->nt; t++) {
            r->col[report_col(R, r->task[t])] = 100 * r->score[t];
            sum += 100 * r->score[t];
        }
        if (any_task && r->nt) r->col[report_col(R, "avg")] = sum / r->nt;
        const char *fixed[] = {"val_loss", "bpb", "tokens_per_s", "peak_rss_mb", "ent_load", "ent_conf", "dropped_pct",
                               "unrouted_pct"};
        double vals[] = {r->val_loss, r->bpb, r->tps, r->rss_mb, r->ent_load, r->ent_conf, r->dropped_pct, r->unrouted_pct};
        for (int k = 0; k < 8; k++) r->col[report_col(R, fixed[k])] = vals[k];
    }
}

int group_stat(const Report *R, const Group *g, int c, double *mean, double *std) {
    double s = 0, ss = 0;
    int n = 0;
    for (int i = 0; i < g->n; i++) {
        double v = R->run[g->member[i]].col[c];
        if (isnan(v)) continue;
        s += v; n++;
    }
    *mean = n ? s / n : NAN;
    for (int i = 0; i < g->n; i++) {
        double v = R->run[g->member[i]].col[c];
        if (!isnan(v)) ss += (v - *mean) * (v - *mean);
    }
    *std = n > 1 ? sqrt(ss / (n - 1)) : NAN;
    return n;
}

// ---------------------------------------------------------------- tables

static void cell(Buf *b, const char *fmt, double v) {
    if (isnan(v)) { bprintf(b, "–"); return; }
    bprintf(b, fmt, v);
}

static void seeds_of(Buf *b, const Report *R, const Group *g) {
    for (int i = 0; i < g->n; i++) bprintf(b, "%s%ld", i ? "," : "", R->run[g->member[i]].seed);
}

static void md_header(Buf *b, const Report *R, const char *first) {
    bprintf(b, "| %s | seeds | method | differs | step |", first);
    for (int c = 0; c < R->ncol; c++) bprintf(b, " %s |", R->col[c].name);
    bprintf(b, "\n|---|---|---|---|---:|");
    for (int c = 0; c < R->ncol; c++) bprintf(b, "---:|");
    bprintf(b, "\n");
}

static int bpb_from_val(const Report *R, const Group *g) {
    for (int i = 0; i < g->n; i++) {
        const Run *r = &R->run[g->member[i]];
        if (!isnan(r->bpb) && !r->bpb_from_eval) return 1;
    }
    return 0;
}

static void md_grouped(Buf *b, const Report *R) {
    md_header(b, R, "run");
    for (int g = 0; g < R->ngroup; g++) {
        const Group *G = &R->group[g];
        long smin = -1;
        for (int i = 0; i < G->n; i++)
            if (smin < 0 || R->run[G->member[i]].step < smin) smin = R->run[G->member[i]].step;
        bprintf(b, "| %s | ", G->label);
        seeds_of(b, R, G);
        bprintf(b, " | %s | %s | %ld/%ld |", G->method, G->differs[0] ? G->differs : "–", smin,
                R->run[G->member[0]].steps);
        for (int c = 0; c < R->ncol; c++) {
            double m, s;
            group_stat(R, G, c, &m, &s);
            bprintf(b, " ");
            cell(b, R->col[c].fmt, m);
            if (!isnan(s)) { bprintf(b, " ± "); cell(b, R->col[c].fmt, s); }
            if (!strcmp(R->col[c].csv, "bpb") && !isnan(m) && bpb_from_val(R, G)) bprintf(b, "†");
            bprintf(b, " |");
        }
        bprintf(b, "\n");
    }
}

static void md_runs(Buf *b, const Report *R) {
    md_header(b, R, "run");
    for (int i = 0; i < R->nrun; i++) {
        const Run *r = &R->run[i];
        const Group *G = &R->group[r->group];
        bprintf(b, "| %s | %ld | %s | %s | %ld/%ld |", r->name, r->seed, G->method, G->differs[0] ? G->differs : "–",
                r->step, r->steps);
        for (int c = 0; c < R->ncol; c++) {
            bprintf(b, " ");
            cell(b, R->col[c].fmt, r->col[c]);
            if (!strcmp(R->col[c].csv, "bpb") && !isnan(r->bpb) && !r->bpb_from_eval) bprintf(b, "†");
            bprintf(b, " |");
        }
        bprintf(b, "\n");
    }
}

static void csv_field(Buf *b, const char *s) {
    if (!strpbrk(s, ",\"\n")) { bprintf(b, "%s", s); return; }
    bprintf(b, "\"");
    for (const char *p = s; *p; p++) bprintf(b, *p == '"' ? "\"\"" : "%c", *p);
    bprintf(b, "\"");
}

static void csv_num(Buf *b, double v) {
    if (!isnan(v)) bprintf(b, "%.6g", v);
}

static char *csv_text(const Report *R) {
    Buf b = {0};
    bprintf(&b, "kind,group,run,seed,n,method,differs,step,steps");
    for (int c = 0; c < R->ncol; c++) {
        bprintf(&b, ",");
        csv_field(&b, R->col[c].csv);
        if (!strcmp(R->col[c].csv, "bpb")) bprintf(&b, ",bpb_source");
    }
    bprintf(&b, "\n");
    for (int pass = 0; pass < 3; pass++)  // runs, then group means, then group stds
        for (int i = 0; i < (pass ? R->ngroup : R->nrun); i++) {
            const Run *r = pass ? &R->run[R->group[i].member[0]] : &R->run[i];
            const Group *G = &R->group[pass ? i : r->group];
            bprintf(&b, "%s,", pass == 0 ? "run" : pass == 1 ? "mean" : "std");
            csv_field(&b, G->label);
            bprintf(&b, ",");
            if (!pass) { csv_field(&b, r->name); bprintf(&b, ",%ld,1,", r->seed); }
            else { bprintf(&b, ",,%d,", G->n); }
            csv_field(&b, G->method);
            bprintf(&b, ",");
            csv_field(&b, G->differs);
            bprintf(&b, ",%ld,%ld", r->step, r->steps);
            for (int c = 0; c < R->ncol; c++) {
                double m, s;
                group_stat(R, G, c, &m, &s);
                bprintf(&b, ",");
                csv_num(&b, pass == 0 ? r->col[c] : pass == 1 ? m : s);
                if (!strcmp(R->col[c].csv, "bpb"))
                    bprintf(&b, ",%s", pass ? (isnan(m) ? "" : bpb_from_val(R, G) ? "val_loss" : "eval")
                                            : isnan(r->bpb) ? "" : r->bpb_from_eval ? "eval" : "val_loss");
            }
            bprintf(&b, "\n");
        }
    return b.s;
}

// ---------------------------------------------------------------- output

// Plots are made in DIR/plots.tmp.<pid> and moved into DIR/plots only when gnuplot succeeded.
static int write_plots(const Report *R, const char *out, const char **png, int *npng) {
    *npng = 0;
    if (!plot_have_gnuplot()) {
        fprintf(stderr, "aoe report: gnuplot not found, no plots written (install it: apt-get install gnuplot-nox)\n");
        return 0;
    }
    char tmp[4096], dst[4096];
    snprintf(tmp, sizeof tmp, "%s/plots.tmp.%d", out, (int)getpid());
    snprintf(dst, sizeof dst, "%s/plots", out);
    if (mkdir_p(tmp) || mkdir_p(dst)) die("%s: cannot create: %s", tmp, strerror(errno));
    int st = report_plots(R, tmp, png, npng);
    glob_t g;
    char pat[4200];
    snprintf(pat, sizeof pat, "%s/*", tmp);
    if (glob(pat, 0, NULL, &g) == 0) {
        for (size_t i = 0; i < g.gl_pathc; i++) {
            const char *base = strrchr(g.gl_pathv[i], '/') + 1;
            int is_png = strlen(base) > 4 && !strcmp(base + strlen(base) - 4, ".png");
            char to[4400];
            snprintf(to, sizeof to, "%s/%s", dst, base);
            if (st && is_png) unlink(g.gl_pathv[i]);  // a failed run may leave partial images
            else if (rename(g.gl_pathv[i], to)) die("%s: cannot move to %s: %s", g.gl_pathv[i], to, strerror(errno));
        }
        globfree(&g);
    }
    rmdir(tmp);
    if (st) {
        fprintf(stderr, "aoe report: gnuplot failed (status %d); see %s/gnuplot.log\n", st, dst);
        *npng = 0;
        return 1;
    }
    return 0;
}

static void free_report(Report *R) {
    for (int i = 0; i < R->nrun; i++) {
        Run *r = &R->run[i];
        free_kv(r->kv, r->nkv);
        for (int t = 0; t < r->nt; t++) free(r->task[t]);
        free(r->task); free(r->score); free(r->vstep); free(r->vloss); free(r->col);
        free(r->layer); free(r->lay_ent_load); free(r->lay_ent_conf); free(r->dir); free(r->name);
    }
    for (int g = 0; g < R->ngroup; g++) {
        free(R->group[g].member); free(R->group[g].label); free(R->group[g].method); free(R->group[g].differs);
    }
    for (int j = 0; j < R->ndiffer; j++) free(R->differ_keys[j]);
    free_kv(R->dflt, R->ndflt);
    free(R->differ_nvals);
    for (int i = 0; i < n_bpt; i++) free(bpt_cache[i].key);
    free(bpt_cache);
    bpt_cache = NULL; n_bpt = 0;
    free(R->run); free(R->group); free(R->col); free(R->differ_keys);
}

int cmd_report(int argc, char **argv) {
    if (wants_help(argc, argv)) { usage(stdout); return 0; }
    const char *out = "report";
    int plots = 1;
    Report R = {0};
    const char **dirs = xmalloc(sizeof(char *) * (argc ? argc : 1));
    int nd = 0;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--out")) {
            if (i + 1 >= argc || !argv[i + 1][0]) die_input("report: --out needs a directory");
            out = argv[++i];
        } else if (!strcmp(argv[i], "--no-plots")) plots = 0;
        else if (argv[i][0] == '-') {
            fprintf(stderr, "aoe report: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        } else dirs[nd++] = argv[i];
    }
    if (!nd) { usage(stderr); return 2; }
    R.run = xcalloc(nd, sizeof(Run));
    for (int i = 0; i < nd; i++) {
        for (int j = 0; j < i; j++)
            if (!strcmp(dirs[i], dirs[j])) die_input("report: run directory %s given twice", dirs[i]);
        read_run(&R.run[R.nrun++], dirs[i]);
    }
    free(dirs);
    make_groups(&R);
    make_columns(&R);
    if (mkdir_p(out)) die("%s: cannot create: %s", out, strerror(errno));
    const char *png[8];
    int npng = 0, rc = plots ? write_plots(&R, out, png, &npng) : 0;

    Buf md = {0}, grouped = {0};
    md_grouped(&grouped, &R);
    bprintf(&md, "# aoe report\n\n%d runs in %d groups (runs whose configs differ only in train.seed form one "
                 "row: mean ± sample std over seeds). Columns: docs/sweeps.md. Benchmarks: accuracy in %%, "
                 "`avg` is their mean. † bits per byte computed from the validation loss (no eval results).\n\n",
            R.nrun, R.ngroup);
    bprintf(&md, "%s\n## Runs\n\n", grouped.s);
    md_runs(&md, &R);
    if (npng) {
        bprintf(&md, "\n## Plots\n\n");
        for (int i = 0; i < npng; i++) bprintf(&md, "![%s](plots/%s)\n\n", png[i], png[i]);
    }
    char *csv = csv_text(&R);
    char *p = path_in(out, "report.md");
    write_file_atomic(p, md.s, md.n);
    free(p);
    p = path_in(out, "report.csv");
    write_file_atomic(p, csv, strlen(csv));
    free(p);
    printf("%s\naoe report: wrote %s/report.md, %s/report.csv", grouped.s, out, out);
    for (int i = 0; i < npng; i++) printf(", %s/plots/%s", out, png[i]);
    printf("\n");
    free(md.s); free(grouped.s); free(csv);
    free_report(&R);
    return rc;
}
