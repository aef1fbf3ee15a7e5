// staging.c — see staging.h.
#include "data/staging.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/common.h"

typedef struct { char *path, *tmp; FILE *f; } Staged;
static Staged *staged;
static int n_staged, cap_staged, hooked;

// Ctrl-C or kill while writing: remove the temp files too (unlink is async-signal-safe), then
// die of the same signal. Only installed where nobody else handles the signal.
static void on_signal(int sig) {
    for (int i = 0; i < n_staged; i++)
        if (staged[i].tmp) unlink(staged[i].tmp);
    signal(sig, SIG_DFL);
    raise(sig);
}
static void hook_signal(int sig) {
    struct sigaction old;
    if (sigaction(sig, NULL, &old) == 0 && old.sa_handler == SIG_DFL) signal(sig, on_signal);
}

FILE *stage_open(const char *path) {
    if (!hooked) { atexit(stage_abort); hook_signal(SIGINT); hook_signal(SIGTERM); hook_signal(SIGHUP); hooked = 1; }
    if (n_staged == cap_staged) staged = xrealloc(staged, (size_t)(cap_staged = cap_staged * 2 + 8) * sizeof(Staged));
    size_t n = strlen(path) + 32;
    char *tmp = xmalloc(n);
    snprintf(tmp, n, "%s.tmp.%d", path, (int)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) { int e = errno; free(tmp); die("%s: cannot create: %s", path, strerror(e)); }
    staged[n_staged++] = (Staged){xstrdup(path), tmp, f};
    return f;
}

static Staged *find(FILE *f) {
    for (int i = 0; i < n_staged; i++)
        if (staged[i].f == f) return &staged[i];
    die("staging: internal error: unknown file");
}

void stage_close(FILE *f) {
    Staged *s = find(f);
    int err = 0;
    if (fflush(f) != 0 || ferror(f)) err = errno ? errno : EIO;
    if (!err && fsync(fileno(f)) != 0) err = errno;
    if (fclose(f) != 0 && !err) err = errno ? errno : EIO;
    s->f = NULL;
    if (err) die("%s: write failed: %s (no output was replaced)", s->path, strerror(err));
}

void stage_commit(void) {
    for (int i = 0; i < n_staged; i++) {
        if (staged[i].f) die("staging: internal error: %s committed while open", staged[i].path);
        if (rename(staged[i].tmp, staged[i].path) != 0)
            die("%s: cannot rename into place: %s", staged[i].path, strerror(errno));
        char *d = xstrdup(staged[i].path);  // make the rename durable
        int fd = open(dirname(d), O_RDONLY);
        if (fd >= 0) { fsync(fd); close(fd); }
        free(d);
        free(staged[i].path); free(staged[i].tmp);
        staged[i].path = staged[i].tmp = NULL;
    }
    n_staged = 0;
}

void stage_abort(void) {
    for (int i = 0; i < n_staged; i++) {
        if (staged[i].f) fclose(staged[i].f);
        if (staged[i].tmp) unlink(staged[i].tmp);
        free(staged[i].path); free(staged[i].tmp);
    }
    n_staged = 0;
}
