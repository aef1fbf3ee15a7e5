// plot.h — running gnuplot on a script written next to its data files (`aoe stats`, `aoe report`).
#ifndef AOE_PLOT_H
#define AOE_PLOT_H

#include <stdio.h>

int plot_have_gnuplot(void);
// Opens dir/name for writing; exits 1 with the path on failure.
FILE *plot_open(const char *dir, const char *name);
// Runs `gnuplot script` with dir as working directory and stderr to dir/gnuplot.log. Returns
// gnuplot's exit status, or -1 if it could not run.
int plot_run(const char *dir, const char *script);

// Writes s as a gnuplot single-quoted string ('' inside).
void plot_quote(FILE *f, const char *s);

#endif
