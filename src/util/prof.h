// prof.h — per-phase wall-clock accounting for `aoe bench`: cheap enough to leave in the hot
// path (one branch when disabled). Phases are coarse on purpose: they answer "where does a
// training step go", not "which loop".
#ifndef AOE_PROF_H
#define AOE_PROF_H

enum {
    PROF_ATTN,      // attention projections, scores, softmax, RoPE
    PROF_EXPERT,    // expert / dense FFN matrix products
    PROF_DISPATCH,  // routing, selection, gather / scatter, counting sort
    PROF_ELEM,      // norms, residual adds, embedding, elementwise
    PROF_HEAD,      // LM head and cross-entropy
    PROF_OPT,       // gradient clipping and AdamW
    PROF_N
};

extern int prof_enabled;
extern double prof_acc[PROF_N];
double prof_now(void);
static inline double prof_begin(void) { return prof_enabled ? prof_now() : 0; }
static inline void prof_end(int phase, double t0) {
    if (prof_enabled) prof_acc[phase] += prof_now() - t0;
}
void prof_reset(void);
const char *prof_name(int phase);

#endif
