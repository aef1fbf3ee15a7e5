// shard.h — token shards: a fixed header, the token stream in zlib-compressed chunks (each with a
// CRC32), a chunk index and a document table. Layout: docs/formats.md, section "Shard".
// Readers validate every size against the header and the file before trusting it, and report
// problems as one line "aoe: <file>: byte offset N: <what was expected>" with exit code 2.
#ifndef AOE_SHARD_H
#define AOE_SHARD_H

#include <stddef.h>
#include <stdint.h>

// Default tokens per chunk: a shuffled window costs about one inflate of 8 KB (16-bit tokens);
// 4x larger chunks compress ~7% better but make random access ~3.5x slower.
enum { SHARD_VERSION = 1, SHARD_HEADER = 128, SHARD_CHUNK_ENTRY = 24, SHARD_DEFAULT_CHUNK = 4096 };

// ---- writing (through staging.h: nothing appears until stage_commit) ----
typedef struct ShardWriter ShardWriter;
ShardWriter *shard_create(const char *path, int vocab, uint64_t tok_hash, int eot, int chunk_tokens,
                          int zlevel);
// Appends one document: its tokens followed by the EOT token.
void shard_add_doc(ShardWriter *w, const int32_t *ids, size_t n);
uint64_t shard_writer_tokens(const ShardWriter *w);
uint64_t shard_writer_docs(const ShardWriter *w);
uint64_t shard_finish(ShardWriter *w);  // writes index + header, closes; returns the file size

// ---- reading ----
typedef struct { uint64_t offset; uint32_t comp_bytes, n_tokens, crc, raw_crc; } ShardChunk;
typedef struct {
    char *path;
    uint32_t vocab, token_bytes, chunk_tokens, eot;
    uint64_t tok_hash, n_tokens, n_docs, n_chunks, index_offset, docs_offset, file_size;
    uint32_t docs_crc;
    ShardChunk *chunks;  // the validated chunk index (n_chunks entries), or NULL after shard_drop_index
    int fd;              // -1 while closed; opened on demand
} Shard;

// Reads and validates the header and the whole chunk index. Dies on bad input.
Shard *shard_open(const char *path);
// Frees the in-memory index: entries are then re-read from the file (24 bytes) when a chunk is
// needed, so a reader's memory does not depend on the shard's size (the loader does this).
void shard_drop_index(Shard *s);
void shard_close(Shard *s);
void shard_release_fd(Shard *s);      // closes the descriptor; the next read reopens it
// Index entry of chunk c (read from the file, checked against the header).
void shard_chunk(Shard *s, uint64_t c, ShardChunk *k);
uint32_t shard_chunk_tokens(const Shard *s, uint64_t c);  // tokens in chunk c
// Decompresses chunk c into out[0 .. shard_chunk_tokens(s, c)), checking both CRCs and every id.
// `comp` is scratch of at least shard_max_comp(s) bytes, `raw` of chunk_tokens*token_bytes.
void shard_read_chunk(Shard *s, uint64_t c, unsigned char *comp, unsigned char *raw, int32_t *out);
size_t shard_max_comp(const Shard *s);
// The first token of every document (malloc'd, n_docs entries), validated.
uint64_t *shard_read_docs(Shard *s);
// Reads and checks everything (all chunks, the document table, EOT before every document start).
void shard_verify(Shard *s);

#endif
