// mem.c — see mem.h.
#include "util/mem.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util/common.h"

int mem_dry;
static double dry_bytes, dry_note;
static int dry_fd = -1;

// Reports the count so far to the parent and ends the child (the build cannot go on).
static void dry_finish(int complete) {
    double msg[3] = {dry_bytes, complete, dry_note};
    if (write(dry_fd, msg, sizeof msg) != (ssize_t)sizeof msg) _exit(3);
    _exit(0);
}

void mem_dry_note(double v) { dry_note = v; }

void *mem_dry_alloc(size_t bytes) {
    dry_bytes += (double)bytes;
    size_t len = bytes + 64;  // 64-byte header: the size (for realloc), keeps 64-byte alignment
    void *p = len < bytes ? MAP_FAILED
                          : mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) dry_finish(0);
    *(size_t *)p = bytes;
    return (char *)p + 64;
}

void *mem_dry_realloc(void *q, size_t bytes) {
    size_t old = q ? *(size_t *)((char *)q - 64) : 0;
    void *p = mem_dry_alloc(bytes);
    dry_bytes -= (double)(old < bytes ? old : bytes);  // only the growth is new memory
    if (q) memcpy(p, q, old < bytes ? old : bytes);
    return p;
}

static double resident_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, res = 0;
    if (f) {
        if (fscanf(f, "%lu %lu", &size, &res) != 2) res = 0;
        fclose(f);
    }
    return (double)res * (double)sysconf(_SC_PAGESIZE);
}

int mem_count(void (*build)(void *ctx), void *ctx, MemCount *out) {
    memset(out, 0, sizeof *out);
    out->base = resident_bytes();
    int fd[2];
    if (pipe(fd)) return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) { close(fd[0]); close(fd[1]); return -1; }
    if (pid == 0) {
        close(fd[0]);
        dry_fd = fd[1];
        mem_dry = 1;
        alarm(60);  // a build that touches what it allocates would take long: give up, no estimate
        build(ctx);
        dry_finish(1);
    }
    close(fd[1]);
    double msg[3];
    ssize_t got = read(fd[0], msg, sizeof msg);
    close(fd[0]);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
    if (got != (ssize_t)sizeof msg) return -1;
    out->counted = msg[0];
    out->complete = msg[1] != 0;
    out->note = msg[2];
    return 0;
}

// A "key: N kB" line of /proc/meminfo in bytes, or -1.
static double meminfo(const char *key) {
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    double v = -1;
    size_t k = strlen(key);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, key, k) && line[k] == ':') { v = strtod(line + k + 1, NULL) * 1024; break; }
    if (f) fclose(f);
    return v;
}

static double read_num(const char *path) {
    FILE *f = fopen(path, "r");
    char buf[64] = "";
    if (!f) return -1;
    if (!fgets(buf, sizeof buf, f)) buf[0] = 0;
    fclose(f);
    if (!strncmp(buf, "max", 3) || !buf[0]) return -1;
    return strtod(buf, NULL);
}

double mem_available(const char **what) {
    const char *t = getenv("AOE_TEST_MEM_AVAILABLE");  // test hook: a machine of this many bytes
    if (t && *t) { *what = "AOE_TEST_MEM_AVAILABLE"; return strtod(t, NULL); }
    double avail = meminfo("MemAvailable");
    *what = "MemAvailable";
    // cgroup v2 (the container's own limit), else v1
    double lim = read_num("/sys/fs/cgroup/memory.max"), cur = read_num("/sys/fs/cgroup/memory.current");
    if (lim < 0) {
        lim = read_num("/sys/fs/cgroup/memory/memory.limit_in_bytes");
        cur = read_num("/sys/fs/cgroup/memory/memory.usage_in_bytes");
        if (lim > 1e18) lim = -1;  // v1 "no limit" is a huge number
    }
    if (lim > 0 && cur >= 0 && (avail < 0 || lim - cur < avail)) {
        avail = lim - cur;
        *what = "cgroup memory.max - memory.current";
    }
    return avail;
}

const char *mem_fmt(double b, char *buf, size_t n) {
    static const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    int i = 0;
    while (b >= 1024 && i < 5) { b /= 1024; i++; }
    snprintf(buf, n, i ? "%.2f %s" : "%.0f %s", b, u[i]);
    return buf;
}
