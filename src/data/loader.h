// loader.h — streams training windows from token shards with bounded memory.
//
// A window is seq_len+1 consecutive tokens of one shard's token stream (documents separated by
// EOT); window j of a shard starts at token j*seq_len, so windows do not overlap except for the
// one token that is both the last target of a window and the first input of the next. Windows of
// all shards are numbered globally in spec order. Each epoch visits them in a seeded order (a
// keyed Feistel permutation: O(1) memory, no table), and rank r of `world` takes positions
// r, r+world, r+2*world, ... of that order; the last total % world positions of an epoch are
// skipped so every rank sees the same count. Memory does not grow with the data: a header per
// shard (chunk index entries are read from the file when a chunk is needed) and a cache of the 4
// most recently decompressed chunks.
#ifndef AOE_LOADER_H
#define AOE_LOADER_H

#include <stdint.h>

#include "data/tokenizer.h"

typedef struct Loader Loader;
// Plain data saved in checkpoints. cursor counts the positions of the epoch's order consumed by
// all ranks together (rank count independent: a run resumes on another number of ranks when
// cursor is a multiple of it). n_windows is the data's total window count when the position
// was taken; loader_set_pos refuses a position taken on different data (0 = not checked).
typedef struct { uint64_t epoch, cursor; uint64_t seed; uint64_t n_windows; } LoaderPos;

// spec: comma-separated list of shard files and/or glob patterns. Dies with a clear message on
// bad input (no match, unreadable/corrupt shard, shards from different tokenizers, too little data).
Loader *loader_open(const char *spec, int seq_len, int batch, uint64_t seed, int shuffle, int rank, int world);
int loader_vocab(const Loader *L);
uint64_t loader_tok_hash(const Loader *L);
uint64_t loader_n_windows(const Loader *L);  // windows per epoch for this rank
uint64_t loader_total_windows(const Loader *L);  // all ranks
uint64_t loader_total_tokens(const Loader *L);
// Fills x and y ([batch*seq_len] each): y[i] is the token after x[i]. Rolls over to the next epoch.
void loader_next(Loader *L, int32_t *x, int32_t *y);
void loader_get_pos(const Loader *L, LoaderPos *p);
void loader_set_pos(Loader *L, const LoaderPos *p);
void loader_close(Loader *L);

// Dies naming the first shard unless the data was made for this vocabulary size and tokenizer
// (pass 0 to skip either check). Use before training a model of a given vocab/tokenizer.
void loader_require(const Loader *L, int vocab, uint64_t tok_hash);
// The seq_len+1 tokens of global window g (0 <= g < loader_total_windows), unshuffled.
void loader_window(Loader *L, uint64_t g, int32_t *tokens);
// Bytes per target token over global windows [0, nwin) (unshuffled; the last seq_len tokens of
// each window, as scored; EOT counts no byte): turns a mean loss over those windows into bits per
// byte. NAN when they hold no byte.
double loader_bytes_per_token(Loader *L, const Tokenizer *tk, uint64_t nwin);
// The global window index the permutation of `epoch` puts at position q (a bijection on
// [0, loader_total_windows)); identity when shuffling is off.
uint64_t loader_permute(const Loader *L, uint64_t epoch, uint64_t q);

// Feistel permutation of [0, n) keyed by `key` (exposed for tests).
uint64_t feistel_permute(uint64_t x, uint64_t n, uint64_t key);
// Expands a comma-separated list of files / glob patterns; dies on a pattern that matches nothing.
char **data_expand_spec(const char *spec, int *n);
void data_free_spec(char **paths, int n);

#endif
