// fuzz_crc.h — rewrite the CRCs (and the stored file size) of a mutated checkpoint or shard so
// that it passes the integrity checks and the fuzzer reaches the parsing behind them. Written
// from docs/formats.md alone, not from the readers, so it also checks that the page is right
// (tests/test_fuzz_crc.c: fixing a valid file changes nothing). Used by the libFuzzer custom
// mutators of fuzz_ckpt.c and fuzz_shard.c for half of the mutations; the other half keep the
// CRCs as mutated, so the CRC checks themselves stay fuzzed.
#ifndef AOE_FUZZ_CRC_H
#define AOE_FUZZ_CRC_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

static inline uint64_t fz_get(const uint8_t *p, int bytes) {
    uint64_t v = 0;
    for (int i = bytes - 1; i >= 0; i--) v = v << 8 | p[i];
    return v;
}
static inline void fz_put(uint8_t *p, uint64_t v, int bytes) {
    for (int i = 0; i < bytes; i++, v >>= 8) p[i] = (uint8_t)v;
}
// [off, off + len) inside a buffer of n bytes, without overflow.
static inline int fz_in(uint64_t off, uint64_t len, size_t n) { return off <= n && len <= n - off; }
static inline void fz_crc_at(uint8_t *d, size_t n, size_t at, uint64_t off, uint64_t len) {
    if (fz_in(off, len, n)) fz_put(d + at, crc32(0, d + off, (uInt)len), 4);
}

// Checkpoint, versions 1 and 2 (docs/formats.md, "Checkpoint").
static inline void fuzz_fix_ckpt(uint8_t *d, size_t n) {
    if (n < 128 || memcmp(d, "AOECKPT", 8) != 0) return;
    uint32_t ver = (uint32_t)fz_get(d + 8, 4);
    if (ver != 1 && ver != 2) return;
    fz_put(d + 16, n, 8);
    uint64_t off[4], len[4];
    for (int s = 0; s < 4; s++) off[s] = fz_get(d + 24 + 16 * s, 8), len[s] = fz_get(d + 32 + 16 * s, 8);
    uint64_t n_arrays = ver == 2 ? fz_get(d + 116, 4) : 3, n_tensors = fz_get(d + 96, 4);
    int raw = !(fz_get(d + 12, 4) & 1);
    if (raw && n_arrays >= 1 && n_arrays <= 9 && fz_in(off[2], len[2], n) && fz_in(off[3], len[3], n)) {
        uint64_t names = ver == 2 ? 32 * n_arrays : 0, entry = ver == 2 ? 104 + 4 * n_arrays : 128;
        uint64_t total = fz_get(d + 88, 8) / (4 * n_arrays);
        for (uint64_t t = 0; t < n_tensors && names + (t + 1) * entry <= len[2]; t++) {
            uint8_t *e = d + off[2] + names + t * entry;
            uint64_t o = fz_get(e + 88, 8), c = fz_get(e + 96, 8);
            if (o > total || c > total - o) continue;
            for (uint64_t a = 0; a < n_arrays; a++) {
                uint64_t at = 4 * (a * total + o);
                if (fz_in(at, 4 * c, len[3])) fz_put(e + 104 + 4 * a, crc32(0, d + off[3] + at, (uInt)(4 * c)), 4);
            }
        }
    }
    for (int s = 0; s < 4; s++) fz_crc_at(d, n, 100 + 4 * s, off[s], len[s]);
    fz_crc_at(d, n, 124, 0, 124);
}

// Token shard (docs/formats.md, "Shard"): chunk CRCs (compressed, and raw where the chunk
// inflates to its token count), index and document-table CRCs, header CRC.
static inline void fuzz_fix_shard(uint8_t *d, size_t n) {
    if (n < 128 || memcmp(d, "AOESHARD", 8) != 0) return;
    fz_put(d + 80, n, 8);
    uint64_t width = fz_get(d + 20, 4), chunks = fz_get(d + 48, 8), docs = fz_get(d + 40, 8);
    uint64_t idx = fz_get(d + 64, 8), dtab = fz_get(d + 72, 8);
    for (uint64_t c = 0; c < chunks && c < 64 && fz_in(idx, 24 * (c + 1), n); c++) {
        uint8_t *e = d + idx + 24 * c;
        uint64_t co = fz_get(e, 8), cs = fz_get(e + 8, 4), tokens = fz_get(e + 12, 4);
        if (!fz_in(co, cs, n)) continue;
        fz_put(e + 16, crc32(0, d + co, (uInt)cs), 4);
        if ((width != 2 && width != 4) || tokens > (1u << 20)) continue;
        uLongf raw_len = (uLongf)(tokens * width);
        uint8_t *raw = malloc(raw_len + 1);
        if (uncompress(raw, &raw_len, d + co, (uLong)cs) == Z_OK && raw_len == tokens * width)
            fz_put(e + 20, crc32(0, raw, (uInt)raw_len), 4);
        free(raw);
    }
    if (chunks <= n / 24) fz_crc_at(d, n, 88, idx, 24 * chunks);
    if (docs <= n / 8) fz_crc_at(d, n, 92, dtab, 8 * docs);
    fz_crc_at(d, n, 124, 0, 124);
}

// The harness's libFuzzer custom mutator: libFuzzer's own mutation, then fix() on half of the
// inputs (odd seed); the other half keep their mutated CRCs.
#define FUZZ_CRC_MUTATOR(fix)                                                                 \
    size_t LLVMFuzzerMutate(uint8_t *data, size_t size, size_t max_size);                     \
    size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned seed) { \
        size = LLVMFuzzerMutate(data, size, max_size);                                        \
        if (seed & 1) fix(data, size);                                                        \
        return size;                                                                          \
    }

#endif
