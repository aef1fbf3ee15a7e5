// report_plot.c — the figures of `aoe report`, one data file per figure plus one gnuplot script
// (report.gp, rerun with `cd DIR/plots && gnuplot report.gp`):
//   val_loss.png      validation loss against step, one line per group (mean over its seeds)
//   load_entropy.png  Ent_load and Ent_conf of the last logged interval per sparse layer, per group
//   dlow_loss.png     AoE: final validation loss against model.ffn.d_low (mean ± std over seeds),
//                     one series per remaining difference; other groups as dashed horizontal lines
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "report/plot.h"
#include "report/report_plot.h"
#include "util/common.h"

// A gnuplot single-quoted string: ' doubles.
static void gp_str(FILE *f, const char *s) {
    fputc('\'', f);
    for (; *s; s++) {
        if (*s == '\'') fputc('\'', f);
        fputc(*s, f);
    }
    fputc('\'', f);
}

// Mean over the group's runs of the validation loss logged at `step` (NAN if none has it).
static double mean_val_at(const Report *R, const Group *G, double step) {
    double s = 0;
    int n = 0;
    for (int i = 0; i < G->n; i++) {
        const Run *r = &R->run[G->member[i]];
        for (int k = 0; k < r->nv; k++)
            if (r->vstep[k] == step) { s += r->vloss[k]; n++; break; }
    }
    return n ? s / n : NAN;
}

static int plot_val_loss(const Report *R, const char *dir, FILE *gp) {
    FILE *f = plot_open(dir, "val_loss.dat");
    int nb = 0;
    Buf cmd = {0};
    for (int g = 0; g < R->ngroup; g++) {
        const Group *G = &R->group[g];
        const Run *r0 = &R->run[G->member[0]];
        if (!r0->nv) continue;
        fprintf(f, "%s# %s\n", nb ? "\n\n" : "", G->label);
        for (int k = 0; k < r0->nv; k++) fprintf(f, "%g %.6g\n", r0->vstep[k], mean_val_at(R, G, r0->vstep[k]));
        bprintf(&cmd, "%s'val_loss.dat' index %d using 1:2 with linespoints pt %d ps 0.6 dt %d title ", nb ? ", " : "plot ",
                nb, 5 + 2 * (nb / 8), 1 + nb / 8);
        nb++;
        fprintf(gp, "t%d = ", nb);
        gp_str(gp, G->label);
        fprintf(gp, "\n");
        bprintf(&cmd, "t%d", nb);
    }
    fclose(f);
    if (nb) {
        fprintf(gp, "eval sprintf('set terminal %%s noenhanced size 900,640', T)\nset output 'val_loss.png'\n"
                    "set title 'validation loss (mean over seeds)'\nset xlabel 'step'; set ylabel 'val loss'\n"
                    "set key below font ',8'\n%s\nunset output; reset\n", cmd.s);
    }
    free(cmd.s);
    return nb > 0;
}

static int plot_entropy(const Report *R, const char *dir, FILE *gp) {
    FILE *f = plot_open(dir, "load_entropy.dat");
    int nb = 0;
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
        fprintf(gp, "e%d = ", nb);
        gp_str(gp, G->label);
        fprintf(gp, "\n");
        nb++;
    }
    fclose(f);
    if (!nb) return 0;
    fprintf(gp, "eval sprintf('set terminal %%s noenhanced size 1200,%d', T)\nset output 'load_entropy.png'\n"
                "set multiplot layout 1,2 title 'last logged interval, mean over seeds'\n"
                "set xlabel 'layer'; set xtics 1; set key below font ',8'\n", 480 + 16 * nb);
    for (int pass = 0; pass < 2; pass++) {
        fprintf(gp, "set title '%s'; set ylabel '%s'\nplot ", pass ? "Ent_conf (lower = more confident)" : "Ent_load (max ln n)",
                pass ? "Ent_conf" : "Ent_load");
        for (int i = 0; i < nb; i++)
            fprintf(gp, "%s'load_entropy.dat' index %d using 1:%d with linespoints pt %d dt %d title e%d", i ? ", " : "",
                    i, 2 + pass, 5 + 2 * (i / 8), 1 + i / 8, i);  // 8 colours, then new points and dashes
        fprintf(gp, "\n");
    }
    fprintf(gp, "unset multiplot\nunset output; reset\n");
    return 1;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int cmp_dlow(const void *a, const void *b) {
    const double *x = a, *y = b;
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
        double (*pts)[3] = xmalloc(sizeof(double[3]) * R->ngroup);
        int np = 0;
        for (int h = g; h < R->ngroup; h++) {
            if (!series[h] || done[h] || strcmp(series[h], series[g])) continue;
            done[h] = 1;
            double m, s;
            if (!group_stat(R, &R->group[h], cv, &m, &s)) continue;
            pts[np][0] = atof(run_conf(&R->run[R->group[h].member[0]], "model.ffn.d_low"));
            pts[np][1] = m;
            pts[np++][2] = isnan(s) ? 0 : s;
        }
        if (np) {
            qsort(pts, np, sizeof pts[0], cmp_dlow);
            fprintf(f, "%s# %s: d_low, val loss mean, std over seeds\n", nb ? "\n\n" : "", series[g]);
            for (int i = 0; i < np; i++) fprintf(f, "%g %.6g %.6g\n", pts[i][0], pts[i][1], pts[i][2]);
            fprintf(gp, "d%d = ", nb);
            gp_str(gp, series[g]);
            fprintf(gp, "\n");
            bprintf(&cmd, "%s'dlow_loss.dat' index %d using 1:2:3 with yerrorlines pt 7 title d%d",
                    nb ? ", " : "plot ", nb, nb);
            nb++;
        }
        free(pts);
    }
    fclose(f);
    int nh = 0;
    for (int g = 0; g < R->ngroup && nb; g++) {  // the other groups (MoE baselines) as horizontal lines
        const Run *r = &R->run[R->group[g].member[0]];
        const char *t = run_conf(r, "model.ffn.type");
        double m, s;
        if ((t && !strcmp(t, "aoe")) || !group_stat(R, &R->group[g], cv, &m, &s)) continue;
        fprintf(gp, "h%d = ", nh);
        gp_str(gp, R->group[g].label);
        fprintf(gp, "\n");
        bprintf(&cmd, ", %.6g with lines dt 2 lw 2 title h%d", m, nh++);
    }
    if (nb) {
        fprintf(gp, "eval sprintf('set terminal %%s noenhanced size 900,640', T)\nset output 'dlow_loss.png'\n"
                    "set title 'final validation loss against the AoE rank d_low (mean ± std over seeds)'\n"
                    "set xlabel 'd_low'; set ylabel 'val loss'; set key below font ',8'\n"
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
    *npng = 0;
    if (plot_val_loss(R, dir, gp)) png[(*npng)++] = "val_loss.png";
    if (plot_entropy(R, dir, gp)) png[(*npng)++] = "load_entropy.png";
    if (plot_dlow(R, dir, gp)) png[(*npng)++] = "dlow_loss.png";
    fclose(gp);
    return *npng ? plot_run(dir, "report.gp") : 0;
}
