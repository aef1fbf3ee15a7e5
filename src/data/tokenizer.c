// tokenizer.c — byte-level BPE inference: pre-tokenisation, merge lookup, cached encoding,
// decoding, and the tokenizer file (save/load). Training lives in bpe_train.c.
#include "data/tokenizer.h"

#include <limits.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "util/common.h"

#define TOK_MAGIC "AOETOKEN"
enum { TOK_VERSION = 1, TOK_PRETOK = 1, TOK_HDR = 32 };
static const char EOT_TEXT[] = "<|endoftext|>";

struct Tokenizer {
    int vocab, n_merges;
    int32_t (*merges)[2];
    int32_t *bytepair;             // [65536]: merge id of a pair of raw bytes, or -1
    uint64_t *mkeys;               // open-addressing pair -> id for the remaining pairs
    int32_t *mvals;
    uint64_t mmask;
    uint32_t *off, *len;           // piece of each id in `bytes`
    unsigned char *bytes;
    uint64_t hash;
};

// ---- little-endian helpers (files are little-endian whatever the host) ----
static void put_u32(unsigned char *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i)); }
static uint32_t get_u32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

// ---- pre-tokenisation ----
// Byte classes of the pre-tokeniser: L = ASCII letters and every byte >= 0x80, N = ASCII digits.
enum { C_OTHER, C_WS, C_LETTER, C_DIGIT };
static const unsigned char cls_tab[256] = {
    ['\t'] = C_WS, ['\n'] = C_WS, ['\v'] = C_WS, ['\f'] = C_WS, ['\r'] = C_WS, [' '] = C_WS,
    ['0' ... '9'] = C_DIGIT, ['A' ... 'Z'] = C_LETTER, ['a' ... 'z'] = C_LETTER, [0x80 ... 0xff] = C_LETTER,
};

static size_t pretoken_end(const unsigned char *s, size_t n, size_t i) {
    size_t start = i;
    unsigned char c = s[i];
    if (c == '\'' && i + 1 < n) {  // contractions, as GPT-2 (case-sensitive)
        unsigned char d = s[i + 1];
        if (d == 's' || d == 't' || d == 'm' || d == 'd') return i + 2;
        if (i + 2 < n && ((d == 'r' && s[i + 2] == 'e') || (d == 'v' && s[i + 2] == 'e') || (d == 'l' && s[i + 2] == 'l')))
            return i + 3;
    }
    if (cls_tab[c] == C_WS) {
        size_t j = i + 1;
        while (j < n && cls_tab[s[j]] == C_WS && j - start < TOK_MAX_PIECE) j++;
        if (j == n || cls_tab[s[j]] == C_WS) return j;  // run reaches the end (or the cap)
        if (j - start >= 2) return j - 1;               // the last space goes with the next word
        if (c != ' ') return j;                         // a lone \n, \t ... before a word
        i++;                                            // " word": space joins the next run
    }
    unsigned char k = cls_tab[s[i]];
    size_t j = i + 1;
    while (j < n && cls_tab[s[j]] == k && j - start < TOK_MAX_PIECE) j++;
    return j;
}

size_t tok_pretoken_end(const char *s, size_t n, size_t i) {
    return i < n ? pretoken_end((const unsigned char *)s, n, i) : n;
}

size_t tok_safe_cut(const char *s, size_t n, size_t want) {
    if (want == 0) want = 1;
    for (size_t i = want; i < n; i++)
        if (s[i] == '\n' && cls_tab[(unsigned char)s[i - 1]] != C_WS) return i;
    return n;
}

// ---- merge lookup ----
static inline uint64_t mix64(uint64_t x) {
    x ^= x >> 33; x *= 0xff51afd7ed558ccdULL; x ^= x >> 33; x *= 0xc4ceb9fe1a85ec53ULL;
    return x ^ (x >> 33);
}
static inline int32_t pair_id(const Tokenizer *t, int32_t a, int32_t b) {
    if ((a | b) < 256) return t->bytepair[a << 8 | b];
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    for (uint64_t h = mix64(key) & t->mmask;; h = (h + 1) & t->mmask) {
        if (t->mkeys[h] == key) return t->mvals[h];
        if (t->mkeys[h] == UINT64_MAX) return -1;
    }
}

// Runs BPE on one pre-token (n <= TOK_MAX_PIECE): lowest merge id first, all its occurrences
// left to right — the same order training applied them.
static int bpe_piece(const Tokenizer *t, const unsigned char *p, int n, int32_t *sym) {
    int32_t pid[TOK_MAX_PIECE];
    for (int i = 0; i < n; i++) sym[i] = p[i];
    int m = n;
    for (int i = 0; i + 1 < m; i++) pid[i] = pair_id(t, sym[i], sym[i + 1]);
    while (m >= 2) {
        int32_t best = INT32_MAX;
        for (int i = 0; i + 1 < m; i++)
            if (pid[i] >= 0 && pid[i] < best) best = pid[i];
        if (best == INT32_MAX) break;
        int j = 0;
        for (int i = 0; i < m;) {
            if (i + 1 < m && pid[i] == best) { sym[j++] = best; i += 2; }
            else sym[j++] = sym[i++];
        }
        m = j;
        for (int i = 0; i + 1 < m; i++) pid[i] = pair_id(t, sym[i], sym[i + 1]);
    }
    return m;
}

// ---- ids buffer ----
void tokids_push(TokIds *b, int32_t id) {
    if (b->n == b->cap) b->v = xrealloc(b->v, (b->cap = b->cap ? b->cap * 2 : 1024) * sizeof(int32_t));
    b->v[b->n++] = id;
}
static void tokids_reserve(TokIds *b, size_t extra) {
    if (b->n + extra <= b->cap) return;
    while (b->cap < b->n + extra) b->cap = b->cap ? b->cap * 2 : 1024;
    b->v = xrealloc(b->v, b->cap * sizeof(int32_t));
}
void tokids_append(TokIds *b, const int32_t *ids, size_t n) {
    tokids_reserve(b, n);
    if (n) memcpy(b->v + b->n, ids, n * sizeof(int32_t));
    b->n += n;
}
void tokids_free(TokIds *b) { free(b->v); b->v = NULL; b->n = b->cap = 0; }

// ---- encoder with a per-thread cache of pre-token -> ids ----
typedef struct { uint64_t h; uint32_t ko, vo; uint8_t kl, vl; } Slot;  // kl == 0: empty
struct TokEncoder {
    const Tokenizer *t;
    Slot *slots;
    size_t cap, count;
    unsigned char *keys; size_t kn, kcap;
    int32_t *vals; size_t vn, vcap;
};
enum { CACHE_MIN = 1 << 10, CACHE_MAX = 1 << 20 };  // grows as needed; cleared when full

static uint64_t hash_bytes(const unsigned char *p, size_t n) {
    uint64_t h = 0x9e3779b97f4a7c15ULL ^ n;
    while (n >= 8) { uint64_t w; memcpy(&w, p, 8); h = mix64(h ^ w); p += 8; n -= 8; }
    uint64_t w = 0;
    for (size_t i = 0; i < n; i++) w |= (uint64_t)p[i] << (8 * i);
    return mix64(h ^ w ^ 0x5bd1e995);
}

TokEncoder *tok_encoder_new(const Tokenizer *t) {
    TokEncoder *e = xcalloc(1, sizeof *e);
    e->t = t;
    e->cap = CACHE_MIN;
    e->slots = xcalloc(e->cap, sizeof(Slot));
    return e;
}
void tok_encoder_free(TokEncoder *e) {
    if (!e) return;
    free(e->slots); free(e->keys); free(e->vals); free(e);
}
static void cache_clear(TokEncoder *e) {
    memset(e->slots, 0, e->cap * sizeof(Slot));
    e->count = e->kn = e->vn = 0;
}
static void cache_grow(TokEncoder *e) {
    if (e->cap >= CACHE_MAX) { cache_clear(e); return; }
    size_t ncap = e->cap * 2;
    Slot *ns = xcalloc(ncap, sizeof(Slot));
    for (size_t i = 0; i < e->cap; i++) {
        if (!e->slots[i].kl) continue;
        size_t h = e->slots[i].h & (ncap - 1);
        while (ns[h].kl) h = (h + 1) & (ncap - 1);
        ns[h] = e->slots[i];
    }
    free(e->slots);
    e->slots = ns; e->cap = ncap;
}

static void encode_piece(TokEncoder *e, const unsigned char *p, size_t n, TokIds *out) {
    tokids_reserve(out, n);
    if (n == 1) { out->v[out->n++] = p[0]; return; }
    uint64_t h = hash_bytes(p, n);
    size_t mask = e->cap - 1, i = h & mask;
    for (; e->slots[i].kl; i = (i + 1) & mask) {
        Slot *s = &e->slots[i];
        if (s->h == h && s->kl == n && !memcmp(e->keys + s->ko, p, n)) {
            memcpy(out->v + out->n, e->vals + s->vo, s->vl * sizeof(int32_t));
            out->n += s->vl;
            return;
        }
    }
    int32_t *dst = out->v + out->n;
    int m = bpe_piece(e->t, p, (int)n, dst);
    out->n += m;
    if (e->kn + n > e->kcap) e->keys = xrealloc(e->keys, e->kcap = (e->kcap + n) * 2);
    if (e->vn + m > e->vcap) e->vals = xrealloc(e->vals, (e->vcap = (e->vcap + m) * 2) * sizeof(int32_t));
    if (e->kn + n > UINT32_MAX / 2 || e->vn + m > UINT32_MAX / 2) { cache_clear(e); i = h & (e->cap - 1); }
    e->slots[i] = (Slot){h, (uint32_t)e->kn, (uint32_t)e->vn, (uint8_t)n, (uint8_t)m};
    memcpy(e->keys + e->kn, p, n); e->kn += n;
    memcpy(e->vals + e->vn, dst, m * sizeof(int32_t)); e->vn += m;
    if (++e->count * 2 > e->cap) cache_grow(e);
}

void tok_encoder_append(TokEncoder *e, const char *text, size_t len, TokIds *out) {
    const unsigned char *s = (const unsigned char *)text;
    for (size_t i = 0; i < len;) {
        size_t j = pretoken_end(s, len, i);
        encode_piece(e, s + i, j - i, out);
        i = j;
    }
}

int32_t *tok_encode(const Tokenizer *t, const char *text, size_t len, int *n_out) {
    enum { SEG = 1 << 20 };
    TokIds out = {0};
    if (len < 2 * SEG || omp_get_max_threads() == 1) {
        TokEncoder *e = tok_encoder_new(t);
        tok_encoder_append(e, text, len, &out);
        tok_encoder_free(e);
    } else {  // cut at safe points, encode segments in parallel, concatenate in order
        size_t nseg = 0, cap = len / SEG + 2, *cut = xmalloc(cap * sizeof(size_t));
        cut[0] = 0;
        for (size_t p = 0; p < len;) { p = tok_safe_cut(text, len, p + SEG); cut[++nseg] = p; }
        TokIds *parts = xcalloc(nseg, sizeof(TokIds));
        #pragma omp parallel
        {
            TokEncoder *e = tok_encoder_new(t);
            #pragma omp for schedule(dynamic, 1)
            for (size_t k = 0; k < nseg; k++) tok_encoder_append(e, text + cut[k], cut[k + 1] - cut[k], &parts[k]);
            tok_encoder_free(e);
        }
        for (size_t k = 0; k < nseg; k++) {
            tokids_append(&out, parts[k].v, parts[k].n);
            tokids_free(&parts[k]);
        }
        free(parts); free(cut);
    }
    if (out.n > INT_MAX) die("tok_encode: %zu tokens do not fit an int; encode smaller pieces", out.n);
    if (n_out) *n_out = (int)out.n;
    if (!out.v) out.v = xmalloc(sizeof(int32_t));
    return out.v;
}

// ---- decoding ----
const unsigned char *tok_piece(const Tokenizer *t, int id, size_t *len) {
    if (id < 0 || id >= t->vocab) { *len = 0; return (const unsigned char *)""; }
    *len = t->len[id];
    return t->bytes + t->off[id];
}

char *tok_decode(const Tokenizer *t, const int32_t *ids, int n, size_t *len_out) {
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->vocab)
            die_input("token id %d at position %d is outside the vocabulary [0, %d)", (int)ids[i], i, t->vocab);
        total += t->len[ids[i]];
    }
    char *out = xmalloc(total + 1), *p = out;
    for (int i = 0; i < n; i++) { memcpy(p, t->bytes + t->off[ids[i]], t->len[ids[i]]); p += t->len[ids[i]]; }
    *p = 0;
    if (len_out) *len_out = total;
    return out;
}

// ---- construction, file image ----
int tok_vocab_size(const Tokenizer *t) { return t->vocab; }
int tok_eot(const Tokenizer *t) { (void)t; return TOK_EOT_ID; }
uint64_t tok_hash(const Tokenizer *t) { return t->hash; }
void tok_merge(const Tokenizer *t, int i, int32_t *a, int32_t *b) { *a = t->merges[i][0]; *b = t->merges[i][1]; }

// The canonical file image: header, merges, CRC32 of everything before it.
static unsigned char *tok_image(const int32_t (*merges)[2], int n_merges, size_t *size) {
    size_t n = TOK_HDR + 8 * (size_t)n_merges + 4;
    unsigned char *b = xcalloc(1, n);
    memcpy(b, TOK_MAGIC, 8);
    put_u32(b + 8, TOK_VERSION);
    put_u32(b + 12, (uint32_t)(TOK_FIRST_MERGE + n_merges));
    put_u32(b + 16, (uint32_t)n_merges);
    put_u32(b + 20, TOK_EOT_ID);
    put_u32(b + 24, TOK_PRETOK);
    for (int i = 0; i < n_merges; i++) {
        put_u32(b + TOK_HDR + 8 * (size_t)i, (uint32_t)merges[i][0]);
        put_u32(b + TOK_HDR + 8 * (size_t)i + 4, (uint32_t)merges[i][1]);
    }
    put_u32(b + n - 4, (uint32_t)crc32(0L, b, (uInt)(n - 4)));
    *size = n;
    return b;
}

// Builds the tables; `name` non-NULL means the merges come from a file and errors name it.
static Tokenizer *build(const int32_t (*merges)[2], int n_merges, const char *name) {
    Tokenizer *t = xcalloc(1, sizeof *t);
    t->n_merges = n_merges;
    t->vocab = TOK_FIRST_MERGE + n_merges;
    t->merges = xmalloc((size_t)(n_merges ? n_merges : 1) * sizeof *t->merges);
    memcpy(t->merges, merges, (size_t)n_merges * sizeof *t->merges);
    t->off = xmalloc((size_t)t->vocab * sizeof(uint32_t));
    t->len = xmalloc((size_t)t->vocab * sizeof(uint32_t));
    size_t cap = 4096 + (size_t)t->vocab * 8, used = 0;
    t->bytes = xmalloc(cap);
    for (int i = 0; i < 256; i++) { t->off[i] = (uint32_t)used; t->len[i] = 1; t->bytes[used++] = (unsigned char)i; }
    t->off[TOK_EOT_ID] = (uint32_t)used; t->len[TOK_EOT_ID] = sizeof EOT_TEXT - 1;
    memcpy(t->bytes + used, EOT_TEXT, sizeof EOT_TEXT - 1); used += sizeof EOT_TEXT - 1;
    t->bytepair = xmalloc(65536 * sizeof(int32_t));
    for (int i = 0; i < 65536; i++) t->bytepair[i] = -1;
    uint64_t mcap = 16;
    while (mcap < (uint64_t)n_merges * 2 + 16) mcap *= 2;
    t->mmask = mcap - 1;
    t->mkeys = xmalloc(mcap * sizeof(uint64_t));
    t->mvals = xmalloc(mcap * sizeof(int32_t));
    memset(t->mkeys, 0xff, mcap * sizeof(uint64_t));
    for (int i = 0; i < n_merges; i++) {
        int32_t a = merges[i][0], b = merges[i][1], id = TOK_FIRST_MERGE + i;
        long at = TOK_HDR + 8L * i;
        if (a < 0 || b < 0 || a >= id || b >= id || a == TOK_EOT_ID || b == TOK_EOT_ID) {
            if (name) die_input("%s: byte offset %ld: merge %d joins ids %d and %d; expected earlier non-EOT ids below %d",
                                name, at, i, (int)a, (int)b, (int)id);
            die("tokenizer: merge %d joins invalid ids %d and %d", i, (int)a, (int)b);
        }
        size_t l = (size_t)t->len[a] + t->len[b];
        if (l > TOK_MAX_PIECE) {
            if (name) die_input("%s: byte offset %ld: merge %d builds a %zu-byte token; expected at most %d bytes",
                                name, at, i, l, TOK_MAX_PIECE);
            die("tokenizer: merge %d builds a %zu-byte token", i, l);
        }
        if (pair_id(t, a, b) >= 0) {
            if (name) die_input("%s: byte offset %ld: merge %d repeats the pair (%d, %d); expected each pair once",
                                name, at, i, (int)a, (int)b);
            die("tokenizer: merge %d repeats a pair", i);
        }
        if (used + l > cap) t->bytes = xrealloc(t->bytes, cap = (cap + l) * 2);
        t->off[id] = (uint32_t)used; t->len[id] = (uint32_t)l;
        memcpy(t->bytes + used, t->bytes + t->off[a], t->len[a]);
        memcpy(t->bytes + used + t->len[a], t->bytes + t->off[b], t->len[b]);
        used += l;
        if ((a | b) < 256) t->bytepair[a << 8 | b] = id;
        else {
            uint64_t key = (uint64_t)a << 32 | (uint32_t)b, h = mix64(key) & t->mmask;
            while (t->mkeys[h] != UINT64_MAX) h = (h + 1) & t->mmask;
            t->mkeys[h] = key; t->mvals[h] = id;
        }
    }
    size_t isz;
    unsigned char *img = tok_image(merges, n_merges, &isz);
    t->hash = hash64(img, isz - 4, HASH64_INIT);  // identity = canonical content, CRC excluded
    free(img);
    return t;
}

Tokenizer *tok_from_merges(const int32_t (*merges)[2], int n_merges) {
    return build(merges, n_merges, NULL);
}

void tok_free(Tokenizer *t) {
    if (!t) return;
    free(t->merges); free(t->bytepair); free(t->mkeys); free(t->mvals);
    free(t->off); free(t->len); free(t->bytes); free(t);
}

unsigned char *tok_serialize(const Tokenizer *t, size_t *len) {
    return tok_image((const int32_t (*)[2])t->merges, t->n_merges, len);
}

void tok_save(const Tokenizer *t, const char *path) {
    size_t n;
    unsigned char *img = tok_serialize(t, &n);
    write_file_atomic(path, img, n);
    free(img);
}

Tokenizer *tok_from_bytes(const void *buf, size_t len, const char *name) {
    const unsigned char *b = buf;
    if (len == 0) die_input("%s: empty file; expected an aoe tokenizer (magic %s)", name, TOK_MAGIC);
    if (len < 8 || memcmp(b, TOK_MAGIC, 8))
        die_input("%s: byte offset 0: expected magic \"%s\" (not an aoe tokenizer file)", name, TOK_MAGIC);
    if (len < TOK_HDR + 4)
        die_input("%s: truncated at byte offset %zu: expected a %d-byte header and a CRC", name, len, TOK_HDR);
    uint32_t ver = get_u32(b + 8), vocab = get_u32(b + 12), nm = get_u32(b + 16);
    if (ver != TOK_VERSION)
        die_input("%s: byte offset 8: tokenizer version %u; this build reads version %d", name, ver, TOK_VERSION);
    if (vocab < TOK_MIN_VOCAB || vocab > TOK_MAX_VOCAB || nm != vocab - TOK_FIRST_MERGE)
        die_input("%s: byte offset 12: vocab %u with %u merges; expected %d..%d tokens and vocab = %d + merges",
                  name, vocab, nm, TOK_MIN_VOCAB, TOK_MAX_VOCAB, TOK_FIRST_MERGE);
    if (get_u32(b + 20) != TOK_EOT_ID)
        die_input("%s: byte offset 20: end-of-text id %u; expected %d", name, get_u32(b + 20), TOK_EOT_ID);
    if (get_u32(b + 24) != TOK_PRETOK)
        die_input("%s: byte offset 24: pre-tokeniser %u; this build knows %d", name, get_u32(b + 24), TOK_PRETOK);
    size_t want = TOK_HDR + 8 * (size_t)nm + 4;
    if (len < want) die_input("%s: truncated at byte offset %zu: header promises %u merges, expected %zu bytes",
                              name, len, nm, want);
    if (len > want) die_input("%s: byte offset %zu: %zu unexpected trailing bytes after the CRC", name, want, len - want);
    uint32_t crc = (uint32_t)crc32(0L, b, (uInt)(want - 4));
    if (crc != get_u32(b + want - 4))
        die_input("%s: byte offset %zu: CRC mismatch (stored %08x, computed %08x); the file is corrupt",
                  name, want - 4, get_u32(b + want - 4), crc);
    int32_t (*m)[2] = xmalloc((size_t)(nm ? nm : 1) * sizeof *m);
    for (uint32_t i = 0; i < nm; i++) {
        m[i][0] = (int32_t)get_u32(b + TOK_HDR + 8 * (size_t)i);
        m[i][1] = (int32_t)get_u32(b + TOK_HDR + 8 * (size_t)i + 4);
    }
    Tokenizer *t = build((const int32_t (*)[2])m, (int)nm, name);
    free(m);
    return t;
}

Tokenizer *tok_load(const char *path) {
    size_t len;
    char *buf = read_file(path, &len);  // dies on a missing file or a directory
    Tokenizer *t = tok_from_bytes(buf, len, path);
    free(buf);
    return t;
}
