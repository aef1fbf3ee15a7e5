// fuzz.h — shared by the libFuzzer harnesses (tests/fuzz/fuzz_*.c, `make fuzz-NAME`). Each
// harness hands one input to one reader of the product. The readers report bad input through
// die_code (exit 2); die_hook (util/common.h) set to fuzz_die turns that into a longjmp back here, so the process survives
// and goes on fuzzing. Chosen over fork-per-input: no fork cost per execution (libFuzzer runs
// 10^4+ inputs/s in-process), and a crash or sanitizer report still stops the run at the input.
// The cost is leaked memory on the bad-input path, hence ASAN_OPTIONS=detect_leaks=0.
#ifndef AOE_FUZZ_H
#define AOE_FUZZ_H

#include <dirent.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/common.h"

// The input as a file (readers take paths): one per process, rewritten for every input.
static inline const char *fuzz_file(const uint8_t *data, size_t size) {
    static char path[64];
    if (!path[0]) snprintf(path, sizeof path, "/tmp/aoe-fuzz-%d.bin", (int)getpid());
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    if (size && fwrite(data, 1, size, f) != size) abort();
    fclose(f);
    return path;
}

// The input as a NUL-terminated string (malloc'd).
static inline char *fuzz_text(const uint8_t *data, size_t size) {
    char *t = malloc(size + 1);
    memcpy(t, data, size);
    t[size] = 0;
    return t;
}

// Closes every descriptor a reader left open when die() jumped out of it: any descriptor that
// was not open before the first input ran (read from /proc/self/fd).
static inline void fuzz_close_fds(void) {
    static unsigned char before[4096];
    static int marked;
    DIR *d = opendir("/proc/self/fd");
    if (!d) return;
    int self = dirfd(d);
    for (struct dirent *e; (e = readdir(d));) {
        int fd = atoi(e->d_name);
        if (e->d_name[0] == '.' || fd == self || fd >= 4096) continue;
        if (!marked) before[fd] = 1;
        else if (!before[fd]) close(fd);
    }
    closedir(d);
    marked = 1;
}

static jmp_buf *fuzz_jb;
static inline _Noreturn void fuzz_die(int code) { longjmp(*fuzz_jb, code ? code : 1); }

// Runs stmt with die() caught; evaluates to the exit code die would have used (0 = no error).
// (Variadic so that commas inside the statement block are fine.)
#define FUZZ_CATCH(...)                                  \
    ({                                                   \
        static jmp_buf jb_;                              \
        fuzz_close_fds();                                \
        int rc_ = setjmp(jb_);                           \
        if (!rc_) { fuzz_jb = &jb_; die_hook = fuzz_die; __VA_ARGS__; }   \
        die_hook = NULL;                                 \
        fuzz_close_fds();                                \
        rc_;                                             \
    })

#endif
