// test.h — one runner, a registry of named tests, assertion macros that print both operands and
// file:line. A test file writes `TEST(name) { ... }`; the constructor attribute registers it, so
// a new test file needs no edit anywhere else. CHECK failures do not abort the test; REQUIRE does.
#ifndef AOE_TEST_H
#define AOE_TEST_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

typedef void (*TestFn)(void);
void test_register(const char *name, TestFn fn);
extern int test_failures; // failures in the current test

#define TEST(name)                                                              \
    static void test_##name(void);                                              \
    __attribute__((constructor)) static void reg_##name(void) { test_register(#name, test_##name); } \
    static void test_##name(void)

#define CHECK(c) do { if (!(c)) { test_failures++; \
    fprintf(stderr, "  %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #c); } } while (0)
#define REQUIRE(c) do { if (!(c)) { test_failures++; \
    fprintf(stderr, "  %s:%d: REQUIRE(%s) failed\n", __FILE__, __LINE__, #c); return; } } while (0)
#define CHECK_EQ_INT(a, b) do { long long _a = (long long)(a), _b = (long long)(b); if (_a != _b) { \
    test_failures++; fprintf(stderr, "  %s:%d: %s == %s failed: %lld vs %lld\n", __FILE__, __LINE__, \
    #a, #b, _a, _b); } } while (0)
#define CHECK_NEAR(a, b, tol) do { double _a = (a), _b = (b); if (!(fabs(_a - _b) <= (tol)) ) { \
    test_failures++; fprintf(stderr, "  %s:%d: |%s - %s| <= %g failed: %.9g vs %.9g\n", __FILE__, \
    __LINE__, #a, #b, (double)(tol), _a, _b); } } while (0)
#define CHECK_STR_CONTAINS(hay, needle) do { const char *_h = (hay), *_n = (needle); \
    if (!_h || !strstr(_h, _n)) { test_failures++; fprintf(stderr, \
    "  %s:%d: expected \"%s\" in: %s\n", __FILE__, __LINE__, _n, _h ? _h : "(null)"); } } while (0)

// Relative error between two arrays: max_i |a-b| / max(|a|,|b|, floor). Used by gradient checks.
double max_rel_err(const float *a, const float *b, long n, double floor);

// Runs a shell command; captures stdout and stderr (caller frees); returns the exit status.
int run_capture(const char *cmd, char **out, char **err);
// The aoe binary under test (env AOE_BIN, default ./aoe) and a fresh scratch directory.
const char *aoe_bin(void);
// Runs `$AOE_BIN <args>` (printf-style); stdout/stderr into *out/*err (caller frees; NULL = drop).
int aoe_run(char **out, char **err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
const char *test_tmpdir(void);
// The numbers after each "key": in a JSONL file (e.g. the losses of metrics.jsonl), in order, at
// most cap; 0 if the file is absent.
int test_jsonl_numbers(const char *path, const char *key, double *v, int cap);
// aoe_bin() as an absolute path (for commands that change directory).
const char *test_aoe_abs(void);
// Runs a printf-formatted shell command like run_capture (test_fixtures.c).
int test_shf(char **out, char **err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
// Token shards and tokenizer (vocab 300, train + val) made once per test process by `aoe prepare`
// in test_tmpdir()/ckdata from a generated text (test_fixtures.c).
const char *test_tiny_data(void);
// A run directory trained once per test process with `aoe train` on test_tiny_data (MoE, 4
// experts, d_model 16, seq_len 16, 4 steps; checkpoint ckpt-4.aoec), or NULL if training failed.
const char *test_tiny_run(void);

// Gaussian array [n] with standard deviation sd, seeded (test_fixtures.c).
float *test_randn(long n, float sd, uint64_t seed);


#endif
