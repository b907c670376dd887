/* gw_compress.c -- the response transform chain's first link: gzip and
 * brotli compression of response bodies (the cache is meant to be the
 * next link, between the backend and this one).
 *
 * The chain has three hooks on the response path (gw_response.c):
 * gw_xform_begin when the head is parsed (decides, and says how the head
 * must change), gw_xform_body for each body span in order, gw_xform_end at
 * the body's end. A transform owns what it writes to c->out from its
 * begin to its end; with none active the body is relayed verbatim.
 *
 * Decided from: the request's Accept-Encoding (q-values; q=0 refuses; a
 * tie goes to br), `compression_types`, `compression_min_size` (a known
 * Content-Length below it is sent as is). Never touched: HEAD, 1xx, 204,
 * 304, 206 or any Content-Range, a Content-Encoding already there,
 * Cache-Control: no-transform. A compressible type gets `Vary:
 * Accept-Encoding` whether or not this client asked, so a cache keeps the
 * variants apart; a compressed response's ETag is made weak (the bytes
 * differ from the identity representation's).
 *
 * Two modes, both bounded in memory:
 *  - whole: a Content-Length body up to GW_XF_WHOLE_MAX is gathered, then
 *    compressed in one call (libdeflate for gzip, faster than zlib and as
 *    small; BrotliEncoderCompress for br) and sent with a Content-Length;
 *  - stream: anything else (chunked, unknown or larger length) goes
 *    through zlib's or brotli's streaming encoder, each flush of output
 *    sent as one chunk; the encoder's window bounds the state (gzip:
 *    ~256 KiB, br: lgwin 18).
 * Compressor states are kept per worker and reset between responses, so
 * steady gzip traffic allocates nothing (a brotli stream's encoder is made
 * per response). */
#include "gateway/gw_proxy.h"

#include <brotli/encode.h>
#include <libdeflate.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

#define GW_XF_WHOLE_MAX (256u * 1024u)
#define GW_XF_FREE      8u              /* zlib streams a worker keeps */

typedef struct gw_xf {
    uint8_t  coding;      /* GW_CODING_GZIP / GW_CODING_BR */
    bool     whole;
    bool     z_ready;     /* z holds an initialised deflate stream */
    int      z_level;
    buf      head;        /* whole mode: the head, less Content-Length and its CRLF */
    buf      body;        /* whole mode: the identity body */
    size_t   out_len;     /* whole mode, after the end: compressed bytes at c->out's tail */
    z_stream z;
    BrotliEncoderState *br;
    struct gw_xf *next_free;
} gw_xf;

/* --- Accept-Encoding ---------------------------------------------------- */

/* q-value text to thousandths (RFC 9110 section 12.4.2); malformed: 0. */
static int parse_q(const char *p, size_t n)
{
    if (n == 0 || (p[0] != '0' && p[0] != '1'))
        return 0;
    int q = (p[0] - '0') * 1000, scale = 100;
    for (size_t i = 2; i < n && i < 5 && p[1] == '.'; i++, scale /= 10) {
        if (p[i] < '0' || p[i] > '9')
            return 0;
        q += (p[i] - '0') * scale;
    }
    return q > 1000 ? 1000 : q;
}

uint8_t gw_compress_accepts(const char *v, size_t n)
{
    int q_gzip = -1, q_br = -1, q_star = -1;
    size_t i = 0;
    while (i < n) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t s = i;
        while (i < n && v[i] != ',' && v[i] != ';' && v[i] != ' ' && v[i] != '\t')
            i++;
        size_t tl = i - s;
        int q = 1000;
        while (i < n && v[i] != ',') {             /* parameters: only q counts */
            while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ';'))
                i++;
            if (i + 1 < n && (v[i] == 'q' || v[i] == 'Q') && v[i + 1] == '=') {
                size_t qs = i + 2, qe = qs;
                while (qe < n && v[qe] != ',' && v[qe] != ';' && v[qe] != ' ')
                    qe++;
                q = parse_q(v + qs, qe - qs);
                i = qe;
            } else {
                while (i < n && v[i] != ',' && v[i] != ';')
                    i++;
            }
        }
        if (tl == 4 && strncasecmp(v + s, "gzip", 4) == 0)
            q_gzip = q;
        else if (tl == 6 && strncasecmp(v + s, "x-gzip", 6) == 0 && q_gzip < 0)
            q_gzip = q;
        else if (tl == 2 && strncasecmp(v + s, "br", 2) == 0)
            q_br = q;
        else if (tl == 1 && v[s] == '*')
            q_star = q;
    }
    if (q_gzip < 0)
        q_gzip = q_star;
    if (q_br < 0)
        q_br = q_star;
    if (q_br > 0 && q_br >= q_gzip)
        return GW_CODING_BR;
    if (q_gzip > 0)
        return GW_CODING_GZIP;
    return GW_CODING_NONE;
}

/* --- the decision ------------------------------------------------------- */

static bool value_has(const char *head, const http_header *h, const char *tok)
{
    size_t tl = strlen(tok);
    const char *p = head + h->value.off;
    for (size_t i = 0; i + tl <= h->value.len; i++)
        if (strncasecmp(p + i, tok, tl) == 0)
            return true;
    return false;
}

static bool type_listed(const gw_config *cfg, const char *head, const http_header *ct)
{
    const char *p = head + ct->value.off;
    size_t n = ct->value.len;
    for (size_t i = 0; i < n; i++)
        if (p[i] == ';' || p[i] == ' ') {
            n = i;
            break;
        }
    for (size_t i = 0; i < cfg->ncompression_types; i++) {
        const char *t = cfg->compression_types[i];
        size_t tl = strlen(t);
        if (tl && t[tl - 1] == '*' ? n >= tl - 1 && strncasecmp(p, t, tl - 1) == 0
                                   : n == tl && strncasecmp(p, t, tl) == 0)
            return true;
    }
    return false;
}

static gw_xf *xf_get(gw_worker *w)
{
    gw_xf *x = w->free_xf;
    if (x) {
        w->free_xf = x->next_free;
        if (--w->nfree_xf < w->low_free_xf)
            w->low_free_xf = w->nfree_xf;
        return x;
    }
    w->gc_busy = true;
    return calloc(1, sizeof *x);
}

void gw_xform_free(gw_worker *w, gw_exchange *ex)
{
    gw_xf *x = ex->xf;
    if (!x)
        return;
    ex->xf = NULL;
    if (x->br) {
        BrotliEncoderDestroyInstance(x->br);
        x->br = NULL;
    }
    gw_buf_release(w, &x->head);
    if (w->nfree_xf >= GW_XF_FREE || w->stopping_xf || x->body.cap > GW_XF_WHOLE_MAX) {
        if (x->z_ready)
            deflateEnd(&x->z);
        buf_free(&x->body);
        free(x);
        return;
    }
    buf_reset(&x->body);     /* kept: the next whole body reuses it */
    if (x->z_ready && deflateReset(&x->z) != Z_OK) {
        deflateEnd(&x->z);
        x->z_ready = false;
    }
    x->next_free = w->free_xf;
    w->free_xf = x;
    w->nfree_xf++;
}

void gw_xform_gc(gw_worker *w)
{
    /* States that sat unused through a whole interval go back, as the
     * worker's other caches do (gc_tick): one at a time per tick. */
    if (w->nfree_xf && w->low_free_xf) {
        gw_xf *x = w->free_xf;
        w->free_xf = x->next_free;
        w->nfree_xf--;
        if (x->z_ready)
            deflateEnd(&x->z);
        buf_free(&x->body);
        free(x);
        w->gc_freed = true;
    }
    w->low_free_xf = w->nfree_xf;
}

void gw_xform_worker_free(gw_worker *w)
{
    w->stopping_xf = true;
    while (w->free_xf) {
        gw_xf *x = w->free_xf;
        w->free_xf = x->next_free;
        if (x->z_ready)
            deflateEnd(&x->z);
        buf_free(&x->body);
        free(x);
    }
    w->nfree_xf = 0;
    if (w->ldc)
        libdeflate_free_compressor(w->ldc);
    w->ldc = NULL;
}

bool gw_xform_begin(gw_exchange *ex, const char *head)
{
    gw_worker *w = ex->c->w;
    const gw_config *cfg = &w->rt->cfg;
    const http_response *r = &ex->resp;
    ex->vary = false;
    if (!cfg->compression || ex->req.method == HTTP_HEAD || r->status < 200 || r->status == 204
        || r->status == 304 || r->status == 206 || r->h.body == HTTP_BODY_NONE)
        return false;
    const http_header *ct = http_find_header(head, &r->h, "content-type");
    if (!ct || !type_listed(cfg, head, ct))
        return false;
    if (http_find_header(head, &r->h, "content-encoding")
        || http_find_header(head, &r->h, "content-range"))
        return false;
    const http_header *cc = http_find_header(head, &r->h, "cache-control");
    if (cc && value_has(head, cc, "no-transform"))
        return false;
    ex->vary = true;                 /* the representation depends on Accept-Encoding */
    if (ex->ae == GW_CODING_NONE)
        return false;
    bool sized = r->h.body == HTTP_BODY_LENGTH;
    if (sized && r->h.content_length < (uint64_t)cfg->compression_min_size)
        return false;
    bool whole = sized && r->h.content_length <= GW_XF_WHOLE_MAX;
    if (!whole && ex->req.h.version_minor == 0)
        return false;                /* no chunked framing for an HTTP/1.0 client */
    gw_xf *x = xf_get(w);
    if (!x)
        return false;
    x->coding = ex->ae;
    x->whole = whole;
    int level = cfg->compression_level;
    if (whole) {
        buf_reset(&x->body);
        if (buf_reserve(&x->body, (size_t)r->h.content_length) < 0) {
            ex->xf = x;
            gw_xform_free(w, ex);
            return false;
        }
    } else if (x->coding == GW_CODING_GZIP) {
        if (x->z_ready && x->z_level != level) {
            deflateEnd(&x->z);
            x->z_ready = false;
        }
        if (!x->z_ready) {
            memset(&x->z, 0, sizeof x->z);
            if (deflateInit2(&x->z, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
                buf_free(&x->body);
                free(x);
                return false;
            }
            x->z_ready = true;
            x->z_level = level;
        }
    } else {
        x->br = BrotliEncoderCreateInstance(NULL, NULL, NULL);
        if (!x->br) {
            ex->xf = x;
            gw_xform_free(w, ex);
            return false;
        }
        BrotliEncoderSetParameter(x->br, BROTLI_PARAM_QUALITY, (uint32_t)(level > 11 ? 11 : level));
        BrotliEncoderSetParameter(x->br, BROTLI_PARAM_LGWIN, 18);
        if (sized)
            BrotliEncoderSetParameter(x->br, BROTLI_PARAM_SIZE_HINT,
                                      (uint32_t)(r->h.content_length > UINT32_MAX ? 0 : r->h.content_length));
    }
    ex->xf = x;
    return true;
}

bool gw_xform_whole(const gw_exchange *ex)
{
    return ex->xf && ex->xf->whole;
}

buf *gw_xform_head_buf(gw_exchange *ex)
{
    gw_buf_acquire(ex->c->w, &ex->xf->head);
    return &ex->xf->head;
}

const char *gw_xform_coding_str(const gw_exchange *ex)
{
    return ex->xf && ex->xf->coding == GW_CODING_BR ? "br" : "gzip";
}

/* --- streaming ---------------------------------------------------------- */

/* Chunk framing around encoder output written straight into c->out: a
 * fixed-width size line is reserved, then patched (leading zeros are valid
 * chunk-size digits). */
#define CHUNK_HDR 10   /* 8 hex digits + CRLF */

static char *chunk_open(buf *out, size_t want)
{
    if (buf_reserve(out, CHUNK_HDR + want + 2) < 0)
        return NULL;
    buf_append(out, "00000000\r\n", CHUNK_HDR);
    return buf_tail(out);
}

/* After `produced` encoder bytes were committed behind chunk_open's line. */
static void chunk_close(buf *out, size_t produced)
{
    if (produced == 0) {
        out->len -= CHUNK_HDR;           /* nothing came out: no empty chunk (it would end the body) */
        return;
    }
    static const char hex[] = "0123456789abcdef";
    char *h = buf_tail(out) - produced - CHUNK_HDR;
    for (int i = 7; i >= 0; i--, produced >>= 4)
        h[i] = hex[produced & 15];
    buf_append(out, "\r\n", 2);
}

static int stream_feed(gw_exchange *ex, const char *p, size_t n, bool last)
{
    gw_xf *x = ex->xf;
    buf *out = &ex->c->out;
    for (;;) {
        size_t room = n + 1024 > 16384 ? 16384 : n + 1024;
        if (last && room < 16384)
            room = 16384;
        char *dst = chunk_open(out, room);
        if (!dst)
            return -1;
        size_t produced;
        bool more;
        if (x->coding == GW_CODING_GZIP) {
            x->z.next_in = (Bytef *)(uintptr_t)p;
            x->z.avail_in = (uInt)n;
            x->z.next_out = (Bytef *)dst;
            x->z.avail_out = (uInt)room;
            int rc = deflate(&x->z, last ? Z_FINISH : Z_NO_FLUSH);
            if (rc == Z_STREAM_ERROR)
                return -1;
            produced = room - x->z.avail_out;
            size_t used = n - x->z.avail_in;
            p += used;
            n -= used;
            more = last ? rc != Z_STREAM_END : (n > 0 || x->z.avail_out == 0);
        } else {
            size_t in_left = n, out_left = room;
            const uint8_t *ip = (const uint8_t *)p;
            uint8_t *op = (uint8_t *)dst;
            if (!BrotliEncoderCompressStream(x->br, last ? BROTLI_OPERATION_FINISH : BROTLI_OPERATION_PROCESS,
                                             &in_left, &ip, &out_left, &op, NULL))
                return -1;
            produced = room - out_left;
            p += n - in_left;
            n = in_left;
            more = last ? !BrotliEncoderIsFinished(x->br)
                        : (n > 0 || BrotliEncoderHasMoreOutput(x->br));
        }
        buf_commit(out, produced);
        chunk_close(out, produced);
        if (!more)
            return 0;
    }
}

/* --- the hooks ---------------------------------------------------------- */

int gw_xform_body(gw_exchange *ex, const char *p, size_t n)
{
    gw_xf *x = ex->xf;
    if (!n)
        return 0;
    if (x->whole)
        return buf_append(&x->body, p, n);
    return stream_feed(ex, p, n, false);
}

int gw_xform_end(gw_exchange *ex)
{
    gw_xf *x = ex->xf;
    gw_worker *w = ex->c->w;
    buf *out = &ex->c->out;
    if (!x->whole) {
        if (stream_feed(ex, "", 0, true) < 0)
            return -1;
        return buf_append(out, "0\r\n\r\n", 5);
    }
    size_t bound, got = 0;
    const char *in = buf_head(&x->body);
    size_t n = x->body.len;
    if (x->coding == GW_CODING_GZIP) {
        int level = w->rt->cfg.compression_level;
        if (!w->ldc || w->ldc_level != level) {
            if (w->ldc)
                libdeflate_free_compressor(w->ldc);
            w->ldc = libdeflate_alloc_compressor(level);
            w->ldc_level = level;
            if (!w->ldc)
                return -1;
        }
        bound = libdeflate_gzip_compress_bound(w->ldc, n);
    } else {
        bound = BrotliEncoderMaxCompressedSize(n);
        if (bound == 0)
            bound = n + 1024;
    }
    /* head + Content-Length line + body, in one go */
    if (buf_reserve(out, x->head.len + 48 + bound) < 0)
        return -1;
    buf_append(out, buf_head(&x->head), x->head.len);
    static const char pad[] = "Content-Length: 0000000000000000000\r\n\r\n";
    size_t room_cl = sizeof pad - 1;
    size_t cl_off = out->len;
    buf_append(out, pad, room_cl);
    char *dst = buf_tail(out);
    if (x->coding == GW_CODING_GZIP) {
        got = libdeflate_gzip_compress(w->ldc, in, n, dst, bound);
        if (got == 0)
            return -1;
    } else {
        got = bound;
        if (!BrotliEncoderCompress(w->rt->cfg.compression_level > 11 ? 11 : w->rt->cfg.compression_level,
                                   BROTLI_DEFAULT_WINDOW, BROTLI_MODE_TEXT, n, (const uint8_t *)in,
                                   &got, (uint8_t *)dst))
            return -1;
    }
    /* Rewrite the length line exactly: move the body down over the padding. */
    char num[24];
    size_t nl = fmt_u64(num, got);
    size_t line = 16 + nl + 4;         /* "Content-Length: " + digits + CRLF CRLF */
    char *cl = buf_head(out) + cl_off;
    memcpy(cl, "Content-Length: ", 16);
    memcpy(cl + 16, num, nl);
    memcpy(cl + 16 + nl, "\r\n\r\n", 4);
    memmove(cl + line, cl + room_cl, got);
    out->len -= room_cl - line;
    buf_commit(out, got);
    x->out_len = got;
    return 0;
}

uint8_t gw_xform_coding(const gw_exchange *ex)
{
    return ex->xf ? ex->xf->coding : GW_CODING_NONE;
}

const char *gw_xform_output(const gw_exchange *ex, size_t *n)
{
    const gw_xf *x = ex->xf;
    const buf *out = &ex->c->out;
    if (!x || !x->whole || !x->out_len || x->out_len > out->len)
        return NULL;
    *n = x->out_len;
    return buf_tail(out) - x->out_len;
}

int gw_xform_end_given(gw_exchange *ex, const char *z, size_t n)
{
    gw_xf *x = ex->xf;
    buf *out = &ex->c->out;
    char num[24];
    if (!x || !x->whole || buf_reserve(out, x->head.len + 48 + n) < 0)
        return -1;
    buf_append(out, buf_head(&x->head), x->head.len);
    buf_append(out, "Content-Length: ", 16);
    buf_append(out, num, fmt_u64(num, n));
    buf_append(out, "\r\n\r\n", 4);
    return buf_append(out, z, n);
}
