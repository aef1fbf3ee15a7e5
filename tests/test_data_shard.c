// test_data_shard.c — shard write/read round trips (16- and 32-bit tokens) and the loader:
// window contents, per-epoch permutation, determinism, save/restore of the position, rank
// striding, multi-shard specs.
#include <stdlib.h>
#include <string.h>

#include "data/loader.h"
#include "data/shard.h"
#include "data/staging.h"
#include "test.h"
#include "util/common.h"

// Writes a shard of `ndocs` random documents; returns the token stream (with EOTs) it holds.
static int32_t *make_shard(const char *path, int vocab, int ndocs, int chunk, uint64_t seed, size_t *n_out,
                           uint64_t hash) {
    Rng r;
    rng_seed(&r, seed);
    ShardWriter *w = shard_create(path, vocab, hash, 0, chunk, 6);
    size_t cap = 1024, n = 0;
    int32_t *all = xmalloc(cap * sizeof(int32_t)), *doc = xmalloc(5000 * sizeof(int32_t));
    for (int d = 0; d < ndocs; d++) {
        int len = (int)rng_below(&r, 3000);
        for (int i = 0; i < len; i++) doc[i] = 1 + (int32_t)rng_below(&r, (uint64_t)vocab - 1);
        shard_add_doc(w, doc, (size_t)len);
        while (n + (size_t)len + 1 > cap) all = xrealloc(all, (cap *= 2) * sizeof(int32_t));
        memcpy(all + n, doc, (size_t)len * sizeof(int32_t));
        n += (size_t)len;
        all[n++] = 0;
    }
    shard_finish(w);
    stage_commit();
    free(doc);
    *n_out = n;
    return all;
}

static void shard_roundtrip(int vocab) {
    char path[512];
    snprintf(path, sizeof path, "%s/rt%d.shard", test_tmpdir(), vocab);
    size_t n;
    int32_t *want = make_shard(path, vocab, 40, 1000, 3, &n, 0x1234);
    Shard *s = shard_open(path);
    CHECK_EQ_INT(s->vocab, vocab);
    CHECK_EQ_INT(s->token_bytes, vocab <= 65536 ? 2 : 4);
    CHECK_EQ_INT(s->n_tokens, n);
    CHECK_EQ_INT(s->n_docs, 40);
    CHECK_EQ_INT(s->n_chunks, (n + 999) / 1000);
    CHECK(s->tok_hash == 0x1234);
    int32_t *got = xmalloc(n * sizeof(int32_t));
    unsigned char *comp = xmalloc(shard_max_comp(s)), *raw = xmalloc(1000 * 4);
    size_t at = 0;
    for (uint64_t c = 0; c < s->n_chunks; c++) { shard_read_chunk(s, c, comp, raw, got + at); at += shard_chunk_tokens(s, c); }
    CHECK_EQ_INT(at, n);
    CHECK(!memcmp(got, want, n * sizeof(int32_t)));
    uint64_t *docs = shard_read_docs(s);
    CHECK_EQ_INT(docs[0], 0);
    int ok = 1;  // every document starts right after an EOT
    for (uint64_t d = 1; d < s->n_docs; d++) ok &= want[docs[d] - 1] == 0;
    CHECK(ok);
    shard_verify(s);
    free(docs); free(got); free(comp); free(raw); free(want);
    shard_close(s);
}

TEST(data_shard_roundtrip_16bit) { shard_roundtrip(4096); }
TEST(data_shard_roundtrip_32bit) { shard_roundtrip(100000); }

TEST(data_shard_empty_and_staging) {
    char path[512];
    snprintf(path, sizeof path, "%s/staged.shard", test_tmpdir());
    ShardWriter *w = shard_create(path, 300, 1, 0, 64, 6);
    shard_finish(w);
    CHECK(!file_exists(path));  // nothing visible before the commit
    stage_commit();
    CHECK(file_exists(path));
    Shard *s = shard_open(path);
    CHECK_EQ_INT(s->n_tokens, 0);
    CHECK_EQ_INT(s->file_size, SHARD_HEADER);
    shard_verify(s);
    shard_close(s);
    snprintf(path, sizeof path, "%s/aborted.shard", test_tmpdir());
    w = shard_create(path, 300, 1, 0, 64, 6);
    shard_finish(w);
    stage_abort();
    CHECK(!file_exists(path));
}

// Three shards with different sizes; returns the spec and their streams.
typedef struct { char spec[2048]; int32_t *tok[3]; size_t n[3]; } Data;
static void make_data(Data *D, const char *tag) {
    D->spec[0] = 0;
    int docs[3] = {30, 7, 20};
    for (int i = 0; i < 3; i++) {
        char p[512];
        snprintf(p, sizeof p, "%s/%s-%d.shard", test_tmpdir(), tag, i);
        D->tok[i] = make_shard(p, 5000, docs[i], 512, 100 + (uint64_t)i, &D->n[i], 77);
        strcat(D->spec, i ? "," : "");
        strcat(D->spec, p);
    }
}
static void free_data(Data *D) { for (int i = 0; i < 3; i++) free(D->tok[i]); }

TEST(data_loader_windows_match_stream) {
    Data D;
    make_data(&D, "win");
    int T = 100, B = 4;
    Loader *L = loader_open(D.spec, T, B, 1, 0, 0, 1);
    uint64_t want = 0;
    for (int i = 0; i < 3; i++) want += (D.n[i] - 1) / (uint64_t)T;
    CHECK_EQ_INT(loader_total_windows(L), want);
    CHECK_EQ_INT(loader_n_windows(L), want);
    CHECK_EQ_INT(loader_vocab(L), 5000);
    CHECK(loader_tok_hash(L) == 77);
    int32_t *x = xmalloc((size_t)B * T * 4), *y = xmalloc((size_t)B * T * 4);
    // Unshuffled: windows go shard by shard, stride T, y is x shifted by one.
    int bad = 0, sh = 0;
    uint64_t j = 0;
    for (uint64_t g = 0; g + B <= want; g += B) {
        loader_next(L, x, y);
        for (int b = 0; b < B; b++, j++) {
            while (j >= (D.n[sh] - 1) / (uint64_t)T) { j = 0; sh++; }
            const int32_t *src = D.tok[sh] + j * T;
            bad += memcmp(x + b * T, src, (size_t)T * 4) != 0 || memcmp(y + b * T, src + 1, (size_t)T * 4) != 0;
        }
    }
    CHECK_EQ_INT(bad, 0);
    loader_close(L);
    // Windows longer than a chunk (1500 > 512 tokens) span several chunks.
    int T2 = 1500;
    L = loader_open(D.spec, T2, 1, 1, 0, 0, 1);
    int32_t *w = xmalloc(((size_t)T2 + 1) * 4);
    bad = 0;
    for (uint64_t g = 0; g < (D.n[0] - 1) / (uint64_t)T2; g++) {
        loader_window(L, g, w);
        bad += memcmp(w, D.tok[0] + g * T2, ((size_t)T2 + 1) * 4) != 0;
    }
    CHECK_EQ_INT(bad, 0);
    loader_close(L);
    free(w); free(x); free(y); free_data(&D);
}

TEST(data_loader_feistel_is_bijection) {
    uint64_t ns[] = {1, 2, 3, 5, 64, 1000, 4097, 65537};
    for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
        uint64_t n = ns[k];
        unsigned char *seen = xcalloc(n, 1);
        int ok = 1;
        uint64_t fixed = 0;
        for (uint64_t i = 0; i < n; i++) {
            uint64_t p = feistel_permute(i, n, 12345);
            ok &= p < n && !seen[p];
            if (p < n) seen[p] = 1;
            fixed += p == i;
        }
        CHECK(ok);
        if (n >= 1000) CHECK(fixed < n / 50);  // actually shuffled
        free(seen);
    }
    int differ = 0;
    for (uint64_t i = 0; i < 100; i++) differ += feistel_permute(i, 1000, 1) != feistel_permute(i, 1000, 2);
    CHECK(differ > 90);
}

// Records `steps` batches of inputs.
static int32_t *record(Loader *L, int steps, int B, int T) {
    int32_t *all = xmalloc((size_t)steps * B * T * 4), *y = xmalloc((size_t)B * T * 4);
    for (int s = 0; s < steps; s++) loader_next(L, all + (size_t)s * B * T, y);
    free(y);
    return all;
}

TEST(data_loader_shuffle_deterministic_and_resumable) {
    Data D;
    make_data(&D, "shuf");
    int T = 64, B = 3;
    Loader *a = loader_open(D.spec, T, B, 9, 1, 0, 1), *b = loader_open(D.spec, T, B, 9, 1, 0, 1),
           *c = loader_open(D.spec, T, B, 10, 1, 0, 1);
    uint64_t N = loader_n_windows(a);
    int steps = (int)(N / B) * 2 + 5;  // crosses two epoch boundaries
    int32_t *ra = record(a, steps, B, T), *rb = record(b, steps, B, T), *rc = record(c, steps, B, T);
    size_t sz = (size_t)steps * B * T * 4;
    CHECK(!memcmp(ra, rb, sz));  // same seed, same stream
    CHECK(memcmp(ra, rc, sz));   // another seed, another order
    // Epoch 1 is a permutation of all windows, and a different order than epoch 0.
    unsigned char *seen = xcalloc(N, 1);
    int perm_ok = 1, same_order = 0;
    for (uint64_t q = 0; q < N; q++) {
        uint64_t g = loader_permute(a, 1, q);
        perm_ok &= g < N && !seen[g];
        if (g < N) seen[g] = 1;
        same_order += g == loader_permute(a, 0, q);
    }
    CHECK(perm_ok);
    CHECK(same_order < (int)(N / 10));
    free(seen);
    // Batches are the permuted windows: check the first batch of epoch 0 by content.
    int32_t *w = xmalloc(((size_t)T + 1) * 4);
    loader_window(a, loader_permute(a, 0, 1), w);
    CHECK(!memcmp(ra + T, w, (size_t)T * 4));
    // Save the position mid-way (inside epoch 1), restore into a fresh loader: identical continuation.
    Loader *d = loader_open(D.spec, T, B, 9, 1, 0, 1);
    int k = (int)(N / B) + 3;
    int32_t *skip = record(d, k, B, T);
    LoaderPos pos;
    loader_get_pos(d, &pos);
    CHECK_EQ_INT(pos.epoch, 1);
    CHECK_EQ_INT(pos.seed, 9);
    CHECK_EQ_INT(pos.n_windows, N);
    Loader *e = loader_open(D.spec, T, B, 1234 /* replaced by the saved seed */, 1, 0, 1);
    loader_set_pos(e, &pos);
    int32_t *re = record(e, steps - k, B, T);
    CHECK(!memcmp(re, ra + (size_t)k * B * T, (size_t)(steps - k) * B * T * 4));
    free(skip); free(re); free(w); free(ra); free(rb); free(rc);
    loader_close(a); loader_close(b); loader_close(c); loader_close(d); loader_close(e);
    free_data(&D);
}

TEST(data_loader_ranks_partition_each_epoch) {
    Data D;
    make_data(&D, "rank");
    int T = 50, W = 3;
    Loader *all = loader_open(D.spec, T, 1, 5, 1, 0, 1);
    uint64_t N = loader_total_windows(all), per = N / W;
    unsigned char *hit = xcalloc(N, 1);
    int ok = 1;
    int32_t *x = xmalloc((size_t)T * 4), *y = xmalloc((size_t)T * 4), *w = xmalloc(((size_t)T + 1) * 4);
    for (int r = 0; r < W; r++) {
        Loader *L = loader_open(D.spec, T, 1, 5, 1, r, W);
        CHECK_EQ_INT(loader_n_windows(L), per);
        for (uint64_t i = 0; i < per; i++) {
            uint64_t g = loader_permute(L, 0, i * W + (uint64_t)r);
            ok &= !hit[g];
            hit[g] = 1;
            loader_next(L, x, y);
            loader_window(all, g, w);
            ok &= !memcmp(x, w, (size_t)T * 4);
        }
        loader_close(L);
    }
    uint64_t covered = 0;
    for (uint64_t g = 0; g < N; g++) covered += hit[g];
    CHECK(ok);
    CHECK_EQ_INT(covered, per * W);  // disjoint, and only the N % W remainder is skipped
    free(hit); free(x); free(y); free(w);
    loader_close(all);
    free_data(&D);
}

TEST(data_loader_glob_spec) {
    Data D;
    make_data(&D, "glob");
    char pat[600];
    snprintf(pat, sizeof pat, "%s/glob-*.shard", test_tmpdir());
    Loader *a = loader_open(pat, 32, 2, 1, 0, 0, 1), *b = loader_open(D.spec, 32, 2, 1, 0, 0, 1);
    CHECK_EQ_INT(loader_total_windows(a), loader_total_windows(b));
    CHECK_EQ_INT(loader_total_tokens(a), D.n[0] + D.n[1] + D.n[2]);
    int n;
    char **p = data_expand_spec(pat, &n);
    CHECK_EQ_INT(n, 3);
    CHECK(n == 3 && strstr(p[0], "glob-0.shard") && strstr(p[2], "glob-2.shard"));
    data_free_spec(p, n);
    loader_close(a); loader_close(b);
    free_data(&D);
}
