// fuzz_shard.c — the token-shard reader: header, chunk index, every chunk (CRCs, zlib, ids).
#include "data/shard.h"
#include "fuzz.h"
#include "fuzz_crc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file(data, size);
    FUZZ_CATCH({
        Shard *s = shard_open(path);
        unsigned char *comp = malloc(shard_max_comp(s) + 1), *raw = malloc((size_t)s->chunk_tokens * s->token_bytes + 1);
        int32_t *tok = malloc(sizeof(int32_t) * ((size_t)s->chunk_tokens + 1));
        for (uint64_t c = 0; c < s->n_chunks && c < 64; c++) shard_read_chunk(s, c, comp, raw, tok);
        free(comp); free(raw); free(tok);
        shard_close(s);
    });
    return 0;
}

FUZZ_CRC_MUTATOR(fuzz_fix_shard)
