// test_runs.h — helpers for tests that drive `aoe train` (test_runs.c).
#ifndef AOE_TEST_RUNS_H
#define AOE_TEST_RUNS_H

#include <stddef.h>

char *rt_tmp_path(const char *name);                        // <tmpdir>/name (8 rotating buffers)
char *rt_slurp(const char *path, size_t *n);                // whole file, NUL-terminated (NULL if absent)
void rt_spit(const char *path, const void *b, size_t n);    // writes a file
int rt_sh(const char *cmd, char **out, char **err);         // run_capture
const char *rt_data_dir(void);                              // the tiny fixture data
// A dense 2-layer fp32 config on the tiny data: 30 steps, checkpoints every 5, keep 2, eval every 10.
const char *rt_config_file(void);
const char *rt_abs_bin(void);
// `aoe train ARGS` in the scratch directory with OMP_NUM_THREADS=1 and env prefixed (e.g.
// "AOE_TEST_KILL_AT_STEP=7"); returns the exit status.
int rt_train(const char *env, const char *args, char **out, char **err);
// A fresh run of rt_config_file into run.out=run with extra overrides; 0 on success.
int rt_fresh_run(const char *run, const char *extra);
char *rt_rel(const char *run, const char *file);            // <tmpdir>/run/file (4 rotating buffers)

#endif
