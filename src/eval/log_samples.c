// log_samples.c — see log_samples.h. Each line is built as a cJSON tree and printed through json_print,
// so task text with invalid UTF-8 still gives valid JSON.
#include "eval/log_samples.h"

#include <stdlib.h>

#include "eval/eval_task.h"
#include "eval/metrics.h"
#include "util/common.h"
#include "util/json.h"

static void put_line(FILE *f, cJSON *o) {
    char *s = json_print(o, 0);
    fputs(s, f);
    fputc('\n', f);
    free(s);
    cJSON_Delete(o);
}

static cJSON *str_array(char **v, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int j = 0; j < n; j++) cJSON_AddItemToArray(a, cJSON_CreateString(v[j]));
    return a;
}

// The item as the loader read it (after the prompt rewrite), in the generic JSONL field names.
static cJSON *item_doc(const Task *t, const Item *it) {
    cJSON *d = cJSON_CreateObject();
    switch (t->kind) {
    case TK_MC:
        cJSON_AddStringToObject(d, "query", it->ctx);
        cJSON_AddItemToObject(d, "choices", str_array(it->opts, it->n_opts));
        cJSON_AddNumberToObject(d, "gold", it->gold);
        break;
    case TK_PARTIAL:
        cJSON_AddItemToObject(d, "context_options", str_array(it->opts, it->n_opts));
        cJSON_AddStringToObject(d, "continuation", it->cont);
        cJSON_AddNumberToObject(d, "gold", it->gold);
        break;
    case TK_CLOZE:
        cJSON_AddStringToObject(d, "context", it->ctx);
        cJSON_AddStringToObject(d, "continuation", it->cont);
        break;
    default:
        cJSON_AddStringToObject(d, "sentence_good", it->opts[0]);
        cJSON_AddStringToObject(d, "sentence_bad", it->opts[1]);
    }
    if (t->n_groups > 1) cJSON_AddStringToObject(d, "group", t->groups[it->group]);
    cJSON_AddNumberToObject(d, "line", it->line);
    return d;
}

void samples_choice(FILE *f, const Task *t, int i, int shots, uint64_t seed, const Seq *q, const SeqScore *r,
                    const int *clen) {
    const Item *it = &t->items[i];
    int nreq = t->kind == TK_CLOZE ? 1 : it->n_opts;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "doc_id", i);
    cJSON_AddItemToObject(o, "doc", item_doc(t, it));
    if (t->kind == TK_CLOZE) cJSON_AddStringToObject(o, "target", it->cont);
    else cJSON_AddNumberToObject(o, "target", it->gold);
    cJSON *args = cJSON_AddArrayToObject(o, "arguments");
    cJSON *resps = cJSON_AddArrayToObject(o, "resps"), *filt = cJSON_AddArrayToObject(o, "filtered_resps");
    cJSON *ids = cJSON_AddArrayToObject(o, "token_ids"), *ncont = cJSON_AddArrayToObject(o, "continuation_tokens");
    double *lls = xmalloc(sizeof(double) * nreq);
    for (int j = 0; j < nreq; j++) {
        cJSON *one = cJSON_CreateArray();
        for (int k = 0; k < q[j].n; k++) cJSON_AddItemToArray(one, cJSON_CreateNumber(q[j].tok[k]));
        cJSON_AddItemToArray(ids, one);
        cJSON_AddItemToArray(ncont, cJSON_CreateNumber(q[j].ncont));
        char *ctx, *cont;
        build_request(t, i, j, shots, seed, &ctx, &cont);
        cJSON *pair = cJSON_CreateArray();
        cJSON_AddItemToArray(pair, cJSON_CreateString(ctx));
        cJSON_AddItemToArray(pair, cJSON_CreateString(cont));
        cJSON_AddItemToArray(args, pair);
        free(ctx); free(cont);
        cJSON *lg = cJSON_CreateArray();  // [loglikelihood, is_greedy]
        cJSON_AddItemToArray(lg, json_number(r[j].ll));
        cJSON_AddItemToArray(lg, cJSON_CreateBool(r[j].greedy));
        cJSON *wrap = cJSON_CreateArray();
        cJSON_AddItemToArray(wrap, cJSON_Duplicate(lg, 1));
        cJSON_AddItemToArray(resps, wrap);
        cJSON_AddItemToArray(filt, lg);
        lls[j] = r[j].ll;
    }
    if (t->kind == TK_CLOZE) {
        cJSON_AddNumberToObject(o, "acc", r[0].greedy);
        cJSON_AddItemToObject(o, "perplexity", json_number(r[0].ll));  // lm-eval keeps the ll per sample
    } else {
        double acc, accn;
        item_mc(nreq, lls, clen, it->gold, &acc, t->kind == TK_MC ? &accn : NULL);
        cJSON_AddNumberToObject(o, "acc", acc);
        if (t->kind == TK_MC) cJSON_AddNumberToObject(o, "acc_norm", accn);
    }
    free(lls);
    put_line(f, o);
}

static cJSON *ll_pair(double ll, double w) {
    cJSON *a = cJSON_CreateArray();
    cJSON_AddItemToArray(a, json_number(ll));
    cJSON_AddItemToArray(a, json_number(w));
    return a;
}

void samples_rolling(FILE *f, int doc_id, const char *doc, double ll, double words, double bytes, int tokens) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "doc_id", doc_id);
    cJSON *d = cJSON_AddObjectToObject(o, "doc");
    cJSON_AddStringToObject(d, "text", doc);
    cJSON_AddStringToObject(o, "target", "");
    cJSON *args = cJSON_AddArrayToObject(o, "arguments"), *one = cJSON_CreateArray();
    cJSON_AddItemToArray(one, cJSON_CreateString(doc));
    cJSON_AddItemToArray(args, one);
    cJSON *resps = cJSON_AddArrayToObject(o, "resps"), *w = cJSON_CreateArray();
    cJSON_AddItemToArray(w, json_number(ll));
    cJSON_AddItemToArray(resps, w);
    cJSON_AddItemToArray(cJSON_AddArrayToObject(o, "filtered_resps"), json_number(ll));
    cJSON_AddItemToObject(o, "word_perplexity", ll_pair(ll, words));
    cJSON_AddItemToObject(o, "byte_perplexity", ll_pair(ll, bytes));
    cJSON_AddItemToObject(o, "bits_per_byte", ll_pair(ll, bytes));
    cJSON_AddItemToObject(o, "token_perplexity", ll_pair(ll, tokens));
    put_line(f, o);
}

void samples_window(FILE *f, long g, const char *shards, double ll, int S) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "doc_id", (double)g);
    cJSON *d = cJSON_AddObjectToObject(o, "doc");
    cJSON_AddStringToObject(d, "shards", shards);
    cJSON_AddNumberToObject(d, "window", (double)g);
    cJSON *resps = cJSON_AddArrayToObject(o, "resps"), *w = cJSON_CreateArray();
    cJSON_AddItemToArray(w, json_number(ll));
    cJSON_AddItemToArray(resps, w);
    cJSON_AddItemToArray(cJSON_AddArrayToObject(o, "filtered_resps"), json_number(ll));
    cJSON_AddItemToObject(o, "token_perplexity", ll_pair(ll, S));
    put_line(f, o);
}
