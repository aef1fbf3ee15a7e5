// prof.c — see prof.h.
#include "util/prof.h"

#include <string.h>

#include "util/common.h"

int prof_enabled;
double prof_acc[PROF_N];

double prof_now(void) { return now_sec(); }
void prof_reset(void) { memset(prof_acc, 0, sizeof prof_acc); }
const char *prof_name(int phase) {
    static const char *names[PROF_N] = {"attention", "expert_products", "dispatch", "norms_elementwise",
                                        "lm_head", "optimizer"};
    return phase >= 0 && phase < PROF_N ? names[phase] : "?";
}
