// json.c — see json.h.
#include "util/json.h"

#include <stdlib.h>
#include <string.h>

#include "util/common.h"

cJSON *json_parse_object(const char *text, char *err, int errlen) {
    cJSON *j = cJSON_Parse(text);
    if (j && cJSON_IsObject(j)) return j;
    if (j) {
        cJSON_Delete(j);
        snprintf(err, errlen, "line 1: expected a JSON object at the top level");
        return NULL;
    }
    const char *at = cJSON_GetErrorPtr();
    int line = 1, col = 1;
    for (const char *p = text; at && p < at && *p; p++) {
        if (*p == '\n') { line++; col = 1; } else col++;
    }
    snprintf(err, errlen, "line %d, column %d: malformed JSON", line, col);
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
