// ffn.c — the table from `model.ffn.type` to an FfnOps implementation.
#include <string.h>

#include "model/ffn.h"
#include "model/moe.h"
#include "util/common.h"

static const FfnOps *const table[] = {&ffn_dense_ops, &ffn_moe_ops, &ffn_aoe_ops};

int ffn_key_listed(const char *name) {
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (word_in(table[i]->keys, name)) return 1;
    return 0;
}

const FfnOps *ffn_ops_for(const char *type) {
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (!strcmp(table[i]->name, type)) return table[i];
    return NULL;
}
