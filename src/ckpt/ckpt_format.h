// ckpt_format.h — the on-disk layout of a checkpoint (docs/formats.md, "Checkpoint") and the
// low-level reader shared by ckpt.c (load) and inspect.c (`aoe inspect`). Private to src/ckpt.
// The reader checks the header, the file size and every section's CRC before trusting any field;
// every problem is reported as "file: byte N: what was expected" and exits 2.
#ifndef AOE_CKPT_FORMAT_H
#define AOE_CKPT_FORMAT_H

#include <stdint.h>
#include <stdio.h>

#include "ckpt/ckpt.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "aoe checkpoints are little-endian; this reader/writer assumes a little-endian host"
#endif

#define CKPT_MAGIC "AOECKPT"  // 8 bytes with the NUL
#define CKPT_VERSION 1
#define CKPT_HEADER_BYTES 128
#define CKPT_META_BYTES 160
#define CKPT_ENTRY_BYTES 128
#define CKPT_FLAG_ZLIB 1u
#define CKPT_NAME 64

enum { SEC_CONFIG, SEC_META, SEC_TABLE, SEC_PAYLOAD, N_SEC };
enum { ARR_W, ARR_M, ARR_V, N_ARR };  // payload arrays: parameters, AdamW m, AdamW v

typedef struct {
    uint32_t version, flags, n_tensors;
    uint64_t file_size, payload_raw;  // payload_raw = 3 * total * 4 (bytes once inflated)
    uint64_t off[N_SEC], len[N_SEC];
    uint32_t crc[N_SEC];
} CkptHeader;

typedef struct {
    char name[CKPT_NAME];
    uint32_t dtype, ndim, shape[4];
    uint64_t off, n;       // float offset into each payload array, element count
    uint32_t crc[N_ARR];   // CRC32 of the tensor's bytes in each array
} CkptTensor;

typedef struct {
    const char *path;
    FILE *f;
    uint64_t size;      // actual file size
    CkptHeader h;
    char *config_json;  // NUL-terminated copy of the config section
    Config cfg;
    TrainMeta meta;
    long adam_t;
    int V;
    uint64_t total;     // floats per payload array
    CkptTensor *t;
    int n_bad;          // inspect mode: CRC failures found by ckpt_file_read_payload
    uint64_t bad_off;   // inspect mode: byte offset and description of the first failure
    char bad_msg[256];
} CkptFile;

// Reports "path: byte off: message" and exits 2.
_Noreturn void ckpt_fail(const char *path, uint64_t off, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
// Opens and validates header, sizes, config, meta and table (all CRCs). Exits 2 on any problem.
void ckpt_file_open(CkptFile *cf, const char *path);
// Reads the payload arrays into w/m/v (each [total] floats, or NULL to skip / verify only) and
// checks every tensor CRC and the payload CRC. verify_all: read and check even arrays passed as
// NULL; report = 1 prints each failure and counts it in cf->n_bad instead of exiting.
void ckpt_file_read_payload(CkptFile *cf, float *w, float *m, float *v, int verify_all, int report);
void ckpt_file_close(CkptFile *cf);
// Checks the tensor table against a model's parameter table (names, shapes, offsets).
void ckpt_file_check_table(const CkptFile *cf, const Params *P);
uint32_t ckpt_crc(uint32_t crc, const void *p, uint64_t n);

#endif
