// docstream.h — reads the documents of one input file for `aoe prepare`, streaming: memory holds
// one read buffer plus the current document, never the whole file (except --doc-bytes 0, where
// the file is the document). Three ways to find documents:
//   text   cut at the first blank line after about doc_bytes bytes (doc_end in prepare_util.h)
//   sep    a line equal to `sep` (a trailing \r ignored) ends a document; the line is dropped
//   jsonl  one JSON object per line; the document is the string in field `field`
// Bad input stops the program (exit 2) with the file and the byte offset or line.
#ifndef AOE_DOCSTREAM_H
#define AOE_DOCSTREAM_H

#include <stddef.h>
#include <stdint.h>

typedef enum { DOC_TEXT, DOC_SEP, DOC_JSONL } DocMode;

typedef struct {
    DocMode mode;
    size_t doc_bytes;   // DOC_TEXT: about this many bytes per document, 0 = one per file
    const char *sep;    // DOC_SEP: the separator line
    const char *field;  // DOC_JSONL: the field holding the text
    int strip_tags;     // drop /TAG suffixes (Brown corpus) before cutting; not with DOC_JSONL
} DocFormat;

typedef struct DocStream DocStream;

DocStream *docs_open(const char *path, const DocFormat *fmt);  // dies if the file cannot be read
// The next document: returns 1 with *text/*len (valid until the next call), 0 at the end of the
// file. Separator and JSONL documents that are empty or only whitespace are skipped.
int docs_next(DocStream *s, const char **text, size_t *len);
uint64_t docs_raw_bytes(const DocStream *s);  // bytes read from the file so far
void docs_close(DocStream *s);

#endif
