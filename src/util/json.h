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

#endif
