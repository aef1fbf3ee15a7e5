// report_read.h — builds the report model (report_model.h) from run directories: config.json,
// metrics.jsonl, load.jsonl, model.json and eval results (report_eval.h); then the seed groups and the table columns.
// Reads no shards, no tokenizer, no checkpoint. Dies (exit 2) naming file and line on bad input.
#ifndef AOE_REPORT_READ_H
#define AOE_REPORT_READ_H

#include "report/report_model.h"

// evdirs: the --eval directories (report_eval.h).
void report_read(Report *R, const char *const *dirs, int ndirs, const char *const *evdirs, int nev);

#endif
