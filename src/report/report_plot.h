// report_plot.h — the figures of `aoe report` (report_plot.c), drawn from the report model.
#ifndef AOE_REPORT_PLOT_H
#define AOE_REPORT_PLOT_H

#include "report/report_model.h"

// Writes the plots' data files and report.gp into dir and runs gnuplot there. Returns gnuplot's
// status (0 ok) and lists the PNG names written in png[] (*npng).
int report_plots(const Report *R, const char *dir, const char **png, int *npng);

#endif
