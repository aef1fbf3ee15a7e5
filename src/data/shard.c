// shard.c — writing and reading token shards (see shard.h and docs/formats.md "Shard").
#include "data/shard.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "data/staging.h"
#include "util/common.h"

static const char MAGIC[8] = {'A', 'O', 'E', 'S', 'H', 'A', 'R', 'D'};

static void put32(unsigned char *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i)); }
static void put64(unsigned char *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i)); }
static uint32_t get32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get64(const unsigned char *p) { return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32; }
static uint32_t crc(const void *p, size_t n) {
    uLong c = crc32(0L, Z_NULL, 0);
    const unsigned char *b = p;
    while (n) { uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n; c = crc32(c, b, k); b += k; n -= k; }
    return (uint32_t)c;
}
static uint32_t width_for(uint32_t vocab) { return vocab <= 65536 ? 2 : 4; }

// ---- writer ----
struct ShardWriter {
    FILE *f;
    char *path;
    uint32_t vocab, tb, chunk_tokens, eot;
    int zlevel;
    uint64_t tok_hash, n_tokens, offset;
    unsigned char *raw, *comp;
    size_t nraw, comp_cap;  // tokens buffered in raw
    ShardChunk *chunks; size_t nchunks, cchunks;
    uint64_t *docs; size_t ndocs, cdocs;
};

ShardWriter *shard_create(const char *path, int vocab, uint64_t tok_hash, int eot, int chunk_tokens, int zlevel) {
    if (vocab < 1 || chunk_tokens < 1 || eot < 0 || eot >= vocab) die("shard_create: bad arguments");
    ShardWriter *w = xcalloc(1, sizeof *w);
    w->path = xstrdup(path);
    w->f = stage_open(path);
    w->vocab = (uint32_t)vocab; w->tb = width_for((uint32_t)vocab);
    w->chunk_tokens = (uint32_t)chunk_tokens; w->eot = (uint32_t)eot;
    w->zlevel = zlevel; w->tok_hash = tok_hash;
    w->raw = xmalloc((size_t)chunk_tokens * w->tb);
    w->comp_cap = compressBound((uLong)chunk_tokens * w->tb);
    w->comp = xmalloc(w->comp_cap);
    unsigned char zero[SHARD_HEADER] = {0};  // header placeholder, rewritten by shard_finish
    if (fwrite(zero, 1, SHARD_HEADER, w->f) != SHARD_HEADER) die("%s: write failed: %s", path, strerror(errno));
    w->offset = SHARD_HEADER;
    return w;
}

static void flush_chunk(ShardWriter *w) {
    if (!w->nraw) return;
    size_t rawb = w->nraw * w->tb;
    uLongf cl = (uLongf)w->comp_cap;
    if (compress2(w->comp, &cl, w->raw, (uLong)rawb, w->zlevel) != Z_OK) die("%s: zlib compression failed", w->path);
    if (fwrite(w->comp, 1, cl, w->f) != cl) die("%s: write failed: %s", w->path, strerror(errno));
    if (w->nchunks == w->cchunks) w->chunks = xrealloc(w->chunks, (w->cchunks = w->cchunks * 2 + 64) * sizeof(ShardChunk));
    w->chunks[w->nchunks++] = (ShardChunk){w->offset, (uint32_t)cl, (uint32_t)w->nraw, crc(w->comp, cl), crc(w->raw, rawb)};
    w->offset += cl;
    w->nraw = 0;
}

static void put_token(ShardWriter *w, int32_t id) {
    if (id < 0 || (uint32_t)id >= w->vocab) die("%s: token id %d outside the vocabulary [0, %u)", w->path, (int)id, w->vocab);
    unsigned char *p = w->raw + w->nraw * w->tb;
    if (w->tb == 2) { p[0] = (unsigned char)id; p[1] = (unsigned char)(id >> 8); }
    else put32(p, (uint32_t)id);
    w->n_tokens++;
    if (++w->nraw == w->chunk_tokens) flush_chunk(w);
}

void shard_add_doc(ShardWriter *w, const int32_t *ids, size_t n) {
    if (w->ndocs == w->cdocs) w->docs = xrealloc(w->docs, (w->cdocs = w->cdocs * 2 + 256) * sizeof(uint64_t));
    w->docs[w->ndocs++] = w->n_tokens;
    for (size_t i = 0; i < n; i++) put_token(w, ids[i]);
    put_token(w, (int32_t)w->eot);
}
uint64_t shard_writer_tokens(const ShardWriter *w) { return w->n_tokens; }
uint64_t shard_writer_docs(const ShardWriter *w) { return w->ndocs; }

uint64_t shard_finish(ShardWriter *w) {
    flush_chunk(w);
    uint64_t index_off = w->offset, docs_off = index_off + (uint64_t)w->nchunks * SHARD_CHUNK_ENTRY;
    uint64_t size = docs_off + 8 * (uint64_t)w->ndocs;
    unsigned char *idx = xmalloc(w->nchunks * SHARD_CHUNK_ENTRY + 1), *dt = xmalloc(w->ndocs * 8 + 1);
    for (size_t i = 0; i < w->nchunks; i++) {
        unsigned char *e = idx + i * SHARD_CHUNK_ENTRY;
        put64(e, w->chunks[i].offset); put32(e + 8, w->chunks[i].comp_bytes); put32(e + 12, w->chunks[i].n_tokens);
        put32(e + 16, w->chunks[i].crc); put32(e + 20, w->chunks[i].raw_crc);
    }
    for (size_t i = 0; i < w->ndocs; i++) put64(dt + 8 * i, w->docs[i]);
    unsigned char h[SHARD_HEADER] = {0};
    memcpy(h, MAGIC, 8);
    put32(h + 8, SHARD_VERSION); put32(h + 12, SHARD_HEADER);
    put32(h + 16, w->vocab); put32(h + 20, w->tb);
    put64(h + 24, w->tok_hash); put64(h + 32, w->n_tokens); put64(h + 40, w->ndocs);
    put64(h + 48, w->nchunks); put32(h + 56, w->chunk_tokens); put32(h + 60, w->eot);
    put64(h + 64, index_off); put64(h + 72, docs_off); put64(h + 80, size);
    put32(h + 88, crc(idx, w->nchunks * SHARD_CHUNK_ENTRY)); put32(h + 92, crc(dt, w->ndocs * 8));
    put32(h + 124, crc(h, 124));
    if (fwrite(idx, 1, w->nchunks * SHARD_CHUNK_ENTRY, w->f) != w->nchunks * SHARD_CHUNK_ENTRY ||
        fwrite(dt, 1, w->ndocs * 8, w->f) != w->ndocs * 8 || fseek(w->f, 0, SEEK_SET) != 0 ||
        fwrite(h, 1, SHARD_HEADER, w->f) != SHARD_HEADER)
        die("%s: write failed: %s", w->path, strerror(errno));
    stage_close(w->f);
    free(idx); free(dt); free(w->raw); free(w->comp); free(w->chunks); free(w->docs); free(w->path); free(w);
    return size;
}

// ---- reader ----
static void pread_all(Shard *s, void *buf, size_t n, uint64_t off) {
    if (s->fd < 0) {
        s->fd = open(s->path, O_RDONLY);
        if (s->fd < 0) die_input("%s: cannot open: %s", s->path, strerror(errno));
    }
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(s->fd, (char *)buf + got, n - got, (off_t)(off + got));
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) die_input("%s: byte offset %llu: read error: %s", s->path, (unsigned long long)(off + got), strerror(errno));
        if (r == 0) die_input("%s: truncated at byte offset %llu: expected %zu more bytes (file changed while reading?)",
                              s->path, (unsigned long long)(off + got), n - got);
        got += (size_t)r;
    }
}

size_t shard_max_comp(const Shard *s) { return compressBound((uLong)s->chunk_tokens * s->token_bytes); }

uint32_t shard_chunk_tokens(const Shard *s, uint64_t c) {
    return c + 1 < s->n_chunks ? s->chunk_tokens : (uint32_t)(s->n_tokens - c * s->chunk_tokens);
}

// Decodes index entry c and checks it against the header (not against its neighbours).
static void parse_entry(const Shard *s, uint64_t c, const unsigned char *e, ShardChunk *k) {
    *k = (ShardChunk){get64(e), get32(e + 8), get32(e + 12), get32(e + 16), get32(e + 20)};
    uint32_t want_n = shard_chunk_tokens(s, c);
    if (k->offset < SHARD_HEADER || k->comp_bytes == 0 || k->comp_bytes > shard_max_comp(s) ||
        k->offset > s->index_offset || k->comp_bytes > s->index_offset - k->offset || k->n_tokens != want_n)
        die_input("%s: byte offset %llu: chunk %llu entry (at byte %llu, %u bytes, %u tokens) does not fit the file; "
                  "expected %u tokens inside bytes %d..%llu", s->path,
                  (unsigned long long)(s->index_offset + c * SHARD_CHUNK_ENTRY), (unsigned long long)c,
                  (unsigned long long)k->offset, k->comp_bytes, k->n_tokens, want_n, SHARD_HEADER,
                  (unsigned long long)s->index_offset);
}

void shard_chunk(Shard *s, uint64_t c, ShardChunk *k) {
    unsigned char e[SHARD_CHUNK_ENTRY];
    if (c >= s->n_chunks) die("shard_chunk: chunk %llu of %llu", (unsigned long long)c, (unsigned long long)s->n_chunks);
    if (s->chunks) { *k = s->chunks[c]; return; }
    pread_all(s, e, SHARD_CHUNK_ENTRY, s->index_offset + c * SHARD_CHUNK_ENTRY);
    parse_entry(s, c, e, k);
}

Shard *shard_open(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) die_input("%s: cannot open: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode)) die_input("%s: is a directory; expected a shard file", path);
    if (!S_ISREG(st.st_mode)) die_input("%s: not a regular file; expected a shard file", path);
    Shard *s = xcalloc(1, sizeof *s);
    s->path = xstrdup(path);
    s->fd = -1;
    uint64_t fsize = (uint64_t)st.st_size;
    if (fsize == 0) die_input("%s: empty file; expected an aoe shard (magic AOESHARD)", path);
    unsigned char h[SHARD_HEADER];
    pread_all(s, h, fsize < SHARD_HEADER ? (size_t)fsize : SHARD_HEADER, 0);
    if (fsize < 8 || memcmp(h, MAGIC, 8))
        die_input("%s: byte offset 0: expected magic \"AOESHARD\" (not an aoe shard file)", path);
    if (fsize < SHARD_HEADER)
        die_input("%s: truncated at byte offset %llu: expected a %d-byte header", path, (unsigned long long)fsize, SHARD_HEADER);
    uint32_t ver = get32(h + 8);
    if (ver != SHARD_VERSION)
        die_input("%s: byte offset 8: shard version %u; this build reads version %d", path, ver, SHARD_VERSION);
    if (get32(h + 124) != crc(h, 124))
        die_input("%s: byte offset 124: header CRC mismatch (stored %08x, computed %08x); the header is corrupt",
                  path, get32(h + 124), crc(h, 124));
    s->vocab = get32(h + 16); s->token_bytes = get32(h + 20);
    s->tok_hash = get64(h + 24); s->n_tokens = get64(h + 32); s->n_docs = get64(h + 40);
    s->n_chunks = get64(h + 48); s->chunk_tokens = get32(h + 56); s->eot = get32(h + 60);
    s->index_offset = get64(h + 64); s->docs_offset = get64(h + 72); s->file_size = get64(h + 80);
    s->docs_crc = get32(h + 92);
    if (get32(h + 12) != SHARD_HEADER)
        die_input("%s: byte offset 12: header size %u; expected %d", path, get32(h + 12), SHARD_HEADER);
    if (s->vocab < 2 || s->token_bytes != width_for(s->vocab) || s->eot >= s->vocab)
        die_input("%s: byte offset 16: vocab %u, token width %u, EOT %u; expected width %u and EOT < vocab",
                  path, s->vocab, s->token_bytes, s->eot, width_for(s->vocab));
    if (fsize < s->file_size)
        die_input("%s: truncated at byte offset %llu: the header says the file has %llu bytes", path,
                  (unsigned long long)fsize, (unsigned long long)s->file_size);
    if (fsize > s->file_size)
        die_input("%s: byte offset %llu: %llu unexpected bytes after the end given in the header", path,
                  (unsigned long long)s->file_size, (unsigned long long)(fsize - s->file_size));
    // Every size is checked against the file size before anything is allocated from it.
    uint64_t want_chunks = s->chunk_tokens ? (s->n_tokens + s->chunk_tokens - 1) / s->chunk_tokens : UINT64_MAX;
    if (!s->chunk_tokens || s->chunk_tokens > (1u << 26) || s->n_chunks != want_chunks ||
        s->index_offset < SHARD_HEADER || s->index_offset > fsize ||
        s->n_chunks > (fsize - s->index_offset) / SHARD_CHUNK_ENTRY ||
        s->docs_offset != s->index_offset + s->n_chunks * SHARD_CHUNK_ENTRY ||
        s->n_docs > (fsize - s->docs_offset) / 8 || s->file_size != s->docs_offset + 8 * s->n_docs ||
        s->n_docs > s->n_tokens)
        die_input("%s: byte offset 32: inconsistent header (%llu tokens, %llu chunks of %u, %llu docs, index at %llu)",
                  path, (unsigned long long)s->n_tokens, (unsigned long long)s->n_chunks, s->chunk_tokens,
                  (unsigned long long)s->n_docs, (unsigned long long)s->index_offset);
    // The index goes through a fixed buffer twice: its CRC first (so corruption is reported as
    // such), then every entry.
    enum { BLOCK = 4096 };
    unsigned char *idx = xmalloc(BLOCK * SHARD_CHUNK_ENTRY);
    uLong icrc = crc32(0L, Z_NULL, 0);
    for (uint64_t c0 = 0; c0 < s->n_chunks; c0 += BLOCK) {
        size_t nb = (size_t)(s->n_chunks - c0 < BLOCK ? s->n_chunks - c0 : BLOCK);
        pread_all(s, idx, nb * SHARD_CHUNK_ENTRY, s->index_offset + c0 * SHARD_CHUNK_ENTRY);
        icrc = crc32(icrc, idx, (uInt)(nb * SHARD_CHUNK_ENTRY));
    }
    if ((uint32_t)icrc != get32(h + 88))
        die_input("%s: byte offset %llu: chunk index CRC mismatch (stored %08x, computed %08x); the index is corrupt",
                  path, (unsigned long long)s->index_offset, get32(h + 88), (uint32_t)icrc);
    s->chunks = xmalloc((size_t)(s->n_chunks ? s->n_chunks : 1) * sizeof(ShardChunk));
    uint64_t off = SHARD_HEADER;
    for (uint64_t c0 = 0; c0 < s->n_chunks; c0 += BLOCK) {
        size_t nb = (size_t)(s->n_chunks - c0 < BLOCK ? s->n_chunks - c0 : BLOCK);
        pread_all(s, idx, nb * SHARD_CHUNK_ENTRY, s->index_offset + c0 * SHARD_CHUNK_ENTRY);
        for (size_t i = 0; i < nb; i++) {
            ShardChunk k;
            parse_entry(s, c0 + i, idx + i * SHARD_CHUNK_ENTRY, &k);
            s->chunks[c0 + i] = k;
            if (k.offset != off)
                die_input("%s: byte offset %llu: chunk %llu is at byte %llu; expected it right after the previous "
                          "one, at %llu", path, (unsigned long long)(s->index_offset + (c0 + i) * SHARD_CHUNK_ENTRY),
                          (unsigned long long)(c0 + i), (unsigned long long)k.offset, (unsigned long long)off);
            off += k.comp_bytes;
        }
    }
    free(idx);
    if (off != s->index_offset)
        die_input("%s: byte offset %llu: chunks end here but the index starts at %llu", path,
                  (unsigned long long)off, (unsigned long long)s->index_offset);
    return s;
}

void shard_drop_index(Shard *s) {
    free(s->chunks);
    s->chunks = NULL;
}

void shard_release_fd(Shard *s) {
    if (s && s->fd >= 0) { close(s->fd); s->fd = -1; }
}
void shard_close(Shard *s) {
    if (!s) return;
    shard_release_fd(s);
    free(s->chunks); free(s->path); free(s);
}

void shard_read_chunk(Shard *s, uint64_t c, unsigned char *comp, unsigned char *raw, int32_t *out) {
    ShardChunk kc;
    shard_chunk(s, c, &kc);
    const ShardChunk *k = &kc;
    unsigned long long at = (unsigned long long)k->offset;
    pread_all(s, comp, k->comp_bytes, k->offset);
    uint32_t got = crc(comp, k->comp_bytes);
    if (got != k->crc)
        die_input("%s: byte offset %llu: chunk %llu CRC mismatch (stored %08x, computed %08x); the shard is corrupt",
                  s->path, at, (unsigned long long)c, k->crc, got);
    uLongf rawn = (uLongf)k->n_tokens * s->token_bytes;
    int zr = uncompress(raw, &rawn, comp, k->comp_bytes);
    if (zr != Z_OK || rawn != (uLongf)k->n_tokens * s->token_bytes)
        die_input("%s: byte offset %llu: chunk %llu does not inflate to %u tokens (zlib: %s)", s->path, at,
                  (unsigned long long)c, k->n_tokens, zr == Z_OK ? "wrong length" : zError(zr));
    if (crc(raw, rawn) != k->raw_crc)
        die_input("%s: byte offset %llu: chunk %llu token CRC mismatch; the shard is corrupt", s->path, at,
                  (unsigned long long)c);
    for (uint32_t i = 0; i < k->n_tokens; i++) {
        uint32_t v = s->token_bytes == 2 ? (uint32_t)raw[2 * i] | (uint32_t)raw[2 * i + 1] << 8 : get32(raw + 4 * (size_t)i);
        if (v >= s->vocab)
            die_input("%s: byte offset %llu: chunk %llu token %u is id %u; expected ids below the vocab size %u",
                      s->path, at, (unsigned long long)c, i, v, s->vocab);
        out[i] = (int32_t)v;
    }
}

uint64_t *shard_read_docs(Shard *s) {
    size_t n = (size_t)s->n_docs;
    unsigned char *b = xmalloc(n * 8 + 1);
    pread_all(s, b, n * 8, s->docs_offset);
    if (crc(b, n * 8) != s->docs_crc)
        die_input("%s: byte offset %llu: document table CRC mismatch; the shard is corrupt", s->path,
                  (unsigned long long)s->docs_offset);
    uint64_t *d = xmalloc((n ? n : 1) * sizeof(uint64_t));
    for (size_t i = 0; i < n; i++) {
        d[i] = get64(b + 8 * i);
        if ((i == 0 && d[i] != 0) || (i > 0 && d[i] <= d[i - 1]) || d[i] >= s->n_tokens)
            die_input("%s: byte offset %llu: document %zu starts at token %llu; expected increasing starts from 0 "
                      "below %llu", s->path, (unsigned long long)(s->docs_offset + 8 * i), i,
                      (unsigned long long)d[i], (unsigned long long)s->n_tokens);
    }
    free(b);
    return d;
}

void shard_verify(Shard *s) {
    uint64_t *docs = shard_read_docs(s);
    unsigned char *comp = xmalloc(shard_max_comp(s)), *raw = xmalloc((size_t)s->chunk_tokens * s->token_bytes);
    int32_t *tok = xmalloc((size_t)s->chunk_tokens * sizeof(int32_t));
    uint64_t d = 0, pos = 0;
    int32_t prev = (int32_t)s->eot;  // "before" the first document
    for (uint64_t c = 0; c < s->n_chunks; c++) {
        shard_read_chunk(s, c, comp, raw, tok);
        for (uint32_t i = 0, nt = shard_chunk_tokens(s, c); i < nt; i++, pos++) {
            if (d < s->n_docs && docs[d] == pos) {
                if (prev != (int32_t)s->eot)
                    die_input("%s: document %llu starts at token %llu without an EOT before it", s->path,
                              (unsigned long long)d, (unsigned long long)pos);
                d++;
            }
            prev = tok[i];
        }
    }
    if (s->n_tokens && prev != (int32_t)s->eot)
        die_input("%s: the last token is %d; expected the EOT token %u closing the last document", s->path,
                  (int)prev, s->eot);
    free(docs); free(comp); free(raw); free(tok);
}
