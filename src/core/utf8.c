/* utf8.c -- see utf8.h. Decoded by hand: a table-free check of the lead
 * byte, the continuation bytes and the decoded range is all it takes. */
#include "core/utf8.h"

#include <stdint.h>

size_t utf8_seq_len(const unsigned char *p, size_t n)
{
    if (p[0] < 0x80)
        return 1;
    size_t len;
    uint32_t cp, min;
    if ((p[0] & 0xe0) == 0xc0) { len = 2; cp = p[0] & 0x1fu; min = 0x80; }
    else if ((p[0] & 0xf0) == 0xe0) { len = 3; cp = p[0] & 0x0fu; min = 0x800; }
    else if ((p[0] & 0xf8) == 0xf0) { len = 4; cp = p[0] & 0x07u; min = 0x10000; }
    else return 0;
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (p[i] & 0x3fu);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

size_t utf8_text_invalid_at(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        size_t l = u[i] ? utf8_seq_len(u + i, n - i) : 0;
        if (!l)
            return i;
        i += l;
    }
    return n;
}
