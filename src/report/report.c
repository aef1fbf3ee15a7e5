// report.c — `aoe report RUN_DIR... [--out DIR]`: one table across training runs (what differs
// between them, final validation loss, bits per byte, benchmark scores and their average, tokens/s,
// peak memory, load and confidence entropy, dropped assignments), runs that differ only in
// train.seed grouped into one row with mean ± std, written as Markdown and CSV, plus gnuplot
// figures (report_plot.c). report_read.c builds the report model from what `aoe train` and
// `aoe eval` wrote (config.json, metrics.jsonl, load.jsonl, eval/results.json); nothing here loads
// a model, a shard or a tokenizer. docs/sweeps.md.
#include <errno.h>
#include <glob.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "report/plot.h"
#include "report/report_plot.h"
#include "report/report_read.h"
#include "util/common.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: aoe report RUN_DIR... [--eval DIR]... [--out DIR] [--no-plots]\n\n"
            "Compares training runs (the run.out directories of `aoe train`, e.g. from tools/sweep.sh).\n"
            "Reads RUN_DIR/config.json, metrics.jsonl, model.json, load.jsonl (MoE/AoE) and the run's eval\n"
            "results: RUN_DIR/eval/results.json (`aoe eval RUN_DIR --out RUN_DIR/eval`), or those found in\n"
            "an --eval DIR. Runs whose configs differ only in train.seed form one row with mean ± std.\n\n"
            "Writes (docs/sweeps.md lists every column):\n"
            "  DIR/report.md   the grouped table, the per-run table and the plots\n"
            "  DIR/report.csv  one row per run, then mean and std rows per group\n"
            "  DIR/plots/      train_loss.png, val_loss.png (per group), load_entropy.png (Ent_load and\n"
            "                  Ent_conf per layer), erc_eps.png (ERC eps per layer over training, runs with\n"
            "                  model.ffn.erc_coef > 0 or erc_log), dlow_loss.png (when AoE runs differ in\n"
            "                  model.ffn.d_low)\n"
            "The grouped table also goes to stdout.\n\n"
            "options:\n"
            "  --out DIR     output directory (default: report)\n"
            "  --eval DIR    the --out DIR of `aoe eval A B C ...`: each DIR/results.json and\n"
            "                DIR/*/results.json is used for the run that holds its checkpoint (the\n"
            "                latest step if several); repeatable\n"
            "  --no-plots    tables only\n\n"
            "exit status: 0 ok (also without gnuplot: a line on stderr says so), 1 plotting failed,\n"
            "2 bad usage or a missing or malformed file (named with its line).\n");
}

// ---------------------------------------------------------------- tables

static void cell(Buf *b, const Column *c, double v) {
    if (isnan(v)) { bprintf(b, "–"); return; }
    bprintf(b, c->fmt, v / c->md_scale);
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
            cell(b, &R->col[c], m);
            if (!isnan(s)) { bprintf(b, " ± "); cell(b, &R->col[c], s); }
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
            cell(b, &R->col[c], r->col[c]);
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

static void csv_num(Buf *b, double v) {  // counts in full (2000000, not 2e+06), other values to 6 digits
    if (!isnan(v)) bprintf(b, v == floor(v) && fabs(v) < 1e15 ? "%.0f" : "%.6g", v);
}

static char *csv_text(const Report *R) {
    Buf b = {0};
    bprintf(&b, "kind,group,run,seed,n,method,differs,step,steps");
    for (int c = 0; c < R->ncol; c++) {
        bprintf(&b, ",");
        csv_field(&b, R->col[c].csv);
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

int cmd_report(int argc, char **argv) {
    if (wants_help(argc, argv)) { usage(stdout); return 0; }
    const char *out = "report";
    int plots = 1;
    Report R;
    const char **dirs = xmalloc(sizeof(char *) * (argc ? argc : 1)), **evdirs = xmalloc(sizeof(char *) * (argc ? argc : 1));
    int nd = 0, nev = 0;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--out") || !strcmp(argv[i], "--eval")) {
            if (i + 1 >= argc || !argv[i + 1][0]) die_input("report: %s needs a directory", argv[i]);
            if (argv[i][2] == 'o') out = argv[++i];
            else evdirs[nev++] = argv[++i];
        } else if (!strcmp(argv[i], "--no-plots")) plots = 0;
        else if (argv[i][0] == '-') {
            fprintf(stderr, "aoe report: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        } else dirs[nd++] = argv[i];
    }
    if (!nd) { usage(stderr); return 2; }
    report_read(&R, dirs, nd, evdirs, nev);
    free(dirs);
    free(evdirs);
    Buf notes = {0};  // where each run's eval results came from; numbers not available and why
    for (int i = 0; i < R.nrun; i++) {
        const Run *r = &R.run[i];
        if (r->eval_path) bprintf(&notes, "- %s: eval results from `%s`\n", r->name, r->eval_path);
        if (r->val_bpb_missing) {
            fprintf(stderr, "aoe report: %s: val bpb unavailable (metrics.jsonl has val_loss but no val_bpb: trained by "
                            "an older aoe; `aoe eval %s --tasks shards:<data.val>` measures it, as eval bpb)\n",
                    r->dir, r->dir);
            bprintf(&notes, "- %s: val bpb unavailable (its metrics.jsonl predates val_bpb)\n", r->name);
        }
    }
    if (mkdir_p(out)) die("%s: cannot create: %s", out, strerror(errno));
    const char *png[8];
    int npng = 0, rc = plots ? write_plots(&R, out, png, &npng) : 0;

    Buf md = {0}, grouped = {0};
    md_grouped(&grouped, &R);
    bprintf(&md, "# aoe report\n\n%d runs in %d groups (runs whose configs differ only in train.seed form one "
                 "row: mean ± sample std over seeds). Columns: docs/sweeps.md. Benchmarks: accuracy in %%, "
                 "`avg` is their mean. Columns from params to unrouted come from training, `eval bpb` and the "
                 "benchmarks from `aoe eval`.\n\n",
            R.nrun, R.ngroup);
    bprintf(&md, "%s\n## Runs\n\n", grouped.s);
    md_runs(&md, &R);
    if (notes.n) bprintf(&md, "\n%s", notes.s);
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
    free(md.s); free(grouped.s); free(csv); free(notes.s);
    report_free(&R);
    return rc;
}
