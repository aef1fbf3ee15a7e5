// json.h — reading JSON files with cJSON and reporting where they are malformed, in the project's
// one-line form "file: line L, column C: malformed JSON". Nothing here knows what the JSON means.
#ifndef AOE_JSON_H
#define AOE_JSON_H

#include <cjson/cJSON.h>

// Parses text that must hold one JSON object. Returns it (caller deletes), or NULL with err set to
// "line L, column C: malformed JSON" / "line 1: expected a JSON object at the top level".
cJSON *json_parse_object(const char *text, char *err, int errlen);
// Reads and parses a file holding one JSON object; exits 2 naming the file and the place.
cJSON *json_load_file(const char *path);

// Calls fn on every non-blank line of a JSON-lines file, parsed as an object (fn must not delete
// it); line is 1-based. A line that is not a JSON object exits 2 as "path:LINE: not a JSON object
// (what)"; an unterminated last line that does not parse (a writer killed mid-line; `aoe train
// --resume` trims it) is skipped with a warning. Returns the number of objects passed to fn.
typedef void (*JsonlFn)(cJSON *obj, const char *path, int line, void *ctx);
int jsonl_each(const char *path, JsonlFn fn, void *ctx, const char *what);

// ---- writing: every JSON the tool writes goes through these, so it is valid JSON ----------
// RFC 8259 has no NaN/Infinity and requires UTF-8: a non-finite number is written as the string
// "inf", "-inf" or "nan" (documented where such a value can appear, e.g. an overflowing
// perplexity), and invalid UTF-8 bytes in strings become U+FFFD.

// s with every byte that is not part of a well-formed UTF-8 sequence replaced by U+FFFD (malloc'd).
char *json_utf8_fix(const char *s);
// 1 if s is well-formed UTF-8 (no overlongs, surrogates or code points above U+10FFFF).
int json_utf8_valid(const char *s);
// A number, or for a non-finite v the string "inf" / "-inf" / "nan".
cJSON *json_number(double v);
// Rewrites a tree in place: non-finite numbers as json_number does, keys and strings with invalid
// UTF-8 as json_utf8_fix does. Call before cJSON_Print*.
void json_sanitize(cJSON *j);
// cJSON_Print (formatted != 0) or cJSON_PrintUnformatted of the sanitized tree (malloc'd).
char *json_print(cJSON *j, int formatted);
// printf-style number for hand-written JSON: fmt applied to a finite v, else "\"inf\"" etc.
// Returns buf (cap >= 32).
const char *json_fmt(char *buf, size_t cap, const char *fmt, double v);

#endif
