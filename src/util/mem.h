// mem.h — memory estimates before allocating: a "dry build" runs the allocation code of a model
// (or anything else) in a forked child where every checked allocation (xmalloc, xcalloc,
// xrealloc, falloc) is counted and only reserved (mmap MAP_NORESERVE, never touched), so the
// estimate follows whatever the code allocates without a second copy of its sizes; and the limit
// the machine sets (MemAvailable, cgroup memory.max).
#ifndef AOE_MEM_H
#define AOE_MEM_H

#include <stddef.h>

extern int mem_dry;  // set only inside the estimating child
void *mem_dry_alloc(size_t bytes);
void *mem_dry_realloc(void *p, size_t bytes);

typedef struct {
    double base;     // bytes resident before the build (code, libraries, tokenizer, loaders)
    double counted;  // bytes the build allocated
    int complete;    // 0: the address space ran out first (counted is a lower bound)
    double note;     // what the build passed to mem_dry_note (0 if nothing)
} MemCount;
// Inside a build: one number to hand back to the parent with the count (e.g. a size the build
// computed).
void mem_dry_note(double v);

// Runs build(ctx) in a forked child in dry mode and returns what it allocated. build must only
// allocate and write small things (no memset of big buffers; params_init is skipped in dry mode).
// Returns 0, or -1 if the child failed (then the caller goes on without an estimate).
int mem_count(void (*build)(void *ctx), void *ctx, MemCount *out);
// Bytes this process may still use: min(MemAvailable, cgroup memory.max - memory.current); what
// names the source. Returns < 0 if unknown.
double mem_available(const char **what);
// "1.23 GiB" into buf.
const char *mem_fmt(double bytes, char *buf, size_t n);

#endif
