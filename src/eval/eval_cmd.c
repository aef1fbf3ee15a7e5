// eval_cmd.c — `aoe eval CKPT... [--tasks ...]`: loads the tasks once, then for each checkpoint
// loads the model and its tokenizer (refusing one whose identity differs from the checkpoint's),
// runs every task and writes results.json (lm-eval's shape) and a report.md comparison table.
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "ckpt/ckpt.h"
#include "cli.h"
#include "data/loader.h"
#include "eval/analyze.h"
#include "eval/eval_mem.h"
#include "eval/eval_task.h"
#include "eval/loadstats.h"
#include "eval/results.h"
#include "eval/open.h"
#include "model/kernels.h"
#include "model/score.h"
#include "util/common.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: aoe eval CKPT|RUN_DIR... [--tasks LIST] [--limit N] [--shots K] [--out DIR]\n"
            "                [--data-dir DIR] [--seed N] [--batch-tokens N] [--threads N]\n"
            "                [--tokenizer PATH] [--precision fp32|bf16|auto] [--load-stats] [--log-samples]\n"
            "                [--select-override NODE] [--list-tasks] [--dry-run]\n"
            "\n"
            "Scores checkpoints the way lm-evaluation-harness does (docs/eval.md).\n"
            "  --tasks LIST       comma-separated: task names, groups (paper, small, all), blimp_<paradigm>,\n"
            "                     a .jsonl file (generic / llm-foundry formats) or a text file (perplexity)\n"
            "                     (default: small)\n"
            "  --limit N          first N items of each task and of each sub-task (\"group\", BLiMP paradigm);\n"
            "                     documents for perplexity, windows for shards (default: all)\n"
            "  --shots K          few-shot examples drawn from the task itself (default 0)\n"
            "  --seed N           seed of the few-shot draw (default 1234)\n"
            "  --out DIR          report directory (default eval-out): results.json + report.md for one\n"
            "                     checkpoint, DIR/<label>/results.json + DIR/report.md for several\n"
            "  --data-dir DIR     where task files are looked up first (then $AOE_DATA_DIR, ./data/tasks,\n"
            "                     <aoe dir>/data/tasks, <aoe dir>/../share/aoe/tasks); a registered task\n"
            "                     whose data is found nowhere is reported \"not available\" and skipped\n"
            "  --batch-tokens N   positions per forward (default 2048); memory grows with it\n"
            "  --threads N        threads (default: OMP_NUM_THREADS, else all cores)\n"
            "  --tokenizer PATH   tokenizer file (default: the checkpoint config's data.tokenizer); it\n"
            "                     must be the one the checkpoint was trained with\n"
            "  --precision P      matrix products in fp32 or bf16 (auto: bf16 where the CPU has native bf16\n"
            "                     dot products); default: the precision the checkpoint was trained in\n"
            "  --select-override NODE  router MoE: choose and gate experts by the norm of a node of every\n"
            "                     expert instead of the router (AoE's router-free probe, docs/select.md):\n"
            "                     norm (x W_g), norm_proj, norm_silu, norm_act, norm_output; or random:\n"
            "                     K experts drawn uniformly per token (seeded by the checkpoint's\n"
            "                     train.seed and the token), gates 1/K: the no-information baseline\n"
            "  --load-stats       MoE/AoE: per task and sparse layer, expert counts, Ent_load, Ent_conf and\n"
            "                     max-min load on the task's real tokens, into load_stats.json next to\n"
            "                     results.json (docs/eval.md)\n"
            "  --log-samples      also write samples_<task>.jsonl beside results.json: per document its\n"
            "                     (context, continuation) requests, per-choice [loglikelihood, is_greedy],\n"
            "                     target and metrics, as lm-evaluation-harness's --log_samples\n"
            "  --list-tasks       print the registered tasks and whether their data was found, and exit\n"
            "  --dry-run          check every task and checkpoint as a real run does, print the plan as JSON\n"
            "                     (checkpoints: step, parameters, precision, tokenizer, memory estimate,\n"
            "                     results path; tasks: items total and scored under --limit) and, on\n"
            "                     stderr, each memory estimate; score and write nothing\n");
}

static int parse_int(const char *opt, const char *v, long lo, long hi) {
    char *end;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || !*v || *end || x < lo || x > hi) die_input("%s: expected an integer in [%ld, %ld], got '%s'", opt, lo, hi, v ? v : "");
    return (int)x;
}

static uint64_t file_hash(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) die_input("%s: cannot open", path);
    uint64_t h = HASH64_INIT;
    static unsigned char buf[1 << 20];
    for (size_t n; (n = fread(buf, 1, sizeof buf, f)) > 0;) h = hash64(buf, n, h);
    fclose(f);
    return h;
}

// "runs/moe/ckpt-000100.aoec" -> "moe/ckpt-000100"
static char *make_label(const char *path) {
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s", path);
    size_t n = strlen(tmp);
    while (n > 1 && tmp[n - 1] == '/') tmp[--n] = 0;
    char *last = strrchr(tmp, '/');
    char *base = last ? last + 1 : tmp;
    char *dot = strrchr(base, '.');
    if (dot && dot != base) *dot = 0;
    if (last) {
        *last = 0;
        char *prev = strrchr(tmp, '/');
        const char *dir = prev ? prev + 1 : tmp;
        if (*dir && strcmp(dir, ".")) {
            char out[1100];
            snprintf(out, sizeof out, "%s/%s", dir, base);
            return xstrdup(out);
        }
    }
    return xstrdup(base);
}

// Everything about one checkpoint that can fail, checked before any checkpoint is scored (a bad
// third checkpoint must not cost the first two their work): the whole file with every CRC, its
// config with the probe's overrides, the tokenizer it was trained with, and the shards tasks
// against that tokenizer. Exits 2 with the load's own message. plan (--dry-run, else NULL) gets
// what was found: step, shapes, parameter counts, precision, tokenizer, shards windows.
static void check_ckpt(const char *path, const char *const *sets, int nsets, const char *tok_path, Task **tasks, int nt,
                       int limit, const char *prec, cJSON *plan) {
    Config c;
    int V;
    CkptMeta meta;
    ckpt_verify(path, &c, &V, &meta);
    for (int i = 0; i < nsets; i++) config_set(&c, sets[i], "override");
    if (nsets) model_validate_config(&c, path);
    if (nsets && score_for(&c) != &score_expert_norm)
        die_input("%s: --select-override probes a router MoE (model.ffn.type moe with a router), not "
                  "model.ffn.type %s, select %s", path, c.ffn.type, c.ffn.select);
    char *tp;
    Tokenizer *tk = eval_open_tokenizer(&c, V, &meta, path, tok_path, &tp);
    cJSON *win = cJSON_CreateObject();
    for (int i = 0; i < nt; i++)
        if (tasks[i]->shards) {
            Loader *L = loader_open(tasks[i]->shards, c.seq_len, 1, 0, 0, 0, 1);
            loader_require(L, 0, tok_hash(tk));
            double all = (double)loader_total_windows(L);
            cJSON *w = cJSON_AddObjectToObject(win, tasks[i]->name);
            cJSON_AddNumberToObject(w, "total", all);
            cJSON_AddNumberToObject(w, "scored", limit > 0 && limit < all ? limit : all);
            loader_close(L);
        }
    tok_free(tk);
    if (plan) {
        double tot, act, fl;
        model_count(&c, V, &tot, &act, &fl);
        cJSON_AddStringToObject(plan, "path", path);
        cJSON_AddNumberToObject(plan, "step", (double)ckpt_meta_step(&meta));
        cJSON_AddStringToObject(plan, "ffn", c.ffn.type);
        cJSON_AddNumberToObject(plan, "seq_len", c.seq_len);
        cJSON_AddNumberToObject(plan, "vocab_size", V);
        cJSON_AddNumberToObject(plan, "params_total", tot);
        cJSON_AddNumberToObject(plan, "params_active", act);
        cJSON_AddStringToObject(plan, "precision", precision_name(model_precision(&c, prec)));
        cJSON_AddStringToObject(plan, "tokenizer", tp);
        cJSON_AddItemToObject(plan, "shards_windows", win);
    } else {
        cJSON_Delete(win);
    }
    free(tp);
}

// --dry-run: the settings and tasks of the plan (the checkpoints are already in it).
static void plan_tasks(cJSON *plan, Task **tasks, char **specs, int nt, const EvalSettings *st, const char *out_dir,
                       const char *override, int log_samples, int load_stats) {
    cJSON *ta = cJSON_AddArrayToObject(plan, "tasks");
    for (int i = 0; i < nt; i++) {
        const Task *t = tasks[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", t->name);
        cJSON_AddStringToObject(o, "spec", specs[i]);
        cJSON_AddStringToObject(o, "path", t->shards ? t->shards : t->path);
        cJSON_AddStringToObject(o, "unit", t->shards ? "windows" : t->kind == TK_PPL ? "documents" : "items");
        if (!t->shards) {  // windows depend on the checkpoint's seq_len: under each checkpoint
            int total, scored = eval_task_limit(t, st->limit, &total);
            cJSON_AddNumberToObject(o, "total", total);
            cJSON_AddNumberToObject(o, "scored", scored);
        }
        cJSON_AddNumberToObject(o, "sub_tasks", t->n_groups > 1 ? t->n_groups : 0);
        cJSON_AddItemToArray(ta, o);
    }
    if (st->limit > 0) cJSON_AddNumberToObject(plan, "limit", st->limit);
    else cJSON_AddNullToObject(plan, "limit");
    cJSON_AddNumberToObject(plan, "shots", st->shots);
    cJSON_AddNumberToObject(plan, "seed", (double)st->seed);
    cJSON_AddNumberToObject(plan, "batch_tokens", st->tok_budget);
    cJSON_AddNumberToObject(plan, "threads", st->threads);
    cJSON_AddStringToObject(plan, "out", out_dir);
    cJSON_AddBoolToObject(plan, "log_samples", log_samples);
    cJSON_AddBoolToObject(plan, "load_stats", load_stats);
    if (override) cJSON_AddStringToObject(plan, "select_override", override);
    else cJSON_AddNullToObject(plan, "select_override");
}

static void write_text(const char *dir, const char *name, const char *text) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = xmalloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    write_file_atomic(p, text, strlen(text));
    free(p);
}

int cmd_eval(int argc, char **argv) {
    if (wants_help(argc, argv)) { usage(stdout); return 0; }
    const char *tasks_arg = "small", *out_dir = "eval-out", *data_dir = NULL, *tok_path = NULL, *prec = NULL;
    int limit = 0, shots = 0, budget = 2048, threads = 0, list = 0, log_samples = 0, dry = 0;
    uint64_t seed = 1234;
    int load_stats = 0;
    // --select-override norm: config overrides applied at load (the training-only losses that need
    // a router are switched off; they do not change the forward)
    static char probe_set[64];
    static const char *const probe[] = {probe_set, "model.ffn.erc_log=false", "model.ffn.erc_coef=0", "model.ffn.z_loss=0"};
    int n_over = 0;
    const char **ckpts = xcalloc(argc + 1, sizeof(char *));
    int nck = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--list-tasks")) { list = 1; continue; }
        if (!strcmp(a, "--load-stats")) { load_stats = 1; continue; }
        if (!strcmp(a, "--log-samples")) { log_samples = 1; continue; }
        if (!strcmp(a, "--dry-run")) { dry = 1; continue; }
        if (a[0] == '-' && a[1]) {
            if (!v) { fprintf(stderr, "aoe eval: %s needs a value\n", a); usage(stderr); return 2; }
            if (!strcmp(a, "--tasks")) tasks_arg = v;
            else if (!strcmp(a, "--limit")) limit = parse_int(a, v, 0, 1 << 30);
            else if (!strcmp(a, "--shots")) shots = parse_int(a, v, 0, 64);
            else if (!strcmp(a, "--seed")) seed = (uint64_t)parse_int(a, v, 0, 2147483647);
            else if (!strcmp(a, "--out")) out_dir = v;
            else if (!strcmp(a, "--data-dir")) data_dir = v;
            else if (!strcmp(a, "--batch-tokens")) budget = parse_int(a, v, 1, 1 << 20);
            else if (!strcmp(a, "--threads")) threads = parse_int(a, v, 0, 4096);
            else if (!strcmp(a, "--tokenizer")) tok_path = v;
            else if (!strcmp(a, "--select-override")) {
                static const char *const nodes[] = {"norm", "norm_proj", "norm_silu", "norm_act", "norm_output", "random"};
                int ok = 0;
                for (int q = 0; q < 6; q++) ok |= !strcmp(v, nodes[q]);
                if (!ok)
                    die_input("--select-override: expected norm, norm_proj, norm_silu, norm_act, norm_output or random, "
                              "got '%s'", v);
                snprintf(probe_set, sizeof probe_set, "model.ffn.score_override=%s", v);
                n_over = sizeof probe / sizeof *probe;
            }
            else if (!strcmp(a, "--precision")) {
                if (precision_parse(v) < 0) die_input("--precision: expected fp32, bf16 or auto, got '%s'", v);
                prec = v;
            } else { fprintf(stderr, "aoe eval: unknown option '%s'\n", a); usage(stderr); return 2; }
            i++;
            continue;
        }
        ckpts[nck++] = a;
    }
    if (list) {
        const char *names[64], *roots[8];
        int n = task_registry_names(names, 64), nr = task_data_roots(data_dir, roots, 8);
        printf("registered tasks (data searched under");
        for (int i = 0; i < nr; i++) printf(" %s", roots[i]);
        printf("):\n");
        for (int i = 0; i < n; i++) {
            char why[4096];
            Task *t = task_try_load(names[i], data_dir, why, sizeof why);
            printf("  %-16s %s\n  %-16s %s%s\n", names[i], task_registry_desc(names[i]), "",
                   t ? "available: " : "not available: ", t ? t->path : why);
            task_free(t);
        }
        printf("groups: paper = arc_easy,piqa,winogrande,hellaswag; small = arc_easy,piqa,winogrande,copa,"
               "lambada_openai,blimp,wikitext; all = every task\n");
        free(ckpts);
        return 0;
    }
    if (!nck) { fprintf(stderr, "aoe eval: no checkpoint given\n"); usage(stderr); free(ckpts); return 2; }
    const char *arch = kernels_init(threads);
    threads = kernels_threads();

    int nspec = 0, navail = 0;
    char **specs = task_expand(tasks_arg, &nspec);
    Task **tasks = xcalloc(nspec, sizeof(Task *));
    // Every task is loaded and checked before any is scored: a bad file fails before any work.
    // A registered task whose data is absent is only reported and skipped.
    for (int i = 0; i < nspec; i++) {
        char why[4096];
        Task *t = task_try_load(specs[i], data_dir, why, sizeof why);
        if (!t) {
            fprintf(stderr, "aoe eval: task %s: not available: %s\n", specs[i], why);
            free(specs[i]);
            continue;
        }
        tasks[navail] = t;
        specs[navail++] = specs[i];
    }
    if (!navail) die_input("none of the tasks '%s' is available (see the lines above)", tasks_arg);
    nspec = navail;
    task_check_unique(tasks, specs, nspec);
    // every checkpoint checked before any model work
    char **paths = xcalloc(nck, sizeof(char *));
    cJSON *plan = dry ? cJSON_CreateObject() : NULL, *pck = dry ? cJSON_AddArrayToObject(plan, "checkpoints") : NULL;
    for (int k = 0; k < nck; k++) {
        paths[k] = eval_resolve_ckpt(ckpts[k]);
        cJSON *o = dry ? cJSON_CreateObject() : NULL;
        check_ckpt(paths[k], probe, n_over, tok_path, tasks, nspec, limit, prec, o);
        double need = eval_mem_check(paths[k], budget, prec, dry);  // before any checkpoint is loaded
        if (o) {
            if (need >= 0) cJSON_AddNumberToObject(o, "memory_bytes", need);
            else cJSON_AddNullToObject(o, "memory_bytes");
            cJSON_AddItemToArray(pck, o);
        }
    }
    if (!dry && mkdir_p(out_dir)) die("%s: cannot create the output directory", out_dir);
    fprintf(stderr, "aoe eval: %d checkpoint(s), %d task(s), BLIS %s, %d threads\n", nck, nspec, arch, threads);

    EvalSettings st = {tasks_arg, limit, shots, budget, threads, seed, data_dir};
    CkptResults *cr = xcalloc(nck, sizeof(CkptResults));
    char **dirs = xcalloc(nck, sizeof(char *));  // where each checkpoint's files go
    for (int k = 0; k < nck; k++) {
        char *l = make_label(paths[k]);
        for (int j = 0; j < k; j++)
            if (!strcmp(cr[j].label, l)) {
                char b[1200];
                snprintf(b, sizeof b, "%s#%d", l, k + 1);
                free(l);
                l = xstrdup(b);
                break;
            }
        cr[k].label = l;
        if (nck == 1) dirs[k] = xstrdup(out_dir);
        else {
            char sub[2048], clean[1200];
            snprintf(clean, sizeof clean, "%s", l);
            for (char *p = clean; *p; p++)
                if (*p == '/' || *p == '#') *p = '_';
            snprintf(sub, sizeof sub, "%s/%s", out_dir, clean);
            if (!dry && mkdir_p(sub)) die("%s: cannot create directory", sub);
            dirs[k] = xstrdup(sub);
        }
    }
    if (dry) {  // the plan on stdout, nothing scored or written
        for (int k = 0; k < nck; k++) {
            cJSON *o = cJSON_GetArrayItem(pck, k);
            char *rp = path_join(dirs[k], "results.json");
            cJSON_AddStringToObject(o, "label", cr[k].label);
            cJSON_AddStringToObject(o, "results", rp);
            free(rp);
            free(dirs[k]);
        }
        plan_tasks(plan, tasks, specs, nspec, &st, out_dir, n_over ? probe_set + strlen("model.ffn.score_override=") : NULL,
                   log_samples, load_stats);
        char *js = cJSON_Print(plan);
        printf("%s\n", js);
        free(js);
        cJSON_Delete(plan);
    }
    for (int k = 0; k < nck && !dry; k++) {
        double t0 = now_sec();
        CkptMeta meta;
        CkptResults *c = &cr[k];
        c->path = paths[k];
        c->file_hash = file_hash(paths[k]);
        // one sequence of activations here; the scorer adds a batched model sharing the weights
        Model *m = ckpt_load_model_with(paths[k], 1, &meta, probe, n_over);
        kernels_set_precision(model_precision(&m->cfg, prec));
        fprintf(stderr, "aoe eval: %s: precision %s\n", paths[k], precision_name(kernels_precision()));
        Tokenizer *tk = eval_open_tokenizer(&m->cfg, m->V, &meta, paths[k], tok_path, NULL);
        c->tok_hash = tok_hash(tk);
        c->step = ckpt_meta_step(&meta);
        double flops;
        model_count(&m->cfg, m->V, &c->params_total, &c->params_active, &flops);
        c->config_json = config_to_json(&m->cfg);
        int cap = 0;  // results grow with the tasks: no fixed limit
        for (int i = 0; i < nspec; i++) cap += eval_task_count(tasks[i]);
        c->res = xcalloc(cap, sizeof(TaskResult));
        Scorer *sc = scorer_new(m, budget);
        LoadStats *ls = load_stats ? loadstats_new(m) : NULL;
        Buf lj = {0};
        if (ls) {
            scorer_set_hook(sc, loadstats_hook, ls);
            bprintf(&lj, "{\"v\":1,\"checkpoint\":");
            analyze_json_string(&lj, paths[k]);
            bprintf(&lj, ",\"step\":%ld,\"tasks\":[", c->step);
        }
        for (int i = 0; i < nspec; i++) {
            if (ls) loadstats_reset(ls);
            if (limit > 0 && tasks[i]->n_groups > 1 && k == 0)
                fprintf(stderr, "aoe eval: %s: --limit %d applies to each of its %d sub-tasks\n", tasks[i]->name, limit,
                        tasks[i]->n_groups);
            AtomicFile af = {0};
            if (log_samples) {
                char p[2400], name[sizeof tasks[i]->name];
                snprintf(name, sizeof name, "%s", tasks[i]->name);
                for (char *q = name; *q; q++)
                    if (!(isalnum((unsigned char)*q) || *q == '.' || *q == '-' || *q == '_')) *q = '_';
                snprintf(p, sizeof p, "%s/samples_%s.jsonl", dirs[k], name);
                if (atomic_open(&af, p)) die("%s: cannot write: %s", p, strerror(errno));
            }
            int got = eval_task_logged(sc, tk, tasks[i], limit, shots, seed, c->res + c->n_res, cap - c->n_res,
                                       log_samples ? af.f : NULL);
            if (got < 0) {
                if (log_samples) atomic_abort(&af);
                die_input("%s: the model's log-likelihoods are not finite (task %s); refusing to score it "
                          "(a diverged or corrupt checkpoint)", c->path, tasks[i]->name);
            }
            if (log_samples && atomic_commit(&af)) die("%s: cannot write: %s", af.path, strerror(errno));
            const TaskResult *r = &c->res[c->n_res];
            const Metric *mm = result_metric(r, r->main_metric);
            fprintf(stderr, "aoe eval: %s: %-16s %s = %.4f (n=%d, %.1f s, %.0f tok/s, %.0f%% padding)\n", c->path,
                    r->task, r->main_metric, mm ? mm->value : 0, r->n, r->seconds,
                    r->seconds > 0 ? r->tokens / r->seconds : 0,
                    r->positions > 0 ? 100 * (1 - r->tokens / r->positions) : 0);
            c->n_res += got;
            if (ls) {  // every token the task's requests forwarded (a shared context once per choice)
                bprintf(&lj, "%s{\"task\":", i ? "," : "");
                analyze_json_string(&lj, r->task);
                bprintf(&lj, ",\"stats\":");
                loadstats_json(ls, &lj);
                bprintf(&lj, "}");
            }
        }
        if (ls) {
            bprintf(&lj, "]}\n");
            c->load_stats = lj.s;
            loadstats_free(ls);
        }
        c->seconds = now_sec() - t0;
        scorer_free(sc);
        tok_free(tk);
        model_free(m);
        // written as soon as scored, with report.md so far: a later failure keeps this work
        char *json = results_json(c, &st), *md = results_markdown(cr, k + 1, &st);
        write_text(dirs[k], "results.json", json);
        if (c->load_stats) write_text(dirs[k], "load_stats.json", c->load_stats);
        write_text(out_dir, "report.md", md);
        free(json); free(md); free(dirs[k]);
    }
    free(dirs);
    if (!dry) {  // the comparison table on stdout (up to the "## Checkpoints" section)
        char *md = results_markdown(cr, nck, &st), *end = strstr(md, "\n## Checkpoints");
        if (end) *end = 0;
        printf("%s\n", md);
        printf("aoe eval: wrote %s/report.md and %s\n", out_dir, nck == 1 ? "results.json" : "<label>/results.json");
        free(md);
    }
    for (int k = 0; k < nck; k++) {
        free((char *)cr[k].label); free(cr[k].res); free((char *)cr[k].config_json); free(cr[k].load_stats); free(paths[k]);
    }
    free(cr); free(paths);
    for (int i = 0; i < nspec; i++) { task_free(tasks[i]); free(specs[i]); }
    free(tasks); free(specs); free(ckpts);
    return 0;
}
