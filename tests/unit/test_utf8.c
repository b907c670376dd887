/* test_utf8.c -- the one UTF-8 check: every sequence length, and each way
 * a sequence can be ill-formed (stray continuation, truncation, overlong,
 * surrogate, past U+10FFFF), plus NUL handling of the text check. */
#include <criterion/criterion.h>

#include <string.h>

#include "core/utf8.h"

const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libcriterion.so\n"; }

static size_t len_of(const char *s)
{
    return utf8_seq_len((const unsigned char *)s, strlen(s));
}

Test(utf8, well_formed_lengths)
{
    cr_assert_eq(len_of("a"), 1);
    cr_assert_eq(len_of("\xc3\xa9"), 2);           /* é */
    cr_assert_eq(len_of("\xe2\x82\xac"), 3);       /* € */
    cr_assert_eq(len_of("\xf0\x9f\x98\x80"), 4);   /* U+1F600 */
    cr_assert_eq(len_of("\xf4\x8f\xbf\xbf"), 4);   /* U+10FFFF, the last */
}

Test(utf8, ill_formed_is_zero)
{
    cr_assert_eq(len_of("\x80"), 0);               /* continuation first */
    cr_assert_eq(len_of("\xc3"), 0);               /* truncated */
    cr_assert_eq(len_of("\xc3\x28"), 0);           /* bad continuation */
    cr_assert_eq(len_of("\xc0\xaf"), 0);           /* overlong '/' */
    cr_assert_eq(len_of("\xe0\x80\xaf"), 0);       /* overlong, 3 bytes */
    cr_assert_eq(len_of("\xed\xa0\x80"), 0);       /* surrogate U+D800 */
    cr_assert_eq(len_of("\xf4\x90\x80\x80"), 0);   /* U+110000 */
    cr_assert_eq(len_of("\xff"), 0);
}

Test(utf8, text_check_finds_first_bad_byte_or_nul)
{
    const char ok[] = "caf\xc3\xa9 \xe2\x82\xac";
    cr_assert_eq(utf8_text_invalid_at(ok, sizeof ok - 1), sizeof ok - 1);
    cr_assert_eq(utf8_text_invalid_at("ab\xff" "cd", 5), 2);
    cr_assert_eq(utf8_text_invalid_at("ab\0cd", 5), 2);
    cr_assert_eq(utf8_text_invalid_at("ab\xc3", 3), 2);  /* cut at the end */
    cr_assert_eq(utf8_text_invalid_at("", 0), 0);
}
