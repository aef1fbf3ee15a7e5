// prepare_util.h — small helpers shared by `aoe prepare` and `aoe tokenize`: option parsing that
// reports bad values in the usual one-line form, document cutting, POS-tag stripping.
#ifndef AOE_PREPARE_UTIL_H
#define AOE_PREPARE_UTIL_H

#include <stddef.h>
#include <stdint.h>

// Parses an unsigned integer option value in [lo, hi]; dies (exit 2) naming the option otherwise.
unsigned long long parse_uint(const char *opt, const char *v, unsigned long long lo, unsigned long long hi);
double parse_frac(const char *opt, const char *v);  // a number in [0, 1)

// End of the document starting at `start`: the first blank line ("\n\n" or "\n\r\n") at or after
// start + doc_bytes (the document keeps it), else the next newline after 4 * doc_bytes, else the
// end. doc_bytes 0: the rest of the file is one document.
size_t doc_end(const char *s, size_t n, size_t start, size_t doc_bytes);

// Brown-corpus text "The/at jury/nn ./." -> "The jury ." in place: every whitespace-separated
// token loses its last "/..." part; whitespace is kept. Returns the new length.
size_t strip_pos_tags(char *s, size_t n);

int has_glob_match(const char *pattern);

// The seeded train/validation split: picks n_val of n documents by a partial Fisher-Yates shuffle
// (the first n_val draws), kept sparse so memory grows with n_val, not n. Returns a bitmap of
// (n + 7) / 8 bytes, bit d set for a validation document (caller frees).
unsigned char *pick_val_docs(uint64_t n, uint64_t n_val, uint64_t seed);
#define IS_VAL(bits, d) ((bits)[(d) >> 3] >> ((d) & 7) & 1)

#endif
