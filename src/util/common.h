// common.h — the small toolbox every layer uses: checked allocation and I/O, error reporting in
// the one-line "file: place: what was expected" form, atomic file replacement, a seeded RNG,
// timing and a progress line. Nothing here knows about models or data.
#ifndef AOE_COMMON_H
#define AOE_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

// Exit codes: 2 = bad input or usage (the user can fix it), 1 = runtime failure (I/O, memory).
// 75 (EX_TEMPFAIL) = `aoe train` stopped by SIGINT/SIGTERM after saving a checkpoint: resumable.
enum { EXIT_BAD_INPUT = 2, EXIT_RUNTIME = 1, EXIT_STOPPED = 75 };

// Prints "aoe: <formatted message>" on stderr and exits with `code`.
_Noreturn void die_code(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define die(...) die_code(EXIT_RUNTIME, __VA_ARGS__)
#define die_input(...) die_code(EXIT_BAD_INPUT, __VA_ARGS__)
// Called by die_code just before exit (NULL = none): dist/ sets it so a rank that dies takes the
// whole MPI job down instead of leaving the others waiting; the fuzz harnesses (tests/fuzz/fuzz.h)
// set one that longjmps back, so a process survives many bad inputs.
extern void (*die_hook)(int code);
void warnf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

// Checked allocation; on failure names the call site and the size asked for.
void *xmalloc_at(size_t n, const char *file, int line);
void *xcalloc_at(size_t n, size_t size, const char *file, int line);
void *xrealloc_at(void *p, size_t n, const char *file, int line);
#define xmalloc(n) xmalloc_at((n), __FILE__, __LINE__)
#define xcalloc(n, s) xcalloc_at((n), (s), __FILE__, __LINE__)
#define xrealloc(p, n) xrealloc_at((p), (n), __FILE__, __LINE__)
// 64-byte aligned float buffer (for SIMD and BLIS), zeroed.
float *falloc(size_t n);
char *xstrdup(const char *s);

// Reads a whole file; exits with a clear message if it is missing, a directory or unreadable.
// The buffer is NUL-terminated; *len gets the byte count.
char *read_file(const char *path, size_t *len);
int is_directory(const char *path);
int file_exists(const char *path);
char *path_join(const char *dir, const char *name);  // "dir/name", malloc'd
// Is `word` one of the space-separated words of `list` (NULL = none)?
int word_in(const char *list, const char *word);
int mkdir_p(const char *path); // 0 on success
// Makes every comma-separated item of `in` absolute against the current directory ("./" dropped;
// absolute items kept; "" stays ""), into out[cap]. Returns 0, or -1 if it does not fit.
int abs_path_list(const char *in, char *out, size_t cap);

// Atomic replacement: write to "<path>.tmp.<pid>", fsync, rename over <path>, fsync directory.
// A failed write leaves the previous <path> untouched and the temp file removed.
typedef struct {
    FILE *f;
    char *path, *tmp;
} AtomicFile;
int atomic_open(AtomicFile *af, const char *path);   // 0 ok, -1 (errno set)
int atomic_commit(AtomicFile *af);                    // 0 ok, -1: temp removed, target intact
void atomic_abort(AtomicFile *af);
// Convenience: writes a whole buffer atomically; dies with a message on failure.
void write_file_atomic(const char *path, const void *buf, size_t len);

// Deterministic RNG (xoshiro256**, seeded by splitmix64). State is plain data so checkpoints can
// save it.
typedef struct { uint64_t s[4]; } Rng;
void rng_seed(Rng *r, uint64_t seed);
uint64_t rng_next(Rng *r);
double rng_uniform(Rng *r);              // [0, 1)
float rng_normal(Rng *r);                // N(0, 1), Box-Muller
uint64_t rng_below(Rng *r, uint64_t n);  // uniform in [0, n)

double now_sec(void);
long peak_rss_kb(void);

// Progress line on stderr (only when stderr is a terminal or AOE_PROGRESS=1): done/total units,
// rate and ETA, rewritten at most every 0.5 s.
typedef struct {
    const char *what, *unit;
    double total, t0, last;
    int enabled;
} Progress;
void progress_start(Progress *p, const char *what, const char *unit, double total);
void progress_update(Progress *p, double done);
void progress_end(Progress *p, double done);

// Growable string: bprintf appends (Buf b = {0}; ...; free(b.s)).
typedef struct { char *s; size_t n, cap; } Buf;
void bprintf(Buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// FNV-1a 64-bit hash (identities of tokenizers and configs).
uint64_t hash64(const void *data, size_t n, uint64_t h);
#define HASH64_INIT 1469598103934665603ULL

#endif
