// staging.h — a set of output files that appear together or not at all. Each is written under
// "<path>.tmp.<pid>", closed with fsync, and renamed over its final name only by stage_commit();
// if the process exits first (die(), a failed write), an atexit hook removes every temp file, so
// a failed `aoe prepare` leaves no partial output behind.
#ifndef AOE_STAGING_H
#define AOE_STAGING_H

#include <stdio.h>

FILE *stage_open(const char *path);  // dies on failure
void stage_close(FILE *f);           // flush + fsync + close; dies on failure
void stage_commit(void);             // renames every closed file into place; dies on failure
void stage_abort(void);              // removes all temp files

#endif
