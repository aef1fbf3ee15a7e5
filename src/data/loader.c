// loader.c — windows over token shards, seeded per-epoch order, rank striding, resumable
// position; see loader.h for the scheme.
#include "data/loader.h"

#include <glob.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/shard.h"
#include "util/common.h"

enum { CACHE_N = 4 };

typedef struct { Shard *s; uint64_t first, n_windows; } LShard;
typedef struct { int sh; uint64_t c, used; int32_t *tok; } CacheEnt;  // sh < 0: empty

struct Loader {
    LShard *sh;
    int n_sh;
    int seq_len, batch, shuffle, rank, world;
    uint64_t seed, epoch, cursor, total, n_rank, tokens;
    CacheEnt cache[CACHE_N];
    uint64_t tick;
    unsigned char *comp, *raw;
    size_t comp_cap, raw_cap, tok_cap;
    int fd_shard;  // the one shard whose file descriptor is open, or -1
    int32_t *win;
};

static inline uint64_t mix(uint64_t x) {
    x ^= x >> 30; x *= 0xbf58476d1ce4e5b9ULL; x ^= x >> 27; x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

// Balanced Feistel network on 2*h bits (the smallest even width covering n), cycle-walked back
// into [0, n): a bijection on [0, n) computed in O(1) memory; about 4 walks at worst on average.
uint64_t feistel_permute(uint64_t x, uint64_t n, uint64_t key) {
    if (n <= 1) return x;
    int bits = 64 - __builtin_clzll(n - 1), h = (bits + 1) / 2;
    uint64_t mask = (1ULL << h) - 1;
    do {
        uint64_t l = x >> h, r = x & mask;
        for (int round = 0; round < 6; round++) {
            uint64_t f = mix(r ^ mix(key + 0x9e3779b97f4a7c15ULL * (uint64_t)(round + 1))) & mask;
            uint64_t t = l ^ f;
            l = r; r = t;
        }
        x = l << h | r;
    } while (x >= n);
    return x;
}

uint64_t loader_permute(const Loader *L, uint64_t epoch, uint64_t q) {
    if (!L->shuffle) return q;
    return feistel_permute(q, L->total, mix(L->seed ^ mix(epoch + 1)));
}

char **data_expand_spec(const char *spec, int *n) {
    char *s = xstrdup(spec), *save = NULL;
    char **out = NULL;
    int cnt = 0, cap = 0;
    for (char *tok = strtok_r(s, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ') tok++;
        if (!*tok) continue;
        glob_t g;
        int rc = glob(tok, GLOB_NOMAGIC, NULL, &g);  // a plain name comes back as-is, so "cannot open" names it
        if (rc == GLOB_NOMATCH) die_input("%s: no files match this pattern", tok);
        if (rc != 0) die_input("%s: cannot expand the pattern", tok);
        for (size_t i = 0; i < g.gl_pathc; i++) {
            if (cnt == cap) out = xrealloc(out, (size_t)(cap = cap * 2 + 8) * sizeof(char *));
            out[cnt++] = xstrdup(g.gl_pathv[i]);
        }
        globfree(&g);
    }
    free(s);
    if (!cnt) die_input("'%s': no shard files given", spec);
    *n = cnt;
    return out;
}

void data_free_spec(char **paths, int n) {
    for (int i = 0; i < n; i++) free(paths[i]);
    free(paths);
}

Loader *loader_open(const char *spec, int seq_len, int batch, uint64_t seed, int shuffle, int rank, int world) {
    if (seq_len < 1 || batch < 1 || world < 1 || rank < 0 || rank >= world)
        die_input("data loader: seq_len %d, batch %d, rank %d of %d; expected seq_len, batch >= 1 and 0 <= rank < world",
                  seq_len, batch, rank, world);
    Loader *L = xcalloc(1, sizeof *L);
    L->seq_len = seq_len; L->batch = batch; L->seed = seed; L->shuffle = shuffle;
    L->rank = rank; L->world = world; L->fd_shard = -1;
    char **paths = data_expand_spec(spec, &L->n_sh);
    L->sh = xcalloc((size_t)L->n_sh, sizeof(LShard));
    size_t maxc = 0, maxr = 0;
    for (int i = 0; i < L->n_sh; i++) {
        Shard *s = shard_open(paths[i]);
        shard_release_fd(s);  // bounded descriptors: reopened on demand
        shard_drop_index(s);  // bounded memory: index entries are read when needed
        if (i > 0 && (s->vocab != L->sh[0].s->vocab || s->tok_hash != L->sh[0].s->tok_hash))
            die_input("%s: vocab %u / tokenizer %016llx differ from %s (vocab %u / tokenizer %016llx); all shards must "
                      "come from one tokenizer", s->path, s->vocab, (unsigned long long)s->tok_hash, L->sh[0].s->path,
                      L->sh[0].s->vocab, (unsigned long long)L->sh[0].s->tok_hash);
        L->sh[i].s = s;
        L->sh[i].first = L->total;
        L->sh[i].n_windows = s->n_tokens > (uint64_t)seq_len ? (s->n_tokens - 1) / (uint64_t)seq_len : 0;
        L->total += L->sh[i].n_windows;
        L->tokens += s->n_tokens;
        if (shard_max_comp(s) > maxc) maxc = shard_max_comp(s);
        if ((size_t)s->chunk_tokens * s->token_bytes > maxr) maxr = (size_t)s->chunk_tokens * s->token_bytes;
        if (s->chunk_tokens > L->tok_cap) L->tok_cap = s->chunk_tokens;
    }
    L->n_rank = L->total / (uint64_t)world;
    if (L->n_rank == 0)
        die_input("%s: %llu tokens give %llu windows of %d+1 tokens; rank %d of %d would get none (use a shorter "
                  "seq_len or more data)", spec, (unsigned long long)L->tokens, (unsigned long long)L->total,
                  seq_len, rank, world);
    data_free_spec(paths, L->n_sh);
    L->comp = xmalloc(maxc); L->raw = xmalloc(maxr);
    L->comp_cap = maxc; L->raw_cap = maxr;
    for (int i = 0; i < CACHE_N; i++) { L->cache[i].sh = -1; L->cache[i].tok = xmalloc(L->tok_cap * sizeof(int32_t)); }
    L->win = xmalloc(((size_t)seq_len + 1) * sizeof(int32_t));
    return L;
}

void loader_close(Loader *L) {
    if (!L) return;
    for (int i = 0; i < L->n_sh; i++) shard_close(L->sh[i].s);
    for (int i = 0; i < CACHE_N; i++) free(L->cache[i].tok);
    free(L->sh); free(L->comp); free(L->raw); free(L->win); free(L);
}

int loader_vocab(const Loader *L) { return (int)L->sh[0].s->vocab; }
uint64_t loader_tok_hash(const Loader *L) { return L->sh[0].s->tok_hash; }
uint64_t loader_n_windows(const Loader *L) { return L->n_rank; }
uint64_t loader_total_windows(const Loader *L) { return L->total; }
uint64_t loader_total_tokens(const Loader *L) { return L->tokens; }

void loader_require(const Loader *L, int vocab, uint64_t tok_hash) {
    const Shard *s = L->sh[0].s;
    if (vocab > 0 && s->vocab != (uint32_t)vocab)
        die_input("%s: byte offset 16: shard vocab %u does not match the model's vocab %d; re-run `aoe prepare` "
                  "with that tokenizer or fix the config", s->path, s->vocab, vocab);
    if (tok_hash && s->tok_hash != tok_hash)
        die_input("%s: byte offset 24: shard was made with tokenizer %016llx, the model uses %016llx; re-run "
                  "`aoe prepare --tokenizer` with the model's tokenizer", s->path,
                  (unsigned long long)s->tok_hash, (unsigned long long)tok_hash);
}

// Chunk c of shard i through the small LRU cache.
static const int32_t *get_chunk(Loader *L, int i, uint64_t c) {
    CacheEnt *victim = &L->cache[0];
    for (int k = 0; k < CACHE_N; k++) {
        CacheEnt *e = &L->cache[k];
        if (e->sh == i && e->c == c) { e->used = ++L->tick; return e->tok; }
        if (e->used < victim->used) victim = e;
    }
    if (L->fd_shard >= 0 && L->fd_shard != i) shard_release_fd(L->sh[L->fd_shard].s);
    L->fd_shard = i;
    shard_read_chunk(L->sh[i].s, c, L->comp, L->raw, victim->tok);
    victim->sh = i; victim->c = c; victim->used = ++L->tick;
    return victim->tok;
}

void loader_window(Loader *L, uint64_t g, int32_t *tokens) {
    if (g >= L->total) die("loader_window: window %llu of %llu", (unsigned long long)g, (unsigned long long)L->total);
    int lo = 0, hi = L->n_sh - 1;  // last shard whose first window <= g, skipping empty ones
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (L->sh[mid].first <= g) lo = mid; else hi = mid - 1;
    }
    while (L->sh[lo].n_windows == 0 || g - L->sh[lo].first >= L->sh[lo].n_windows) lo++;
    Shard *s = L->sh[lo].s;
    uint64_t pos = (g - L->sh[lo].first) * (uint64_t)L->seq_len, need = (uint64_t)L->seq_len + 1, done = 0;
    while (done < need) {
        uint64_t p = pos + done, c = p / s->chunk_tokens, off = p % s->chunk_tokens;
        const int32_t *tok = get_chunk(L, lo, c);
        uint64_t take = shard_chunk_tokens(s, c) - off;
        if (take > need - done) take = need - done;
        memcpy(tokens + done, tok + off, take * sizeof(int32_t));
        done += take;
    }
}

double loader_bytes_per_token(Loader *L, const Tokenizer *tk, uint64_t nwin) {
    int S = L->seq_len, eot = tok_eot(tk);
    int32_t *w = xmalloc(sizeof(int32_t) * (S + 1));
    double bytes = 0;
    if (nwin > L->total) nwin = L->total;
    for (uint64_t g = 0; g < nwin; g++) {
        loader_window(L, g, w);
        for (int i = 1; i <= S; i++) {
            size_t len = 0;
            if (w[i] != eot) tok_piece(tk, w[i], &len);
            bytes += len;
        }
    }
    free(w);
    return bytes > 0 ? bytes / ((double)nwin * S) : NAN;
}

void loader_next(Loader *L, int32_t *x, int32_t *y) {
    int T = L->seq_len;
    for (int b = 0; b < L->batch; b++) {
        if (L->cursor >= L->n_rank) { L->epoch++; L->cursor = 0; }
        uint64_t q = L->cursor * (uint64_t)L->world + (uint64_t)L->rank;
        loader_window(L, loader_permute(L, L->epoch, q), L->win);
        memcpy(x + (size_t)b * T, L->win, (size_t)T * sizeof(int32_t));
        memcpy(y + (size_t)b * T, L->win + 1, (size_t)T * sizeof(int32_t));
        L->cursor++;
    }
}

// The saved cursor counts positions of the epoch's order consumed by all ranks together
// (cursor·world), so a run can resume on another number of ranks.
void loader_get_pos(const Loader *L, LoaderPos *p) {
    *p = (LoaderPos){L->epoch, L->cursor * (uint64_t)L->world, L->seed, L->total};
}

void loader_set_pos(Loader *L, const LoaderPos *p) {
    if (p->n_windows && p->n_windows != L->total)
        die_input("%s: the saved data position is for %llu windows but the data now has %llu; the training data "
                  "or seq_len changed since the checkpoint", L->sh[0].s->path, (unsigned long long)p->n_windows,
                  (unsigned long long)L->total);
    if (p->cursor > L->total)
        die_input("%s: saved data cursor %llu is past the %llu windows of an epoch", L->sh[0].s->path,
                  (unsigned long long)p->cursor, (unsigned long long)L->total);
    if (p->cursor % (uint64_t)L->world)
        die_input("%s: the saved data position (%llu windows into epoch %llu) is not a multiple of %d ranks; resume "
                  "with a number of ranks that divides it", L->sh[0].s->path, (unsigned long long)p->cursor,
                  (unsigned long long)p->epoch, L->world);
    L->epoch = p->epoch; L->cursor = p->cursor / (uint64_t)L->world; L->seed = p->seed;
    // fewer ranks-per-epoch positions than were consumed: that epoch is over for this rank count
    if (L->cursor > L->n_rank) L->cursor = L->n_rank;
}
