// common.c — see common.h.
#include "util/common.h"
#include "util/mem.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

void (*die_hook)(int code);

void die_code(int code, const char *fmt, ...) {
    va_list ap;
    fflush(stdout);
    fputs("aoe: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    if (die_hook) die_hook(code);
    exit(code);
}

void warnf(const char *fmt, ...) {
    va_list ap;
    fputs("aoe: warning: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

void *xmalloc_at(size_t n, const char *file, int line) {
    if (mem_dry) return mem_dry_alloc(n);
    void *p = malloc(n ? n : 1);
    if (!p) die("out of memory allocating %zu bytes (%s:%d); reduce batch or model size", n, file, line);
    return p;
}
void *xcalloc_at(size_t n, size_t size, const char *file, int line) {
    if (mem_dry) return mem_dry_alloc(size && n > SIZE_MAX / size ? SIZE_MAX : n * size);
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) die("out of memory allocating %zu x %zu bytes (%s:%d)", n, size, file, line);
    return p;
}
void *xrealloc_at(void *q, size_t n, const char *file, int line) {
    if (mem_dry) return mem_dry_realloc(q, n);
    void *p = realloc(q, n ? n : 1);
    if (!p) die("out of memory reallocating %zu bytes (%s:%d)", n, file, line);
    return p;
}
float *falloc(size_t n) {
    void *p = NULL;
    size_t bytes = ((n * sizeof(float)) + 63) & ~(size_t)63;
    if (mem_dry) return mem_dry_alloc(n > SIZE_MAX / 8 ? SIZE_MAX : bytes);  // reserved, zero, untouched
    if (posix_memalign(&p, 64, bytes ? bytes : 64)) die("out of memory allocating %zu floats", n);
    memset(p, 0, bytes);
    return p;
}
char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = xmalloc(n);
    memcpy(d, s, n);
    return d;
}

int is_directory(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}
int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

int word_in(const char *list, const char *word) {
    size_t n = strlen(word);
    for (const char *p = list; p && *p;) {
        while (*p == ' ') p++;
        size_t k = strcspn(p, " ");
        if (k == n && !strncmp(p, word, n)) return 1;
        p += k;
    }
    return 0;
}

char *path_join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = xmalloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

int abs_path_list(const char *in, char *out, size_t cap) {
    char cwd[4096];
    if (!getcwd(cwd, sizeof cwd)) return -1;
    Buf b = {0};
    for (const char *p = in; *p;) {
        size_t n = strcspn(p, ",");
        const char *item = p;
        while (n >= 2 && item[0] == '.' && item[1] == '/') { item += 2; n -= 2; }
        if (p != in) bprintf(&b, ",");
        if (n && item[0] != '/') bprintf(&b, "%s/", cwd);
        bprintf(&b, "%.*s", (int)n, item);
        p = item + n + (item[n] == ',');
    }
    int ok = b.n < cap;
    if (ok) snprintf(out, cap, "%s", b.s ? b.s : "");
    free(b.s);
    return ok ? 0 : -1;
}

char *read_file(const char *path, size_t *len) {
    if (is_directory(path)) die_input("%s: is a directory, expected a file", path);
    FILE *f = fopen(path, "rb");
    if (!f) die_input("%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = xmalloc(cap);
    for (;;) {
        if (n + 1 >= cap) buf = xrealloc(buf, cap *= 2);
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) break;
    }
    if (ferror(f)) die_input("%s: read error at byte %zu: %s", path, n, strerror(errno));
    fclose(f);
    buf[n] = 0;
    if (len) *len = n;
    return buf;
}

int mkdir_p(const char *path) {
    char *p = xstrdup(path);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/') continue;
        *s = 0;
        if (mkdir(p, 0777) && errno != EEXIST) { free(p); return -1; }
        *s = '/';
    }
    int rc = (mkdir(p, 0777) && errno != EEXIST) ? -1 : 0;
    if (rc == 0 && !is_directory(p)) { errno = ENOTDIR; rc = -1; }
    free(p);
    return rc;
}

int atomic_open(AtomicFile *af, const char *path) {
    size_t n = strlen(path) + 32;
    af->path = xstrdup(path);
    af->tmp = xmalloc(n);
    snprintf(af->tmp, n, "%s.tmp.%d", path, (int)getpid());
    af->f = fopen(af->tmp, "wb");
    if (!af->f) { free(af->path); free(af->tmp); af->path = af->tmp = NULL; return -1; }
    return 0;
}

void atomic_abort(AtomicFile *af) {
    if (af->f) fclose(af->f);
    if (af->tmp) unlink(af->tmp);
    free(af->path); free(af->tmp);
    af->f = NULL; af->path = af->tmp = NULL;
}

int atomic_commit(AtomicFile *af) {
    int err = 0;
    if (fflush(af->f) != 0 || ferror(af->f)) err = errno ? errno : EIO;
    if (!err && fsync(fileno(af->f)) != 0) err = errno;
    if (fclose(af->f) != 0 && !err) err = errno ? errno : EIO;
    af->f = NULL;
    if (!err && rename(af->tmp, af->path) != 0) err = errno;
    if (err) { unlink(af->tmp); free(af->path); free(af->tmp); af->path = af->tmp = NULL; errno = err; return -1; }
    char *d = xstrdup(af->path);  // make the rename itself durable
    int fd = open(dirname(d), O_RDONLY);
    if (fd >= 0) { fsync(fd); close(fd); }
    free(d); free(af->path); free(af->tmp);
    af->path = af->tmp = NULL;
    return 0;
}

void write_file_atomic(const char *path, const void *buf, size_t len) {
    AtomicFile af;
    if (atomic_open(&af, path)) die("%s: cannot create: %s", path, strerror(errno));
    if (fwrite(buf, 1, len, af.f) != len) {
        int e = errno;
        atomic_abort(&af);
        die("%s: write failed: %s (previous file left intact)", path, strerror(e));
    }
    if (atomic_commit(&af)) die("%s: write failed: %s (previous file left intact)", path, strerror(errno));
}

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
void rng_seed(Rng *r, uint64_t seed) {
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
}
static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
uint64_t rng_next(Rng *r) {
    uint64_t *s = r->s, res = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3]; s[2] ^= t; s[3] = rotl(s[3], 45);
    return res;
}
double rng_uniform(Rng *r) { return (rng_next(r) >> 11) * 0x1.0p-53; }
float rng_normal(Rng *r) {
    double u1 = rng_uniform(r), u2 = rng_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
}
uint64_t rng_below(Rng *r, uint64_t n) { return n ? rng_next(r) % n : 0; }

double now_sec(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}
long peak_rss_kb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

void progress_start(Progress *p, const char *what, const char *unit, double total) {
    const char *env = getenv("AOE_PROGRESS");
    p->what = what; p->unit = unit; p->total = total;
    p->t0 = now_sec(); p->last = 0;
    p->enabled = env ? atoi(env) != 0 : isatty(2);
}
static void progress_print(Progress *p, double done, int final) {
    double el = now_sec() - p->t0, rate = el > 0 ? done / el : 0;
    double eta = (rate > 0 && p->total > done) ? (p->total - done) / rate : 0;
    fprintf(stderr, "\r%s: %.0f/%.0f %s (%.0f%%)  %.2f %s/s  ETA %.0fs%s", p->what, done, p->total, p->unit,
            p->total > 0 ? 100.0 * done / p->total : 100.0, rate, p->unit, eta, final ? "\n" : "   ");
    fflush(stderr);
}
void progress_update(Progress *p, double done) {
    if (!p->enabled) return;
    double t = now_sec();
    if (t - p->last < 0.5) return;
    p->last = t;
    progress_print(p, done, 0);
}
void progress_end(Progress *p, double done) {
    if (p->enabled) progress_print(p, done, 1);
}

uint64_t hash64(const void *data, size_t n, uint64_t h) {
    const unsigned char *b = data;
    for (size_t i = 0; i < n; i++) { h ^= b[i]; h *= 1099511628211ULL; }
    return h;
}

void bprintf(Buf *b, const char *fmt, ...) {
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        size_t room = b->cap - b->n;
        int k = vsnprintf(b->s ? b->s + b->n : NULL, b->s ? room : 0, fmt, ap);
        va_end(ap);
        if (k < 0) return;
        if (b->s && (size_t)k < room) { b->n += k; return; }
        b->cap = (b->cap + k + 1) * 2;
        b->s = xrealloc(b->s, b->cap);
    }
}
