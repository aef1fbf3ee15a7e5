// ckpt_format.h — the on-disk layout of a checkpoint (docs/formats.md, "Checkpoint") and the
// low-level reader shared by ckpt_read.c (load) and inspect.c (`aoe inspect`). Private to src/ckpt.
// The reader checks the header, the file size and every section's CRC before trusting any field;
// every problem is reported as "file: byte N: what was expected" and exits 2. It reads version 2
// (any number of named arrays, named meta scalars) and version 1 (parameters + AdamW m, v; fixed
// meta slots), presenting both the same way.
#ifndef AOE_CKPT_FORMAT_H
#define AOE_CKPT_FORMAT_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "ckpt/ckpt.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "aoe checkpoints are little-endian; this reader/writer assumes a little-endian host"
#endif

#define CKPT_MAGIC "AOECKPT"  // 8 bytes with the NUL
#define CKPT_VERSION 2        // written; 1 is still read
#define CKPT_HEADER_BYTES 128
#define CKPT_META_ENTRY 32    // v2: name[20], u32 type, u64 value
#define CKPT_V1_META_BYTES 160
#define CKPT_V1_ENTRY_BYTES 128
#define CKPT_FLAG_ZLIB 1u
#define CKPT_NAME 64
#define CKPT_MAX_ARRAYS (CKPT_MAX_STATE + 1)
// v2 tensor-table entry: name[64], dtype, ndim, shape[4], offset, count, then one CRC per array.
#define CKPT_ENTRY_BYTES(n_arrays) (104 + 4 * (n_arrays))

enum { SEC_CONFIG, SEC_META, SEC_TABLE, SEC_PAYLOAD, N_SEC };

typedef struct {
    uint32_t version, flags, n_tensors, n_arrays, n_meta;
    uint64_t file_size, payload_raw;  // payload_raw = n_arrays * total * 4 (bytes once inflated)
    uint64_t off[N_SEC], len[N_SEC];
    uint32_t crc[N_SEC];
} CkptHeader;

typedef struct {
    char name[CKPT_NAME];
    uint32_t dtype, ndim, shape[4];
    uint64_t off, n;                 // float offset into each payload array, element count
    uint32_t crc[CKPT_MAX_ARRAYS];   // CRC32 of the tensor's bytes in each array
} CkptTensor;

typedef struct {
    const char *path;
    FILE *f;
    uint64_t size;      // actual file size
    CkptHeader h;
    char *config_json;  // NUL-terminated copy of the config section
    Config cfg;
    CkptMeta meta;
    int n_arrays;       // arrays in the payload; array 0 is the parameters
    char array_name[CKPT_MAX_ARRAYS][CKPT_ARRAY_NAME];
    int V;
    uint64_t total;     // floats per payload array
    uint64_t entry_bytes;
    CkptTensor *t;
    int n_bad;          // inspect mode: CRC failures found by ckpt_file_read_payload
    uint64_t bad_off;   // inspect mode: byte offset and description of the first failure
    char bad_msg[320];
} CkptFile;

// Reports "path: byte off: message" and exits 2.
_Noreturn void ckpt_fail(const char *path, uint64_t off, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
// Opens and validates header, sizes, config, meta and table (all CRCs). Exits 2 on any problem.
void ckpt_file_open(CkptFile *cf, const char *path);
// Reads the payload arrays into dst[a] (NULL to skip / verify only) and checks every tensor CRC
// and the payload CRC. P NULL: each dst[a] is [total] floats in the file's layout; else P's
// table (checked with ckpt_file_check_table) gives the layout, and of a sharded tensor only P's
// slices are kept. verify_all: read and check even arrays passed as
// NULL; report = 1 prints each failure and counts it in cf->n_bad instead of exiting.
void ckpt_file_read_payload(CkptFile *cf, float *const *dst, const Params *P, int verify_all, int report);
void ckpt_file_close(CkptFile *cf);
// Checks the tensor table against a model's parameter table (names, shapes, offsets).
void ckpt_file_check_table(const CkptFile *cf, const Params *P);
uint32_t ckpt_crc(uint32_t crc, const void *p, uint64_t n);

// Little-endian fields.
static inline void put32(unsigned char *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i)); }
static inline void put64(unsigned char *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i)); }
static inline uint32_t get32(const unsigned char *p) { uint32_t v = 0; for (int i = 3; i >= 0; i--) v = v << 8 | p[i]; return v; }
static inline uint64_t get64(const unsigned char *p) { uint64_t v = 0; for (int i = 7; i >= 0; i--) v = v << 8 | p[i]; return v; }

#endif
