// tokenizer.h — byte-level BPE: GPT-2-style pre-tokenisation on raw bytes, merges learned from
// data, exact byte round trip for any input (UTF-8 or not). Ids 0..255 are the bytes, 256 is
// <|endoftext|> (the document separator, never produced by encoding text), 257.. are merges in the
// order they were learned. File layout: docs/formats.md, section "Tokenizer".
#ifndef AOE_TOKENIZER_H
#define AOE_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

typedef struct Tokenizer Tokenizer;

enum { TOK_N_BYTES = 256, TOK_EOT_ID = 256, TOK_FIRST_MERGE = 257, TOK_MIN_VOCAB = 257,
       TOK_MAX_VOCAB = 1 << 20,
       TOK_MAX_PIECE = 128 };  // longer pre-tokens are cut (bounds the cost of one BPE run)

Tokenizer *tok_load(const char *path);  // dies (exit 2) with a one-line message on a bad file
void tok_free(Tokenizer *t);
int tok_vocab_size(const Tokenizer *t);
int tok_eot(const Tokenizer *t);
uint64_t tok_hash(const Tokenizer *t);  // identity stored in shards and checkpoints
// Encodes text into malloc'd ids (never NULL). Large inputs are split at safe points and encoded
// on all OpenMP threads; the result is identical to a sequential encode.
int32_t *tok_encode(const Tokenizer *t, const char *text, size_t len, int *n_out);
// Malloc'd, NUL-terminated bytes; <|endoftext|> is rendered as that literal string. Dies on an id
// outside the vocabulary.
char *tok_decode(const Tokenizer *t, const int32_t *ids, int n, size_t *len_out);

// The bytes a token stands for (for display); EOT gives "<|endoftext|>".
const unsigned char *tok_piece(const Tokenizer *t, int id, size_t *len);
// Merge i (0-based) joins tokens (*a, *b) into id TOK_FIRST_MERGE + i.
void tok_merge(const Tokenizer *t, int i, int32_t *a, int32_t *b);
// Writes the tokenizer file atomically; dies on I/O failure.
void tok_save(const Tokenizer *t, const char *path);
// The file image tok_save writes (malloc'd).
unsigned char *tok_serialize(const Tokenizer *t, size_t *len);
// Parses a tokenizer file image; `name` is used in error messages. Dies on bad content.
Tokenizer *tok_from_bytes(const void *buf, size_t len, const char *name);

// Pre-tokenisation: end of the pre-token that starts at byte i of s[0..n). Pieces are GPT-2's
// 's|'t|'re|'ve|'m|'ll|'d| ?L+| ?N+| ?[^sLN]+|s+(?!S)|s+ with L = ASCII letters and all bytes
// >= 0x80, N = ASCII digits, s = ASCII whitespace; pieces are capped at TOK_MAX_PIECE bytes.
size_t tok_pretoken_end(const char *s, size_t n, size_t i);
// A position >= want where the text can be cut without changing its encoding (a '\n' after a
// non-space byte), or n if there is none.
size_t tok_safe_cut(const char *s, size_t n, size_t want);

// Growable id buffer.
typedef struct { int32_t *v; size_t n, cap; } TokIds;
void tokids_push(TokIds *b, int32_t id);
void tokids_append(TokIds *b, const int32_t *ids, size_t n);
void tokids_free(TokIds *b);

// An encoder owns a word -> ids cache; use one per thread. tok_encode creates its own.
typedef struct TokEncoder TokEncoder;
TokEncoder *tok_encoder_new(const Tokenizer *t);
void tok_encoder_free(TokEncoder *e);
void tok_encoder_append(TokEncoder *e, const char *text, size_t len, TokIds *out);

// Training: feed text (any number of calls), then learn merges up to `vocab_size` tokens. Pairs
// seen fewer than 2 times are never merged, so a small corpus can give a smaller vocabulary.
typedef struct TokTrainer TokTrainer;
TokTrainer *tok_trainer_new(void);
void tok_trainer_add(TokTrainer *tr, const char *text, size_t len);
size_t tok_trainer_words(const TokTrainer *tr);  // distinct pre-tokens seen so far
Tokenizer *tok_trainer_finish(TokTrainer *tr, int vocab_size);  // frees tr
// Builds a tokenizer from a merge list (used by training and loading).
Tokenizer *tok_from_merges(const int32_t (*merges)[2], int n_merges);

#endif
