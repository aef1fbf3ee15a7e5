// test_main.c — the runner: runs every registered test (or those whose name contains argv[1]) and
// ends with the line "N passed, N failed"; exits non-zero on any failure.
#include "test.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/common.h"

typedef struct { const char *name; TestFn fn; } Test;
static Test tests[1024];
static int n_tests;
int test_failures;

void test_register(const char *name, TestFn fn) {
    if (n_tests < 1024) tests[n_tests++] = (Test){name, fn};
}

double max_rel_err(const float *a, const float *b, long n, double floor) {
    double m = 0;
    for (long i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]), s = fmax(fmax(fabs(a[i]), fabs(b[i])), floor);
        if (d / s > m) m = d / s;
    }
    return m;
}

static char *slurp_fd(FILE *f) {
    size_t cap = 4096, n = 0;
    char *b = malloc(cap);
    for (size_t got; (got = fread(b + n, 1, cap - n - 1, f)) > 0;) {
        n += got;
        if (n + 1 >= cap) b = realloc(b, cap *= 2);
    }
    b[n] = 0;
    return b;
}

int run_capture(const char *cmd, char **out, char **err) {
    char errpath[512], full[8192];
    snprintf(errpath, sizeof errpath, "%s/stderr.%d", test_tmpdir(), (int)getpid());
    snprintf(full, sizeof full, "%s 2>%s", cmd, errpath);
    FILE *p = popen(full, "r");
    if (!p) return -1;
    char *o = slurp_fd(p);
    int st = pclose(p);
    FILE *e = fopen(errpath, "r");
    char *es = e ? slurp_fd(e) : strdup("");
    if (e) fclose(e);
    unlink(errpath);
    if (out) *out = o; else free(o);
    if (err) *err = es; else free(es);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

const char *aoe_bin(void) {
    const char *b = getenv("AOE_BIN");
    return b ? b : "./aoe";
}

int aoe_run(char **out, char **err, const char *fmt, ...) {
    char args[4096], cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "%s %s", aoe_bin(), args);
    return run_capture(cmd, out, err);
}

int test_jsonl_numbers(const char *path, const char *key, double *v, int cap) {
    if (!file_exists(path)) return 0;  // read_file would end the test runner
    size_t len, k;
    char pat[80], *s = read_file(path, &len);
    snprintf(pat, sizeof pat, "\"%s\":", key);
    k = strlen(pat);
    int n = 0;
    for (char *p = s; (p = strstr(p, pat)) && n < cap; p += k) v[n++] = atof(p + k);
    free(s);
    return n;
}

static char tmpdir[256];
const char *test_tmpdir(void) {
    if (!tmpdir[0]) {
        snprintf(tmpdir, sizeof tmpdir, "/tmp/aoe-test-XXXXXX");
        if (!mkdtemp(tmpdir)) { perror("mkdtemp"); exit(1); }
    }
    return tmpdir;
}

static int cmp_test(const void *a, const void *b) { return strcmp(((const Test *)a)->name, ((const Test *)b)->name); }

int main(int argc, char **argv) {
    const char *filter = argc > 1 ? argv[1] : NULL;
    int passed = 0, failed = 0;
    qsort(tests, n_tests, sizeof(Test), cmp_test);
    for (int i = 0; i < n_tests; i++) {
        if (filter && !strstr(tests[i].name, filter)) continue;
        test_failures = 0;
        double t0 = now_sec();
        fprintf(stderr, "%-44s ", tests[i].name);
        fflush(stderr);
        tests[i].fn();
        if (test_failures) { failed++; fprintf(stderr, "FAIL\n"); }
        else { passed++; fprintf(stderr, "ok (%.2fs)\n", now_sec() - t0); }
    }
    const char *keep = getenv("AOE_TEST_KEEP_TMP");  // debugging: leave the runs for a look
    if (tmpdir[0] && keep && *keep) fprintf(stderr, "test files kept in %s\n", tmpdir);
    else if (tmpdir[0]) { char cmd[300]; snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir); if (system(cmd)) {} }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
