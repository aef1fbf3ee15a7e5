// fuzz_tokenizer.c — the tokenizer file reader, then an encode/decode round trip with it.
#include "data/tokenizer.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file(data, size);
    FUZZ_CATCH({
        Tokenizer *t = tok_load(path);
        static const char text[] = "The quick brown fox, 42 times.\n";
        int n;
        int32_t *ids = tok_encode(t, text, sizeof text - 1, &n);
        size_t len;
        char *back = tok_decode(t, ids, n, &len);
        if (len != sizeof text - 1 || memcmp(back, text, len)) abort();  // lossless for any valid file
        free(ids); free(back);
        tok_free(t);
    });
    return 0;
}
