// report_plot.c — the figures of `aoe report`, one data file per figure plus one gnuplot script
// (report.gp, rerun with `cd DIR/plots && gnuplot report.gp`). Each group (a row of the table)
// keeps one colour and line style in every figure; keys sit right of the plot, clear of the axes.
//   train_loss.png    training loss against step (mean of each logged interval, mean over seeds)
//   val_loss.png      validation loss against step, one line per group (mean over its seeds)
//   load_entropy.png  Ent_load and Ent_conf of the last logged interval per sparse layer, per group
//   erc_eps.png       ERC noise bound ε (mean over experts) against step, one panel per sparse layer,
//                     for groups that log it (model.ffn.erc_coef > 0 or erc_log; mean over seeds)
//   dlow_loss.png     AoE: final validation loss against model.ffn.d_low (mean ± std over seeds),
//                     one series per remaining difference; other groups as dashed horizontal lines
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "report/plot.h"
#include "report/report_plot.h"
#include "util/common.h"

// The style of group g in every figure: 10 colours (Tableau 10), then the next dash pattern.
static void group_style(Buf *b, int g) {
    static const char *const pal[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                      "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
    bprintf(b, " lc rgb '%s' dt %d", pal[g % 10], 1 + g / 10);
}

// Terminal, output and the key outside on the right (a key below collides with the x label).
static void gp_begin(FILE *gp, const char *png, int w, int h) {
    fprintf(gp, "eval sprintf('set terminal %%s noenhanced size %d,%d', T)\nset output '%s'\n"
                "set key outside right top vertical Left reverse font ',8' samplen 2\n", w, h, png);
}

// Mean over the group's runs of a curve's value logged at `step` (NAN if none has it); which
// selects the validation (1) or training (0) loss.
static double mean_at(const Report *R, const Group *G, double step, int which) {
    double s = 0;
    int n = 0;
    for (int i = 0; i < G->n; i++) {
        const Run *r = &R->run[G->member[i]];
        const double *xs = which ? r->vstep : r->tstep, *ys = which ? r->vloss : r->tloss;
        for (int k = 0, nk = which ? r->nv : r->ntl; k < nk; k++)
            if (xs[k] == step) { s += ys[k]; n++; break; }
    }
    return n ? s / n : NAN;
}

// Loss against step, one line per group: which = 1 validation loss, 0 training loss.
static int plot_curve(const Report *R, const char *dir, FILE *gp, int which) {
    const char *name = which ? "val_loss" : "train_loss";
    char dat[32];
    snprintf(dat, sizeof dat, "%s.dat", name);
    FILE *f = plot_open(dir, dat);
    int nb = 0;
    Buf cmd = {0};
    for (int g = 0; g < R->ngroup; g++) {
        const Group *G = &R->group[g];
        const Run *r0 = &R->run[G->member[0]];
        int n = which ? r0->nv : r0->ntl;
        if (!n) continue;
        fprintf(f, "%s# %s\n", nb ? "\n\n" : "", G->label);
        for (int k = 0; k < n; k++) {
            double x = which ? r0->vstep[k] : r0->tstep[k];
            fprintf(f, "%g %.6g\n", x, mean_at(R, G, x, which));
        }
        bprintf(&cmd, "%s'%s' index %d using 1:2 with %s", nb ? ", " : "plot ", dat, nb, which ? "linespoints pt 7 ps 0.6" : "lines");
        group_style(&cmd, g);
        bprintf(&cmd, " title G%d", g);
        nb++;
    }
    fclose(f);
    if (nb) {
        gp_begin(gp, which ? "val_loss.png" : "train_loss.png", 900, 560);
        fprintf(gp, "set title '%s'\nset xlabel 'step'; set ylabel '%s'\n%s\nunset output; reset\n",
                which ? "validation loss (mean over seeds)" : "training loss, mean of each logged interval (mean over seeds)",
                which ? "val loss" : "train loss", cmd.s);
    }
    free(cmd.s);
    return nb > 0;
}

static int plot_entropy(const Report *R, const char *dir, FILE *gp) {
    FILE *f = plot_open(dir, "load_entropy.dat");
    int nb = 0;
    Buf cmd[2] = {{0}, {0}};
    for (int g = 0; g < R->ngroup; g++) {
        const Group *G = &R->group[g];
        const Run *r0 = &R->run[G->member[0]];
        if (!r0->nl) continue;
        fprintf(f, "%s# %s: layer, Ent_load, Ent_conf (mean over seeds)\n", nb ? "\n\n" : "", G->label);
        for (int l = 0; l < r0->nl; l++) {
            double el = 0, ec = 0;
            int n = 0;
            for (int i = 0; i < G->n; i++) {
                const Run *r = &R->run[G->member[i]];
                for (int k = 0; k < r->nl; k++)
                    if (r->layer[k] == r0->layer[l]) { el += r->lay_ent_load[k]; ec += r->lay_ent_conf[k]; n++; }
            }
            fprintf(f, "%d %.6g %.6g\n", r0->layer[l], el / n, ec / n);
        }
        for (int pass = 0; pass < 2; pass++) {
            bprintf(&cmd[pass], "%s'load_entropy.dat' index %d using 1:%d with linespoints pt 7 ps 0.6", nb ? ", " : "plot ",
                    nb, 2 + pass);
            group_style(&cmd[pass], g);
            bprintf(&cmd[pass], " title G%d", g);
        }
        nb++;
    }
    fclose(f);
    if (nb) {  // the key once, right of the second panel
        gp_begin(gp, "load_entropy.png", 1200, 520);
        fprintf(gp, "set multiplot layout 1,2 title 'last logged interval, mean over seeds'\n"
                    "set xlabel 'layer'; set xtics 1\nunset key\n"
                    "set title 'Ent_load (max ln n)'; set ylabel 'Ent_load'\n%s\n"
                    "set key outside right top vertical Left reverse font ',8' samplen 2\n"
                    "set title 'Ent_conf (lower = more confident)'; set ylabel 'Ent_conf'\n%s\n"
                    "unset multiplot\nunset output; reset\n", cmd[0].s, cmd[1].s);
    }
    free(cmd[0].s); free(cmd[1].s);
    return nb > 0;
}

// ε of group G's runs in sparse-layer slot l at `step`, mean over the runs that logged it.
static double eps_at(const Report *R, const Group *G, int l, double step) {
    double s = 0;
    int n = 0;
    for (int i = 0; i < G->n; i++) {
        const Run *r = &R->run[G->member[i]];
        for (int k = 0; k < r->ne && l < r->nl; k++)
            if (r->estep[k] == step) { s += r->eps[(size_t)l * r->ne + k]; n++; break; }
    }
    return n ? s / n : NAN;
}

static int plot_erc(const Report *R, const char *dir, FILE *gp) {
    int nl = 0;
    for (int i = 0; i < R->nrun; i++)
        if (R->run[i].ne && R->run[i].nl > nl) nl = R->run[i].nl;
    if (!nl) return 0;
    FILE *f = plot_open(dir, "erc_eps.dat");
    Buf cmd = {0};
    int nb = 0;
    for (int l = 0; l < nl; l++) {
        bprintf(&cmd, "set title 'sparse layer %d'\n", l);
        int first = 1;
        for (int g = 0; g < R->ngroup; g++) {
            const Group *G = &R->group[g];
            const Run *r0 = &R->run[G->member[0]];
            if (!r0->ne || l >= r0->nl) continue;
            fprintf(f, "%s# %s, layer %d: step, eps (mean over seeds)\n", nb ? "\n\n" : "", G->label, r0->layer[l]);
            for (int k = 0; k < r0->ne; k++) fprintf(f, "%g %.6g\n", r0->estep[k], eps_at(R, G, l, r0->estep[k]));
            bprintf(&cmd, "%s'erc_eps.dat' index %d using 1:2 with lines", first ? "plot " : ", ", nb++);
            group_style(&cmd, g);
            bprintf(&cmd, " title G%d", g);
            first = 0;
        }
        bprintf(&cmd, "\n");
    }
    fclose(f);
    int cols = nl < 4 ? nl : 4, rows = (nl + cols - 1) / cols;
    gp_begin(gp, "erc_eps.png", 620 * cols, 360 * rows + 40);
    fprintf(gp, "set multiplot layout %d,%d title 'ERC noise bound eps (mean over experts), mean over seeds'\n"
                "set xlabel 'step'; set ylabel 'eps'\n%sunset multiplot\nunset output; reset\n", rows, cols, cmd.s);
    free(cmd.s);
    return 1;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int cmp_dlow(const void *a, const void *b) {
    const double *x = a, *y = b;  // rows of 4: d_low first
    return (x[0] > y[0]) - (x[0] < y[0]);
}

static int plot_dlow(const Report *R, const char *dir, FILE *gp) {
    int cv = report_col(R, "val_loss"), nd = 0;
    double dl[64];
    for (int g = 0; g < R->ngroup; g++) {  // distinct d_low values of AoE groups
        const Run *r = &R->run[R->group[g].member[0]];
        const char *t = run_conf(r, "model.ffn.type"), *d = run_conf(r, "model.ffn.d_low");
        if (!t || strcmp(t, "aoe") || !d) continue;
        int seen = 0;
        for (int i = 0; i < nd; i++) seen |= dl[i] == atof(d);
        if (!seen && nd < 64) dl[nd++] = atof(d);
    }
    if (nd < 2) return 0;
    char **series = xcalloc(R->ngroup, sizeof(char *));
    int *done = xcalloc(R->ngroup, sizeof(int)), nb = 0;
    FILE *f = plot_open(dir, "dlow_loss.dat");
    Buf cmd = {0};
    for (int g = 0; g < R->ngroup; g++) {
        const Run *r = &R->run[R->group[g].member[0]];
        const char *t = run_conf(r, "model.ffn.type");
        if (t && !strcmp(t, "aoe") && run_conf(r, "model.ffn.d_low")) {
            char *d = differs_text(R, r, "model.ffn.d_low model.ffn.d_wide");
            Buf b = {0};
            bprintf(&b, "%s%s%s", R->group[g].method, d[0] ? " " : "", d);  // the series: method + other differences
            series[g] = b.s;
            free(d);
        }
    }
    for (int g = 0; g < R->ngroup; g++) {
        if (!series[g] || done[g]) continue;
        double (*pts)[4] = xmalloc(sizeof(double[4]) * R->ngroup);
        int np = 0;
        for (int h = g; h < R->ngroup; h++) {
            if (!series[h] || done[h] || strcmp(series[h], series[g])) continue;
            done[h] = 1;
            double m, s;
            if (!group_stat(R, &R->group[h], cv, &m, &s)) continue;
            pts[np][0] = atof(run_conf(&R->run[R->group[h].member[0]], "model.ffn.d_low"));
            pts[np][1] = m;
            pts[np][2] = isnan(s) ? 0 : s;
            pts[np++][3] = h;
        }
        if (np) {  // the series as a grey line, each group on it as a point in the group's colour
            qsort(pts, np, sizeof pts[0], cmp_dlow);
            fprintf(f, "%s# %s: d_low, val loss mean, std over seeds\n", nb ? "\n\n" : "", series[g]);
            for (int i = 0; i < np; i++) fprintf(f, "%g %.6g %.6g\n", pts[i][0], pts[i][1], pts[i][2]);
            fprintf(gp, "S%d = ", nb);
            plot_quote(gp, series[g]);
            fprintf(gp, "\n");
            bprintf(&cmd, "%s'dlow_loss.dat' index %d using 1:2 with lines lc rgb '#404040' dt %d title S%d", nb ? ", " : "plot ",
                    nb, 1 + nb, nb);
            for (int i = 0; i < np; i++) {
                bprintf(&cmd, ", 'dlow_loss.dat' index %d every ::%d::%d using 1:2:3 with yerrorbars pt 7", nb, i, i);
                group_style(&cmd, (int)pts[i][3]);
                bprintf(&cmd, " title G%d", (int)pts[i][3]);
            }
            nb++;
        }
        free(pts);
    }
    fclose(f);
    for (int g = 0; g < R->ngroup && nb; g++) {  // the other groups (MoE baselines) as horizontal lines
        const Run *r = &R->run[R->group[g].member[0]];
        const char *t = run_conf(r, "model.ffn.type");
        double m, s;
        if ((t && !strcmp(t, "aoe")) || !group_stat(R, &R->group[g], cv, &m, &s)) continue;
        bprintf(&cmd, ", %.6g with lines lw 2", m);
        group_style(&cmd, g);
        bprintf(&cmd, " title G%d", g);
    }
    if (nb) {
        gp_begin(gp, "dlow_loss.png", 900, 560);
        fprintf(gp, "set title 'final validation loss against the AoE rank d_low (mean ± std over seeds)'\n"
                    "set xlabel 'd_low'; set ylabel 'val loss'\n"
                    "set offsets graph 0.05, graph 0.05, 0, 0\nset xtics (");
        qsort(dl, nd, sizeof dl[0], cmp_double);
        for (int i = 0; i < nd; i++) fprintf(gp, "%s%g", i ? ", " : "", dl[i]);
        fprintf(gp, ")\n%s\nunset output; reset\n", cmd.s);
    }
    for (int g = 0; g < R->ngroup; g++) free(series[g]);
    free(series); free(done); free(cmd.s);
    return nb > 0;
}

int report_plots(const Report *R, const char *dir, const char **png, int *npng) {
    FILE *gp = plot_open(dir, "report.gp");
    fprintf(gp, "# written by `aoe report`; rerun with: cd <report dir>/plots && gnuplot report.gp\n"
                "set datafile missing 'nan'\n"
                "if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) { T = 'pngcairo' } else { T = 'png' }\n");
    for (int g = 0; g < R->ngroup; g++) {  // G<g>: the label of group g in every key
        fprintf(gp, "G%d = ", g);
        plot_quote(gp, R->group[g].label);
        fprintf(gp, "\n");
    }
    *npng = 0;
    if (plot_curve(R, dir, gp, 0)) png[(*npng)++] = "train_loss.png";
    if (plot_curve(R, dir, gp, 1)) png[(*npng)++] = "val_loss.png";
    if (plot_entropy(R, dir, gp)) png[(*npng)++] = "load_entropy.png";
    if (plot_erc(R, dir, gp)) png[(*npng)++] = "erc_eps.png";
    if (plot_dlow(R, dir, gp)) png[(*npng)++] = "dlow_loss.png";
    fclose(gp);
    return *npng ? plot_run(dir, "report.gp") : 0;
}
