// export.h — a checkpoint's parameters in a format other tools read: safetensors
// (docs/interop.md). Tensor names and shapes are aoe's own (model/params.h), row-major, used as
// y = x·W; the resolved config goes into the file's metadata.
#ifndef AOE_CKPT_EXPORT_H
#define AOE_CKPT_EXPORT_H

#include "ckpt/ckpt.h"

// Writes m's parameters to `path` atomically as safetensors: F32, or BF16 (round to nearest
// even) when bf16 != 0. Metadata: format "pt", aoe_config (the resolved config JSON), aoe_vocab,
// aoe_step, aoe_tok_hash, aoe_dtype, aoe_layout. Returns 0, or -1 with a message in err.
int export_safetensors(const Model *m, const CkptMeta *meta, const char *path, int bf16, char *err, int errlen);

#endif
