/* utf8.h -- well-formed UTF-8 (RFC 3629): no overlong forms, no surrogates,
 * nothing past U+10FFFF. One definition for everything that must not pass
 * a bad byte on: the config loader (libfyaml misbehaves on them), the JSON
 * writers (a reply must stay valid JSON whatever it quotes). */
#ifndef HSCALE_CORE_UTF8_H
#define HSCALE_CORE_UTF8_H

#include <stddef.h>

/* Length (1..4) of the well-formed sequence at p, n > 0 bytes left, or 0
 * when p does not start one. ASCII, including NUL, is a sequence of 1. */
size_t utf8_seq_len(const unsigned char *p, size_t n);

/* Offset of the first byte of s that is a NUL or not part of well-formed
 * UTF-8, or n when there is none. */
size_t utf8_text_invalid_at(const char *s, size_t n);

#endif
