// fuzz_tasks.c — the eval task-file reader (JSONL items: context, choices, gold, group, ...).
#include "eval/tasks.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = fuzz_text(data, size);
    FUZZ_CATCH({
        Task *t = task_parse_jsonl(text, size, "fuzz");
        task_free(t);
    });
    free(text);
    return 0;
}
