// fuzz_ckpt.c — the checkpoint reader: header, metadata, config and tensor table, then the
// tensors into a model (sizes come from the checked config, so the inputs stay small).
#include "ckpt/ckpt.h"
#include "fuzz.h"
#include "fuzz_crc.h"
#include "model/model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file(data, size);
    FUZZ_CATCH({
        static Config c;
        int V;
        ckpt_read_config(path, &c, &V);
        // skip models a small input cannot hold anyway: their allocation, not the reader, would be tested
        if ((double)c.d_model * c.d_model * c.n_layer * 16 + (double)V * c.d_model * 4 <= 4.0 * size + 1e6) {
            Model *m = ckpt_load_model(path, 1, NULL);
            model_free(m);
        }
    });
    return 0;
}

FUZZ_CRC_MUTATOR(fuzz_fix_ckpt)
