// json.c — see json.h.
#include "util/json.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util/common.h"

// Line and column (1-based) of byte `at` of text.
static void line_col(const char *text, const char *at, int *line, int *col) {
    *line = 1; *col = 1;
    for (const char *p = text; at && p < at && *p; p++) {
        if (*p == '\n') { (*line)++; *col = 1; } else (*col)++;
    }
}

cJSON *json_parse_object(const char *text, char *err, int errlen) {
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithOpts(text, &end, 0);
    if (j && end) {  // only whitespace may follow the value
        while (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r') end++;
        if (*end) {
            int line, col;
            line_col(text, end, &line, &col);
            cJSON_Delete(j);
            snprintf(err, errlen, "line %d, column %d (byte offset %ld): unexpected content after the JSON value",
                     line, col, (long)(end - text));
            return NULL;
        }
    }
    if (j && cJSON_IsObject(j)) return j;
    if (j) {
        cJSON_Delete(j);
        snprintf(err, errlen, "line 1: expected a JSON object at the top level");
        return NULL;
    }
    const char *at = cJSON_GetErrorPtr();
    int line, col;
    line_col(text, at, &line, &col);
    snprintf(err, errlen, "line %d, column %d (byte offset %ld): malformed JSON", line, col, at ? (long)(at - text) : 0L);
    return NULL;
}

cJSON *json_load_file(const char *path) {
    size_t len;
    char *text = read_file(path, &len);
    if (len == 0) die_input("%s: empty file, expected a JSON object", path);
    char err[128];
    cJSON *j = json_parse_object(text, err, sizeof err);
    free(text);
    if (!j) die_input("%s: %s", path, err);
    return j;
}

int jsonl_each(const char *path, JsonlFn fn, void *ctx, const char *what) {
    size_t len;
    char *text = read_file(path, &len);
    int line = 0, n = 0;
    for (char *p = text, *e; p < text + len; p = e + 1) {
        e = strchr(p, '\n');
        int torn = !e;
        if (!e) e = text + len;
        *e = 0;
        line++;
        char *q = p;
        while (*q == ' ' || *q == '\t' || *q == '\r') q++;
        if (!*q) continue;
        cJSON *j = cJSON_Parse(p);
        if (!cJSON_IsObject(j)) {
            cJSON_Delete(j);
            if (torn) {
                warnf("%s:%d: unterminated last line ignored (the writer was killed mid-line)", path, line);
                break;
            }
            die_input("%s:%d: not a JSON object (%s)", path, line, what);
        }
        fn(j, path, line, ctx);
        cJSON_Delete(j);
        n++;
    }
    free(text);
    return n;
}

// Length of the well-formed UTF-8 sequence at p (1-4), or 0 (Unicode Table 3-7).
static int utf8_seq(const unsigned char *p) {
    unsigned c = p[0];
    if (c < 0x80) return 1;
    int n = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
    if (!n) return 0;
    unsigned lo = 0x80, hi = 0xBF;  // range of the second byte
    if (c == 0xE0) lo = 0xA0;
    else if (c == 0xED) hi = 0x9F;  // no surrogates
    else if (c == 0xF0) lo = 0x90;
    else if (c == 0xF4) hi = 0x8F;  // <= U+10FFFF
    if (p[1] < lo || p[1] > hi) return 0;
    for (int i = 2; i < n; i++)
        if ((p[i] & 0xC0) != 0x80) return 0;
    return n;
}

int json_utf8_valid(const char *s) {
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        int n = utf8_seq(p);
        if (!n) return 0;
        p += n;
    }
    return 1;
}

char *json_utf8_fix(const char *s) {
    size_t n = strlen(s);
    char *o = xmalloc(3 * n + 1), *w = o;
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        int k = utf8_seq(p);
        if (k) { memcpy(w, p, k); w += k; p += k; }
        else { memcpy(w, "\xEF\xBF\xBD", 3); w += 3; p++; }
    }
    *w = 0;
    return o;
}

static const char *nonfinite_name(double v) { return isnan(v) ? "nan" : v > 0 ? "inf" : "-inf"; }

cJSON *json_number(double v) {
    return isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateString(nonfinite_name(v));
}

// Replaces an owned string (cJSON allocates with malloc: no hooks are set) by its fixed copy.
static void fix_string(char **sp) {
    if (!*sp || json_utf8_valid(*sp)) return;
    char *f = json_utf8_fix(*sp);
    free(*sp);
    *sp = f;
}

void json_sanitize(cJSON *j) {
    for (; j; j = j->next) {
        if (j->string && !(j->type & cJSON_StringIsConst)) fix_string(&j->string);
        if (j->type & cJSON_IsReference) continue;  // not ours to rewrite
        if (cJSON_IsNumber(j) && !isfinite(j->valuedouble)) {
            j->type = cJSON_String | (j->type & cJSON_StringIsConst);
            j->valuestring = xstrdup(nonfinite_name(j->valuedouble));
        } else if (cJSON_IsString(j)) fix_string(&j->valuestring);
        if (j->child) json_sanitize(j->child);
    }
}

char *json_print(cJSON *j, int formatted) {
    json_sanitize(j);
    return formatted ? cJSON_Print(j) : cJSON_PrintUnformatted(j);
}

const char *json_fmt(char *buf, size_t cap, const char *fmt, double v) {
    if (isfinite(v)) snprintf(buf, cap, fmt, v);
    else snprintf(buf, cap, "\"%s\"", nonfinite_name(v));
    return buf;
}
