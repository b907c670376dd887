/* res_json.c -- query results as JSON, the form the app answers with.
 *
 * The store sits below http (writer.h), so it carries its own small string
 * escaper: control characters as \u00XX, quotes and backslashes escaped,
 * and UTF-8 validated on the way so a bad byte stored by an older client
 * can never make a response invalid JSON. Column names are SQL identifiers
 * chosen by the app and are escaped the same way. */
#include <stdio.h>
#include <string.h>

#include "core/utf8.h"
#include "store/store_int.h"

static int json_str(buf *out, const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    if (buf_append(out, "\"", 1) < 0)
        return -1;
    size_t run = 0;      /* bytes copied verbatim in one append */
    for (size_t i = 0; i < n; ) {
        size_t l = utf8_seq_len(p + i, n - i);
        unsigned char ch = p[i];
        if (l && ch >= 0x20 && ch != '"' && ch != '\\') {
            i += l;
            run += l;
            continue;
        }
        if (run && buf_append(out, p + i - run, run) < 0)
            return -1;
        run = 0;
        int rc;
        if (!l)
            rc = buf_append_str(out, "\\ufffd");
        else if (ch == '"')
            rc = buf_append_str(out, "\\\"");
        else if (ch == '\\')
            rc = buf_append_str(out, "\\\\");
        else if (ch == '\n')
            rc = buf_append_str(out, "\\n");
        else if (ch == '\t')
            rc = buf_append_str(out, "\\t");
        else if (ch == '\r')
            rc = buf_append_str(out, "\\r");
        else
            rc = buf_printf(out, "\\u%04x", ch);
        if (rc < 0)
            return -1;
        i += l ? l : 1;
    }
    if (run && buf_append(out, p + n - run, run) < 0)
        return -1;
    return buf_append(out, "\"", 1);
}

int st_res_json_row(const st_res *r, size_t row, buf *out)
{
    if (buf_append(out, "{", 1) < 0)
        return -1;
    for (size_t c = 0; c < st_res_cols(r); c++) {
        const char *name = st_res_name(r, c);
        size_t len;
        const char *text = st_res_text(r, row, c, &len);
        if ((c && buf_append(out, ",", 1) < 0) || json_str(out, name, strlen(name)) < 0 ||
            buf_append(out, ":", 1) < 0)
            return -1;
        int rc;
        switch (st_res_type(r, row, c)) {
        case ST_NULL: rc = buf_append(out, "null", 4); break;
        case ST_INT: rc = buf_append(out, text, len); break;
        default: rc = json_str(out, text, len); break;
        }
        if (rc < 0)
            return -1;
    }
    return buf_append(out, "}", 1);
}

int st_res_json(const st_res *r, buf *out)
{
    if (buf_append(out, "[", 1) < 0)
        return -1;
    for (size_t row = 0; row < st_res_rows(r); row++) {
        if ((row && buf_append(out, ",", 1) < 0) || st_res_json_row(r, row, out) < 0)
            return -1;
    }
    return buf_append(out, "]", 1);
}
