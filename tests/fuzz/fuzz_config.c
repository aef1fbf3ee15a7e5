// fuzz_config.c — the config reader (JSON text -> Config, schema checks) and the model's
// config rules (model_check_config), as `aoe train`, `--resume` and checkpoints use them.
#include "fuzz.h"
#include "model/model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = fuzz_text(data, size);
    static Config c;  // static: a longjmp must not leave it in a dead frame
    char err[256], buf[512];
    FUZZ_CATCH({
        if (config_from_json_text(&c, text, "fuzz.json", err, sizeof err) == 0) {
            model_check_config(&c, buf, sizeof buf);
            free(config_to_json(&c));
        }
    });
    free(text);
    return 0;
}
