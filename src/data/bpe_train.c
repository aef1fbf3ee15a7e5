// bpe_train.c — learning BPE merges from text. Text is pre-tokenised exactly as at encoding time
// and counted as distinct pre-tokens ("words"); merges then run on the word table with
// incremental pair counts: each merge only rewrites the words that contain the chosen pair
// (found through per-pair occurrence lists), and a lazy max-heap picks the next pair. Ties go to
// the smaller (left, right) id pair, so training is deterministic.
#include <stdlib.h>
#include <string.h>

#include "data/tokenizer.h"
#include "util/common.h"

// ---- distinct pre-tokens with counts ----
typedef struct { uint64_t h, count; uint32_t off; uint8_t len; } WSlot;  // len 0: empty
struct TokTrainer {
    WSlot *slots;
    size_t cap, n;
    unsigned char *arena;
    size_t an, acap;
};

static inline uint64_t mix(uint64_t x) {
    x ^= x >> 33; x *= 0xff51afd7ed558ccdULL; x ^= x >> 33; x *= 0xc4ceb9fe1a85ec53ULL;
    return x ^ (x >> 33);
}
static uint64_t word_hash(const unsigned char *p, size_t n) {
    uint64_t h = 0x243f6a8885a308d3ULL ^ n;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ULL;
    return mix(h);
}

TokTrainer *tok_trainer_new(void) {
    TokTrainer *tr = xcalloc(1, sizeof *tr);
    tr->cap = 1 << 16;
    tr->slots = xcalloc(tr->cap, sizeof(WSlot));
    return tr;
}

static void word_grow(TokTrainer *tr) {
    size_t ncap = tr->cap * 2;
    WSlot *ns = xcalloc(ncap, sizeof(WSlot));
    for (size_t i = 0; i < tr->cap; i++) {
        if (!tr->slots[i].len) continue;
        size_t h = tr->slots[i].h & (ncap - 1);
        while (ns[h].len) h = (h + 1) & (ncap - 1);
        ns[h] = tr->slots[i];
    }
    free(tr->slots);
    tr->slots = ns; tr->cap = ncap;
}

static void word_add(TokTrainer *tr, const unsigned char *p, size_t n) {
    uint64_t h = word_hash(p, n);
    size_t mask = tr->cap - 1, i = h & mask;
    for (; tr->slots[i].len; i = (i + 1) & mask) {
        WSlot *s = &tr->slots[i];
        if (s->h == h && s->len == n && !memcmp(tr->arena + s->off, p, n)) { s->count++; return; }
    }
    if (tr->an + n > tr->acap) tr->arena = xrealloc(tr->arena, tr->acap = (tr->acap + n) * 2 + 4096);
    if (tr->an + n > UINT32_MAX) die("tokenizer training: more than 4 GB of distinct pre-tokens; use --train-bytes");
    tr->slots[i] = (WSlot){h, 1, (uint32_t)tr->an, (uint8_t)n};
    memcpy(tr->arena + tr->an, p, n);
    tr->an += n;
    if (++tr->n * 2 > tr->cap) word_grow(tr);
}

void tok_trainer_add(TokTrainer *tr, const char *text, size_t len) {
    for (size_t i = 0; i < len;) {
        size_t j = tok_pretoken_end(text, len, i);
        if (j - i >= 2) word_add(tr, (const unsigned char *)text + i, j - i);  // 1 byte: no pairs
        i = j;
    }
}

size_t tok_trainer_words(const TokTrainer *tr) { return tr->n; }

// ---- merge learning ----
typedef struct {
    uint64_t key;      // left << 32 | right
    int64_t count;     // weighted occurrences in the current word table
    uint32_t *occ;     // words that contained the pair when it was created/seen (may be stale)
    uint32_t nocc, cocc, stamp;
    int merged;
} Pair;
typedef struct { int64_t c; uint64_t key; uint32_t idx; } HeapEnt;

typedef struct {
    Pair *p; size_t n, cap;
    uint32_t *map; size_t mcap;  // open addressing: pair index + 1, 0 = empty
    HeapEnt *heap; size_t hn, hcap;
} PairTab;

static size_t pair_find(PairTab *T, uint64_t key, int create) {
    size_t mask = T->mcap - 1, h = mix(key) & mask;
    for (; T->map[h]; h = (h + 1) & mask)
        if (T->p[T->map[h] - 1].key == key) return T->map[h] - 1;
    if (!create) die("bpe: internal error: missing pair");
    if (T->n == T->cap) T->p = xrealloc(T->p, (T->cap = T->cap * 2 + 1024) * sizeof(Pair));
    T->p[T->n] = (Pair){.key = key};
    T->map[h] = (uint32_t)++T->n;
    if (T->n * 2 > T->mcap) {  // rehash
        free(T->map);
        T->mcap *= 2;
        T->map = xcalloc(T->mcap, sizeof(uint32_t));
        for (size_t i = 0; i < T->n; i++) {
            size_t g = mix(T->p[i].key) & (T->mcap - 1);
            while (T->map[g]) g = (g + 1) & (T->mcap - 1);
            T->map[g] = (uint32_t)(i + 1);
        }
    }
    return T->n - 1;
}

static void occ_add(Pair *p, uint32_t w) {
    if (p->nocc && p->occ[p->nocc - 1] == w) return;
    if (p->nocc == p->cocc) p->occ = xrealloc(p->occ, (p->cocc = p->cocc * 2 + 4) * sizeof(uint32_t));
    p->occ[p->nocc++] = w;
}

static int heap_less(const HeapEnt *a, const HeapEnt *b) {  // a is "better" than b
    return a->c > b->c || (a->c == b->c && a->key < b->key);
}
static void heap_push(PairTab *T, HeapEnt e) {
    if (T->hn == T->hcap) T->heap = xrealloc(T->heap, (T->hcap = T->hcap * 2 + 1024) * sizeof(HeapEnt));
    size_t i = T->hn++;
    while (i && heap_less(&e, &T->heap[(i - 1) / 2])) { T->heap[i] = T->heap[(i - 1) / 2]; i = (i - 1) / 2; }
    T->heap[i] = e;
}
static HeapEnt heap_pop(PairTab *T) {
    HeapEnt top = T->heap[0], e = T->heap[--T->hn];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= T->hn) break;
        if (c + 1 < T->hn && heap_less(&T->heap[c + 1], &T->heap[c])) c++;
        if (!heap_less(&T->heap[c], &e)) break;
        T->heap[i] = T->heap[c]; i = c;
    }
    if (T->hn) T->heap[i] = e;
    return top;
}

typedef struct { const unsigned char *bytes; uint32_t len; uint64_t count; } WordRef;
static int cmp_word(const void *x, const void *y) {
    const WordRef *a = x, *b = y;
    int c = memcmp(a->bytes, b->bytes, a->len < b->len ? a->len : b->len);
    return c ? c : (a->len > b->len) - (a->len < b->len);
}

static inline uint64_t pkey(int32_t a, int32_t b) { return (uint64_t)(uint32_t)a << 32 | (uint32_t)b; }

Tokenizer *tok_trainer_finish(TokTrainer *tr, int vocab_size) {
    if (vocab_size < TOK_MIN_VOCAB || vocab_size > TOK_MAX_VOCAB)
        die_input("vocab size %d: expected %d..%d", vocab_size, TOK_MIN_VOCAB, TOK_MAX_VOCAB);
    int target = vocab_size - TOK_FIRST_MERGE;
    // Words in byte order, so results do not depend on hash-table layout.
    size_t W = tr->n, total = 0, k = 0;
    WordRef *wr = xmalloc((W ? W : 1) * sizeof(WordRef));
    for (size_t i = 0; i < tr->cap; i++)
        if (tr->slots[i].len) wr[k++] = (WordRef){tr->arena + tr->slots[i].off, tr->slots[i].len, tr->slots[i].count};
    qsort(wr, W, sizeof(WordRef), cmp_word);
    size_t *start = xmalloc((W ? W : 1) * sizeof(size_t));
    int *len = xmalloc((W ? W : 1) * sizeof(int));
    int64_t *freq = xmalloc((W ? W : 1) * sizeof(int64_t));
    for (size_t w = 0; w < W; w++) { start[w] = total; total += wr[w].len; }
    int32_t *S = xmalloc((total ? total : 1) * sizeof(int32_t));
    for (size_t w = 0; w < W; w++) {
        len[w] = (int)wr[w].len; freq[w] = (int64_t)wr[w].count;
        for (uint32_t i = 0; i < wr[w].len; i++) S[start[w] + i] = wr[w].bytes[i];
    }
    free(wr);
    free(tr->slots); free(tr->arena); free(tr);

    PairTab T = {0};
    T.mcap = 1 << 16;
    T.map = xcalloc(T.mcap, sizeof(uint32_t));
    for (size_t w = 0; w < W; w++)
        for (int i = 0; i + 1 < len[w]; i++) {
            size_t pi = pair_find(&T, pkey(S[start[w] + i], S[start[w] + i + 1]), 1);
            T.p[pi].count += freq[w];
            occ_add(&T.p[pi], (uint32_t)w);
        }
    for (size_t i = 0; i < T.n; i++) heap_push(&T, (HeapEnt){T.p[i].count, T.p[i].key, (uint32_t)i});

    int32_t (*merges)[2] = xmalloc((size_t)(target ? target : 1) * sizeof *merges);
    uint32_t *wstamp = xcalloc(W ? W : 1, sizeof(uint32_t));
    size_t *touched = NULL, nt = 0, ct = 0;
    int m = 0;
    Progress pr;
    progress_start(&pr, "bpe merges", "merges", target);
    for (; m < target; m++) {
        size_t best = SIZE_MAX;
        while (T.hn) {
            HeapEnt e = heap_pop(&T);
            Pair *p = &T.p[e.idx];
            if (p->merged) continue;
            if (p->count != e.c) {  // stale entry: re-queue a decreased count, drop the rest
                if (p->count < e.c && p->count > 0) heap_push(&T, (HeapEnt){p->count, p->key, e.idx});
                continue;
            }
            best = e.idx;
            break;
        }
        if (best == SIZE_MAX || T.p[best].count < 2) break;
        int32_t a = (int32_t)(T.p[best].key >> 32), b = (int32_t)(T.p[best].key & 0xffffffffu);
        int32_t id = TOK_FIRST_MERGE + m;
        merges[m][0] = a; merges[m][1] = b;
        uint32_t stamp = (uint32_t)m + 1, *occ = T.p[best].occ, nocc = T.p[best].nocc;
        T.p[best].occ = NULL; T.p[best].nocc = T.p[best].cocc = 0;
        T.p[best].merged = 1;
        nt = 0;
        for (uint32_t o = 0; o < nocc; o++) {
            uint32_t w = occ[o];
            if (wstamp[w] == stamp) continue;
            wstamp[w] = stamp;
            int32_t *s = S + start[w];
            int L = len[w], found = 0;
            for (int i = 0; i + 1 < L && !found; i++) found = s[i] == a && s[i + 1] == b;
            if (!found) continue;
            // Re-count this word: remove its pairs, merge, add its new pairs.
            for (int i = 0; i + 1 < L; i++) T.p[pair_find(&T, pkey(s[i], s[i + 1]), 0)].count -= freq[w];
            int j = 0;
            for (int i = 0; i < L;) {
                if (i + 1 < L && s[i] == a && s[i + 1] == b) { s[j++] = id; i += 2; }
                else s[j++] = s[i++];
            }
            len[w] = L = j;
            for (int i = 0; i + 1 < L; i++) {
                size_t pi = pair_find(&T, pkey(s[i], s[i + 1]), 1);
                Pair *p = &T.p[pi];
                p->count += freq[w];
                if (s[i] != id && s[i + 1] != id) continue;
                occ_add(p, w);  // only pairs with the new id can have grown
                if (p->stamp != stamp) {
                    p->stamp = stamp;
                    if (nt == ct) touched = xrealloc(touched, (ct = ct * 2 + 64) * sizeof(size_t));
                    touched[nt++] = pi;
                }
            }
        }
        free(occ);
        T.p[best].count = 0;
        for (size_t i = 0; i < nt; i++)
            if (T.p[touched[i]].count > 0)
                heap_push(&T, (HeapEnt){T.p[touched[i]].count, T.p[touched[i]].key, (uint32_t)touched[i]});
        progress_update(&pr, m + 1);
    }
    progress_end(&pr, m);
    if (m < target)
        warnf("tokenizer: only %d merges have a pair seen twice or more; vocabulary is %d, not %d",
              m, TOK_FIRST_MERGE + m, vocab_size);
    for (size_t i = 0; i < T.n; i++) free(T.p[i].occ);
    free(T.p); free(T.map); free(T.heap); free(touched); free(wstamp);
    free(S); free(start); free(len); free(freq);
    Tokenizer *t = tok_from_merges((const int32_t (*)[2])merges, m);
    free(merges);
    return t;
}
