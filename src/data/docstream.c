// docstream.c — see docstream.h. The buffer holds [pos, len) text ready to cut into documents and,
// with strip_tags, [len, raw_end) bytes read but not yet stripped (a word cut by the read).
#include "data/docstream.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "data/prepare_util.h"
#include "util/common.h"

struct DocStream {
    FILE *f;
    char *path;
    DocFormat fmt;
    char *buf;
    size_t cap, pos, len, raw_end;
    uint64_t raw, text;  // bytes read from the file; bytes of text made ready (after stripping)
    int eof;
    long line;  // lines consumed, for messages (sep and jsonl)
    char *doc;  // jsonl: the decoded text of the current document
    size_t doc_cap;
};

enum { READ_BYTES = 1 << 20 };

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
static int is_blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!is_space(s[i]) && s[i] != '\f' && s[i] != '\v') return 0;
    return 1;
}

DocStream *docs_open(const char *path, const DocFormat *fmt) {
    if (is_directory(path)) die_input("%s: is a directory, expected a file", path);
    FILE *f = fopen(path, "rb");
    if (!f) die_input("%s: cannot open: %s", path, strerror(errno));
    DocStream *s = xcalloc(1, sizeof *s);
    s->f = f;
    s->path = xstrdup(path);
    s->fmt = *fmt;
    s->cap = READ_BYTES + 1;
    s->buf = xmalloc(s->cap);
    return s;
}

void docs_close(DocStream *s) {
    if (!s) return;
    fclose(s->f);
    free(s->path); free(s->buf); free(s->doc); free(s);
}

uint64_t docs_raw_bytes(const DocStream *s) { return s->raw; }

// Reads one more block (moving unread text to the front first). Returns 0 once the file is done.
static int more(DocStream *s) {
    if (s->eof) return 0;
    memmove(s->buf, s->buf + s->pos, s->raw_end - s->pos);
    s->len -= s->pos; s->raw_end -= s->pos; s->pos = 0;
    if (s->cap - s->raw_end < READ_BYTES + 1) s->buf = xrealloc(s->buf, s->cap = 2 * s->cap + READ_BYTES);
    char *in = s->buf + s->raw_end;
    size_t got = fread(in, 1, READ_BYTES, s->f);
    if (got == 0) {
        if (ferror(s->f)) die("%s: read error at byte %llu: %s", s->path, (unsigned long long)s->raw, strerror(errno));
        s->eof = 1;
        if (s->raw == 0) die_input("%s: empty file; expected text", s->path);
    }
    const char *nul = memchr(in, 0, got);
    if (nul)
        die_input("%s: byte offset %llu: NUL byte; expected text (a binary file? --exclude PATTERN skips files in a directory)", s->path,
                  (unsigned long long)(s->raw + (uint64_t)(nul - in)));
    s->raw += got;
    s->raw_end += got;
    size_t cut = s->raw_end;
    if (s->fmt.strip_tags && !s->eof)
        while (cut > s->len && !is_space(s->buf[cut - 1])) cut--;  // strip whole words only
    size_t n = s->fmt.strip_tags ? strip_pos_tags(s->buf + s->len, cut - s->len) : cut - s->len;
    memmove(s->buf + s->len + n, s->buf + cut, s->raw_end - cut);
    s->raw_end = s->len + n + (s->raw_end - cut);
    s->len += n;
    s->text += n;
    if (s->eof && s->text == 0) die_input("%s: no text left after removing POS tags", s->path);
    return 1;
}

// Text: doc_end() on the buffered text. Reading 4 * doc_bytes + 3 bytes ahead makes its answer the
// same as on the whole file, unless it needs the end of a line that is not read yet.
static int next_text(DocStream *s, const char **text, size_t *n) {
    size_t db = s->fmt.doc_bytes, want = db ? 4 * db + 3 : SIZE_MAX;
    while (s->len - s->pos < want && more(s)) {}
    if (s->pos == s->len) return 0;
    for (;;) {
        size_t e = doc_end(s->buf, s->len, s->pos, db);
        if (e < s->len || s->eof) {
            *text = s->buf + s->pos;
            *n = e - s->pos;
            s->pos = e;
            return 1;
        }
        size_t have = s->len - s->pos;
        while (s->len - s->pos == have && more(s)) {}
    }
}

// Finds the end of the next line from s->pos + *scan, reading more as needed: returns its offset
// from s->pos (the '\n'), or the text length at the end of the file (no newline).
static size_t line_end(DocStream *s, size_t *scan, int *has_nl) {
    for (;;) {
        size_t avail = s->len - s->pos;
        const char *nl = *scan < avail ? memchr(s->buf + s->pos + *scan, '\n', avail - *scan) : NULL;
        if (nl) { *has_nl = 1; return (size_t)(nl - (s->buf + s->pos)); }
        *scan = avail;
        if (!more(s)) { *has_nl = 0; return s->len - s->pos; }
    }
}

static int next_sep(DocStream *s, const char **text, size_t *n) {
    size_t seplen = strlen(s->fmt.sep), start = 0, scan = 0;  // offsets from s->pos
    for (;;) {
        int has_nl;
        size_t le = line_end(s, &scan, &has_nl), e = le;
        const char *base = s->buf + s->pos;
        if (!has_nl && start == le) {  // end of file
            s->pos = s->len;
            if (is_blank(base, start)) return 0;
            *text = base; *n = start;
            return 1;
        }
        s->line++;
        if (e > start && base[e - 1] == '\r') e--;
        int is_sep = e - start == seplen && !memcmp(base + start, s->fmt.sep, seplen);
        if (!is_sep && has_nl) { start = scan = le + 1; continue; }
        size_t doc = is_sep ? start : le;  // a last line without newline belongs to the document
        s->pos += has_nl ? le + 1 : le;
        if (!is_blank(base, doc)) { *text = base; *n = doc; return 1; }
        start = scan = 0;
        if (!has_nl) return 0;
    }
}

static const char *json_type(const cJSON *j) {
    return cJSON_IsObject(j) ? "an object" : cJSON_IsArray(j) ? "an array" : cJSON_IsString(j) ? "a string"
         : cJSON_IsNumber(j) ? "a number" : cJSON_IsBool(j) ? "a boolean" : "null";
}

static int next_jsonl(DocStream *s, const char **text, size_t *n) {
    const char *field = s->fmt.field;
    for (;;) {
        size_t scan = 0;
        int has_nl;
        size_t le = line_end(s, &scan, &has_nl);
        char *base = s->buf + s->pos;
        if (!has_nl && le == 0) return 0;
        base[le] = 0;  // the '\n', or the byte after the text (the buffer keeps one spare)
        s->pos += le + (size_t)has_nl;
        s->line++;
        if (is_blank(base, le)) continue;
        const char *end = NULL;
        cJSON *j = cJSON_ParseWithOpts(base, &end, 1);
        if (!j) {
            const char *at = cJSON_GetErrorPtr();
            long col = at && at >= base && at <= base + le ? (long)(at - base) + 1 : 1;
            die_input("%s:%ld: column %ld: malformed JSON; expected one JSON object per line", s->path, s->line, col);
        }
        cJSON *v = cJSON_IsObject(j) ? cJSON_GetObjectItemCaseSensitive(j, field) : NULL;
        if (!cJSON_IsObject(j))
            die_input("%s:%ld: %s; expected a JSON object with a string field \"%s\"", s->path, s->line, json_type(j), field);
        if (!v) die_input("%s:%ld: no field \"%s\"; expected a JSON object with a string field \"%s\" (--jsonl-field)",
                          s->path, s->line, field, field);
        if (!cJSON_IsString(v)) die_input("%s:%ld: field \"%s\" is %s; expected a string", s->path, s->line, field, json_type(v));
        size_t len = strlen(v->valuestring);
        if (len + 1 > s->doc_cap) s->doc = xrealloc(s->doc, s->doc_cap = len + 1);
        memcpy(s->doc, v->valuestring, len + 1);
        cJSON_Delete(j);
        if (is_blank(s->doc, len)) continue;
        *text = s->doc;
        *n = len;
        return 1;
    }
}

int docs_next(DocStream *s, const char **text, size_t *n) {
    switch (s->fmt.mode) {
    case DOC_SEP: return next_sep(s, text, n);
    case DOC_JSONL: return next_jsonl(s, text, n);
    default: return next_text(s, text, n);
    }
}
