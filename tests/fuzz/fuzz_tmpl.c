/* fuzz_tmpl.c -- libFuzzer target for the load generator's request
 * templates: bench_tmpl_parse, then bench_tmpl_render.
 *
 * Beyond "no crash": a refusal says where ("column N: ..."); an accepted
 * template has segments that lie inside its own text, with RAND ranges in
 * order and PICK spans counted right; a template without placeholders is
 * static and renders to its text with "{{" and "}}" folded. Every rendering
 * (with a seed and a {seq} start taken from the input, including values
 * that print at full width) fits in max_len: it goes into a heap block of
 * exactly max_len bytes, so ASan catches one byte over. A static template
 * renders the same bytes every time. */
#include <stdlib.h>
#include <string.h>

#include "bench/bench.h"

#define CHECK(x) do { if (!(x)) abort(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    /* first byte: seed and {seq} start; the rest, up to a NUL, is the template */
    uint8_t mode = data[0];
    char *text = malloc(size);
    CHECK(text);
    memcpy(text, data + 1, size - 1);
    text[size - 1] = '\0';
    size_t tlen = strlen(text);

    bench_tmpl t;
    char err[BENCH_ERRLEN];
    err[0] = '\0';
    if (bench_tmpl_parse(&t, text, err, sizeof err) < 0) {
        CHECK(!strncmp(err, "column ", 7) || !strcmp(err, "out of memory"));
        CHECK(t.text == NULL && t.segs == NULL && t.nsegs == 0);
        free(text);
        return 0;
    }
    CHECK(t.text && strcmp(t.text, text) == 0);
    CHECK(bench_tmpl_max_len(&t) == t.max_len);
    bool any_placeholder = false;
    for (size_t i = 0; i < t.nsegs; i++) {
        const bench_seg *s = &t.segs[i];
        switch (s->kind) {
        case BENCH_SEG_LIT:
            CHECK(s->len > 0 && (size_t)s->off + s->len <= tlen);
            break;
        case BENCH_SEG_RAND:
            CHECK(s->lo <= s->hi);
            any_placeholder = true;
            break;
        case BENCH_SEG_PICK: {
            CHECK(s->len > 0 && (size_t)s->off + s->len <= tlen);
            uint32_t bars = 0;
            for (uint32_t k = 0; k < s->len; k++)
                bars += t.text[s->off + k] == '|';
            CHECK(s->npick == bars + 1);
            any_placeholder = true;
            break;
        }
        case BENCH_SEG_SEQ:
            any_placeholder = true;
            break;
        default:
            CHECK(0);
        }
    }
    CHECK(t.dynamic == any_placeholder);

    size_t cap = t.max_len;
    char *out = malloc(cap ? cap : 1);
    CHECK(out);
    static const uint64_t seq_starts[] = {
        0, 1, 999, UINT64_MAX, (uint64_t)INT64_MAX + 1, 10000000000000000000ull,
    };
    bench_rng r;
    bench_rng_seed(&r, mode, seq_starts[mode % 6], 1 + (mode >> 4));
    char *first = NULL;
    size_t first_len = 0;
    for (int round = 0; round < 8; round++) {
        size_t n = bench_tmpl_render(&t, &r, out);
        CHECK(n <= cap);
        if (!t.dynamic) {
            if (!first) {
                first = malloc(n ? n : 1);
                CHECK(first);
                memcpy(first, out, n);
                first_len = n;
                /* a static template is its text with the doubled braces folded */
                size_t w = 0;
                for (size_t i = 0; i < tlen; i++, w++) {
                    CHECK(w < n && out[w] == text[i]);
                    if ((text[i] == '{' || text[i] == '}') && text[i + 1] == text[i])
                        i++;
                }
                CHECK(w == n);
            } else {
                CHECK(n == first_len && memcmp(first, out, n) == 0);
            }
        }
        r.seq += r.seq_stride;
    }
    free(first);
    free(out);
    bench_tmpl_free(&t);
    CHECK(t.text == NULL && t.segs == NULL);
    free(text);
    return 0;
}
