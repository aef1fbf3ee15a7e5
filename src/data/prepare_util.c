// prepare_util.c — see prepare_util.h.
#include "data/prepare_util.h"

#include <errno.h>
#include <glob.h>
#include <stdlib.h>
#include <string.h>

#include "util/common.h"

unsigned long long parse_uint(const char *opt, const char *v, unsigned long long lo, unsigned long long hi) {
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (!*v || *end || errno || v[0] == '-' || x < lo || x > hi)
        die_input("%s: expected an integer in [%llu, %llu], got '%s'", opt, lo, hi, v);
    return x;
}

double parse_frac(const char *opt, const char *v) {
    char *end;
    double x = strtod(v, &end);
    if (!*v || *end || !(x >= 0 && x < 1)) die_input("%s: expected a number in [0, 1), got '%s'", opt, v);
    return x;
}

size_t doc_end(const char *s, size_t n, size_t start, size_t doc_bytes) {
    if (!doc_bytes || n - start <= doc_bytes) return n;
    size_t hard = n - start > 4 * doc_bytes ? start + 4 * doc_bytes : n;
    for (size_t i = start + doc_bytes; i + 1 < hard; i++) {
        if (s[i] != '\n') continue;
        if (s[i + 1] == '\n') return i + 2;
        if (s[i + 1] == '\r' && i + 2 < n && s[i + 2] == '\n') return i + 3;
    }
    if (hard == n) return n;
    const char *nl = memchr(s + hard, '\n', n - hard);  // no paragraph break: next line end
    return nl ? (size_t)(nl - s) + 1 : n;
}

size_t strip_pos_tags(char *s, size_t n) {
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        if (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') { s[o++] = s[i++]; continue; }
        size_t j = i, slash = SIZE_MAX;
        while (j < n && s[j] != ' ' && s[j] != '\t' && s[j] != '\n' && s[j] != '\r') {
            if (s[j] == '/') slash = j;
            j++;
        }
        size_t keep = (slash != SIZE_MAX ? slash : j) - i;
        memmove(s + o, s + i, keep);
        o += keep;
        i = j;
    }
    if (o < n) s[o] = 0;
    return o;
}

int has_glob_match(const char *pattern) {
    glob_t g;
    int rc = glob(pattern, 0, NULL, &g);
    int found = rc == 0 && g.gl_pathc > 0;
    if (rc == 0) globfree(&g);
    return found;
}

// perm[] of the shuffle, stored only where it differs from the identity: an open-addressing map.
typedef struct { uint64_t *key, *val; size_t mask; } PermMap;
static size_t pm_slot(const PermMap *m, uint64_t k) {
    size_t i = (size_t)(k * 0x9E3779B97F4A7C15ULL >> 17) & m->mask;
    while (m->key[i] != UINT64_MAX && m->key[i] != k) i = (i + 1) & m->mask;
    return i;
}
static uint64_t pm_get(const PermMap *m, uint64_t k) {
    size_t i = pm_slot(m, k);
    return m->key[i] == k ? m->val[i] : k;
}
static void pm_set(PermMap *m, uint64_t k, uint64_t v) {
    size_t i = pm_slot(m, k);
    m->key[i] = k;
    m->val[i] = v;
}

unsigned char *pick_val_docs(uint64_t n, uint64_t n_val, uint64_t seed) {
    unsigned char *bits = xcalloc((size_t)(n / 8 + 1), 1);
    size_t cap = 16;
    while (cap < 4 * n_val + 16) cap *= 2;  // at most 2 entries per draw: load factor <= 1/2
    PermMap m = {xmalloc(cap * sizeof(uint64_t)), xmalloc(cap * sizeof(uint64_t)), cap - 1};
    memset(m.key, 0xff, cap * sizeof(uint64_t));
    Rng r;
    rng_seed(&r, seed);
    for (uint64_t i = 0; i < n_val; i++) {
        uint64_t j = i + rng_below(&r, n - i), vi = pm_get(&m, i), vj = pm_get(&m, j);
        pm_set(&m, i, vj);
        pm_set(&m, j, vi);
        bits[vj >> 3] |= (unsigned char)(1u << (vj & 7));
    }
    free(m.key);
    free(m.val);
    return bits;
}
