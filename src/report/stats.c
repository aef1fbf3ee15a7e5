// stats.c — `aoe stats RUN_DIR`: reads RUN_DIR/load.jsonl (schema: docs/stats.md), prints a
// per-layer summary (last interval and mean over training) and writes PNG plots with gnuplot:
// a layers × experts load heatmap, per-expert load over training and, for AoE, the mean key norm
// per expert over training. It does not recompute anything from checkpoints.
#include <errno.h>
#include <math.h>
#include <string.h>

#include "cli.h"
#include "report/loadlog.h"
#include "report/plot.h"
#include "util/common.h"
#include "util/json.h"

typedef LoadRec Rec;
typedef LoadLayer Layer;

static void usage(FILE *f) {
    fprintf(f,
            "usage: aoe stats RUN_DIR [--no-plots]\n\n"
            "Summarises RUN_DIR/load.jsonl, the expert-load statistics that `aoe train` writes for every\n"
            "MoE/AoE layer each train.log_every steps (schema: docs/stats.md). Prints one row per layer\n"
            "for the last interval and for the mean over all intervals, and writes with gnuplot:\n"
            "  RUN_DIR/plots/load_heatmap.png    layers x experts load fraction (last interval)\n"
            "  RUN_DIR/plots/load_over_time.png  per-expert load fraction over training, one panel per layer\n"
            "  RUN_DIR/plots/norm_over_time.png  AoE only: mean key norm per expert over training\n"
            "  RUN_DIR/plots/erc_over_time.png   runs with model.ffn.erc_coef > 0 or erc_log: ERC eps and loss\n"
            "                                    per layer over training\n\n"
            "options:\n"
            "  --no-plots   only print the table\n\n"
            "exit status: 0 ok (also when gnuplot is missing: the table is still printed), 1 plotting\n"
            "failed, 2 bad usage or malformed load.jsonl.\n");
}

// ---- table ----
static void print_table(const char *path, Layer *ls, int nl) {
    long s0 = ls[0].r[0].step, s1 = s0, nrec = 0;
    for (int i = 0; i < nl; i++) {
        nrec += ls[i].nr;
        for (int j = 0; j < ls[i].nr; j++) {
            if (ls[i].r[j].step < s0) s0 = ls[i].r[j].step;
            if (ls[i].r[j].step > s1) s1 = ls[i].r[j].step;
        }
    }
    printf("%s: %ld records, %d sparse layers, steps %ld..%ld\n", path, nrec, nl, s0, s1);
    printf("ent_load = -sum f log f of load fractions (max ln n), ent_conf = mean per-token entropy of\n"
           "softmax(scores), cv = std/mean of counts, max-min = max - min load fraction\n\n");
    const char *hdr = "%5s %-4s %3s %2s %6s | %8s %8s %6s %7s %4s %8s %8s\n";
    for (int part = 0; part < 2; part++) {
        printf("%s\n", part ? "mean over training intervals (dead: mean per interval, dropped: total)"
                            : "last interval");
        printf(hdr, "layer", "type", "n", "k", part ? "ints" : "step", "ent_load", "ent_conf", "cv", "max-min",
               "dead", "dropped", "lb_loss");
        double sum_mm = 0;
        for (int i = 0; i < nl; i++) {
            Layer *L = &ls[i];
            Rec *r = &L->r[L->nr - 1];
            if (!part) {
                printf("%5d %-4s %3d %2d %6ld | %8.4f %8.4f %6.3f %7.4f %4ld %8ld %8.4f\n", L->layer,
                       L->type[0] ? L->type : "?", L->n, L->k, r->step, r->ent_load, r->ent_conf, r->cv, r->mm,
                       r->dead, r->dropped, r->lb);
                sum_mm += r->mm;
                continue;
            }
            double el = 0, ec = 0, cv = 0, mm = 0, dead = 0, lb = 0;
            long dropped = 0;
            for (int j = 0; j < L->nr; j++) {
                Rec *q = &L->r[j];
                el += q->ent_load; ec += q->ent_conf; cv += q->cv; mm += q->mm; dead += q->dead; lb += q->lb;
                dropped += q->dropped;
            }
            double m = L->nr;
            printf("%5d %-4s %3d %2d %6d | %8.4f %8.4f %6.3f %7.4f %4.1f %8ld %8.4f\n", L->layer,
                   L->type[0] ? L->type : "?", L->n, L->k, L->nr, el / m, ec / m, cv / m, mm / m, dead / m,
                   dropped, lb / m);
            sum_mm += mm / m;
        }
        printf("sum over layers of max-min: %.4f\n\n", sum_mm);
    }
    // selection method and ERC (keys newer lines carry; docs/select.md), last interval
    int any = 0;
    for (int i = 0; i < nl; i++) any |= !isnan(ls[i].r[ls[i].nr - 1].k_mean);
    if (!any) return;
    printf("selection, last interval (k_mean: experts per token, unrouted: tokens no expert processed,\n"
           "erc_loss / erc_eps: ERC loss and mean noise bound, '-' without ERC)\n");
    printf("%5s %-14s %7s %9s %9s %8s\n", "layer", "select", "k_mean", "unrouted", "erc_loss", "erc_eps");
    for (int i = 0; i < nl; i++) {
        const Rec *r = &ls[i].r[ls[i].nr - 1];
        char el[32] = "-", ee[32] = "-";
        if (!isnan(r->erc_loss)) snprintf(el, sizeof el, "%.4g", r->erc_loss);
        if (!isnan(r->erc_eps)) snprintf(ee, sizeof ee, "%.4f", r->erc_eps);
        printf("%5d %-14s %7.3f %9ld %9s %8s\n", ls[i].layer, ls[i].select[0] ? ls[i].select : "?", r->k_mean,
               r->unrouted, el, ee);
    }
    printf("\n");
}

// ---- plots ----
static int any_erc(Layer *ls, int nl) {
    for (int i = 0; i < nl; i++)
        if (!isnan(ls[i].r[ls[i].nr - 1].erc_eps)) return 1;
    return 0;
}

// Writes the data files and stats.gp into dir (RUN_DIR/plots) and runs gnuplot there.
// Returns gnuplot's exit status (-1 if it could not run).
// name: the run's name, first in every title (R = '<name>: ' in stats.gp).
static int make_plots(const char *dir, const char *run_name, Layer *ls, int nl) {
    int nmax = 0, any_norm = 0;
    for (int i = 0; i < nl; i++) {
        if (ls[i].n > nmax) nmax = ls[i].n;
        any_norm |= ls[i].r[ls[i].nr - 1].norm != NULL;
    }
    FILE *f = plot_open(dir, "load_heatmap.dat");  // rows: layers (in order), columns: experts
    for (int i = 0; i < nl; i++) {
        Rec *r = &ls[i].r[ls[i].nr - 1];
        for (int e = 0; e < nmax; e++) fprintf(f, "%s%.6g", e ? " " : "", e < ls[i].n ? r->frac[e] : NAN);
        fprintf(f, "\n");
    }
    fclose(f);
    for (int i = 0; i < nl; i++) {
        char name[64];
        snprintf(name, sizeof name, "load_layer%d.dat", ls[i].layer);
        f = plot_open(dir, name);
        fprintf(f, "# step, load fraction of expert 0..%d, mean key norm of expert 0..%d (AoE), ERC eps, ERC loss\n",
                ls[i].n - 1, ls[i].n - 1);
        for (int j = 0; j < ls[i].nr; j++) {
            Rec *r = &ls[i].r[j];
            fprintf(f, "%ld", r->step);
            for (int e = 0; e < ls[i].n; e++) fprintf(f, " %.6g", r->frac[e]);
            for (int e = 0; e < ls[i].n; e++) fprintf(f, " %.6g", r->norm ? r->norm[e] : NAN);
            fprintf(f, " %.6g %.6g\n", r->erc_eps, r->erc_loss);
        }
        fclose(f);
    }
    // heatmap
    f = plot_open(dir, "stats.gp");
    fprintf(f, "# written by `aoe stats`; rerun with: cd %s && gnuplot stats.gp\n", dir);
    fprintf(f, "set datafile missing 'nan'\n"
               "if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) { T = 'pngcairo' } else { T = 'png' }\nR = ");
    plot_quote(f, run_name);
    fprintf(f, ".': '\n");
    fprintf(f, "eval sprintf('set terminal %%s noenhanced size %d,%d', T)\n", 160 + 60 * nmax > 560 ? 160 + 60 * nmax : 560, 140 + 40 * nl);
    fprintf(f, "set output 'load_heatmap.png'\n"
               "set title R.'load fraction per expert (last logged interval)'\n"
               "set xlabel 'expert'; set ylabel 'layer'\n"
               "set cblabel 'fraction of assignments'; set cbrange [0:*]\n"
               "set palette defined (0 'white', 1 '#fdae61', 2 '#d7191c')\n"
               "set xrange [-0.5:%d.5]; set yrange [%d.5:-0.5]\n"
               "set xtics 1; set ytics (", nmax - 1, nl - 1);
    for (int i = 0; i < nl; i++) fprintf(f, "%s'%d' %d", i ? ", " : "", ls[i].layer, i);
    fprintf(f, ")\nplot 'load_heatmap.dat' matrix with image notitle, "
               "'load_heatmap.dat' matrix using 1:2:(sprintf('%%.2f', $3)) with labels notitle\n"
               "unset output; reset\nset datafile missing 'nan'\n");
    // per-expert load (pass 0) and AoE key norms (pass 1) over training, one panel per layer
    for (int pass = 0; pass < 1 + any_norm; pass++) {
        int np = 0;
        for (int i = 0; i < nl; i++) np += !pass || ls[i].r[ls[i].nr - 1].norm;
        int cols = np == 1 ? 1 : np <= 4 ? 2 : 4, rows = (np + cols - 1) / cols;
        fprintf(f, "eval sprintf('set terminal %%s noenhanced size %d,%d', T)\n", 520 * cols, 320 * rows + 40);
        fprintf(f, "set output '%s'\n", pass ? "norm_over_time.png" : "load_over_time.png");
        fprintf(f, "set multiplot layout %d,%d title R.'%s'\n", rows, cols,
                pass ? "mean key norm ||x W_down^e|| per expert over training"
                     : "load fraction per expert over training (dashed: uniform)");
        fprintf(f, "set xlabel 'step'; set ylabel '%s'; set key outside right font ',8'\n",
                pass ? "norm" : "fraction");
        for (int i = 0; i < nl; i++) {
            int n = ls[i].n;
            if (pass && !ls[i].r[ls[i].nr - 1].norm) continue;
            fprintf(f, "set title 'layer %d (%s)'\n", ls[i].layer, ls[i].type[0] ? ls[i].type : "?");
            fprintf(f, "plot for [e=0:%d] 'load_layer%d.dat' using 1:(column(e+%d)) with lines title sprintf('e%%d', e)",
                    n - 1, ls[i].layer, pass ? 2 + n : 2);
            if (!pass) fprintf(f, ", %.6g with lines dt 2 lc 'black' notitle", 1.0 / n);
            fprintf(f, "\n");
        }
        fprintf(f, "unset multiplot\nunset output\n");
    }
    // ERC (model.ffn.erc_coef > 0 or erc_log): noise bound ε and loss per layer over training
    if (any_erc(ls, nl)) {
        fprintf(f, "eval sprintf('set terminal %%s noenhanced size 1040,360', T)\n"
                   "set output 'erc_over_time.png'\nset multiplot layout 1,2 title R.'ERC over training'\n"
                   "set xlabel 'step'; set key outside right font ',8'\n");
        for (int pass = 0; pass < 2; pass++) {
            fprintf(f, "set title '%s'; set ylabel '%s'\nplot ", pass ? "ERC loss (raw) per layer" : "ERC noise bound eps (mean over experts) per layer",
                    pass ? "L_ERC" : "eps");
            for (int i = 0, k = 0; i < nl; i++) {
                if (isnan(ls[i].r[ls[i].nr - 1].erc_eps)) continue;
                fprintf(f, "%s'load_layer%d.dat' using 1:%d with lines title 'layer %d'", k++ ? ", " : "", ls[i].layer,
                        2 + 2 * ls[i].n + pass, ls[i].layer);
            }
            fprintf(f, "\n");
        }
        fprintf(f, "unset multiplot\nunset output\n");
    }
    fclose(f);
    return plot_run(dir, "stats.gp");
}

int cmd_stats(int argc, char **argv) {
    if (wants_help(argc, argv)) { usage(stdout); return 0; }
    const char *run = NULL;
    int plots = 1;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--no-plots")) plots = 0;
        else if (argv[i][0] == '-' || run) {
            fprintf(stderr, "aoe stats: unexpected argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        } else run = argv[i];
    }
    if (!run) { usage(stderr); return 2; }
    if (!is_directory(run)) die_input("%s: not a directory (expected a run directory, see run.out)", run);
    char path[4096], name[1024];
    snprintf(name, sizeof name, "%s", run);
    for (size_t n = strlen(name); n > 1 && name[n - 1] == '/';) name[--n] = 0;
    const char *base = strrchr(name, '/') ? strrchr(name, '/') + 1 : name;
    snprintf(path, sizeof path, "%s/config.json", run);
    if (file_exists(path)) {  // a dense run has no expert layers: say so instead of "no records"
        cJSON *cfg = json_load_file(path);
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(cfg, "model"), "ffn"), "type");
        int dense = cJSON_IsString(t) && !strcmp(t->valuestring, "dense");
        cJSON_Delete(cfg);
        if (dense) {
            printf("%s: a dense run (model.ffn.type dense): no expert layers, so no expert-load statistics.\n"
                   "Its training and validation loss: aoe report %s\n", base, run);
            return 0;
        }
    }
    snprintf(path, sizeof path, "%s/load.jsonl", run);
    if (!file_exists(path))
        die_input("%s: no such file; only runs with model.ffn.type moe or aoe write load statistics", path);
    int nl;
    Layer *ls = loadlog_read(path, &nl);
    if (!nl) {
        printf("%s: no records yet (written every train.log_every steps)\n", path);
        return 0;
    }
    print_table(path, ls, nl);
    int rc = 0;
    if (plots) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s/plots", run);
        if (!plot_have_gnuplot()) {
            fprintf(stderr, "aoe stats: gnuplot not found, no plots written (install it: apt-get install gnuplot-nox)\n");
        } else if (mkdir_p(dir)) {
            fprintf(stderr, "aoe stats: cannot create %s: %s\n", dir, strerror(errno));
            rc = 1;
        } else {
            int st = make_plots(dir, base, ls, nl);
            if (st) {
                fprintf(stderr, "aoe stats: gnuplot failed (status %d); see %s/gnuplot.log\n", st, dir);
                rc = 1;
            } else {
                printf("plots: %s/load_heatmap.png %s/load_over_time.png", dir, dir);
                int any_norm = 0;
                for (int i = 0; i < nl; i++) any_norm |= ls[i].r[ls[i].nr - 1].norm != NULL;
                if (any_norm) printf(" %s/norm_over_time.png", dir);
                if (any_erc(ls, nl)) printf(" %s/erc_over_time.png", dir);
                printf("\n");
            }
        }
    }
    loadlog_free(ls, nl);
    return rc;
}
