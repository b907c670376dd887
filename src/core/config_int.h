/* config_int.h -- what config.c, config_value.c and config_doc.c share.
 * Not a public interface: modules use config.h only. */
#ifndef HSCALE_CORE_CONFIG_INT_H
#define HSCALE_CORE_CONFIG_INT_H

#include "core/config.h"

#define CFG_AT(obj, off, T) ((T *)(void *)((char *)(obj) + (off)))
#define CFG_CAT(obj, off, T) ((const T *)(const void *)((const char *)(obj) + (off)))

/* Parses text into one non-object field (strlist: comma-separated). On
 * error writes what was expected and what was found into msg and leaves
 * the field untouched. */
int  cfg__set_text(const cfg_field *f, void *obj, const char *text, char *msg, size_t msglen);
/* The text form of a scalar field (not strlist/object/list). */
void cfg__format_scalar(const cfg_field *f, const void *obj, char *out, size_t outlen);
void cfg__format_size(uint64_t bytes, char *out, size_t outlen);
const char *cfg__type_name(cfg_type t);
/* Frees one field's heap parts (strings, lists) and zeroes them. */
void cfg__free_field(const cfg_field *f, void *obj);

/* Error and key-path helpers shared by the loader and the apply layer. */
void cfg__set_err(cfg_error *err, const char *file, int line, int col, const char *key,
                  const char *fmt, ...) __attribute__((format(printf, 6, 7)));
void cfg__join_key(char *out, size_t outlen, const char *path, const char *key);
const cfg_field *cfg__find_field(const cfg_schema *s, const char *key, size_t len);
/* "listen, workers, ..." for unknown-key messages. */
void cfg__list_keys(const cfg_schema *s, char *out, size_t outlen);

#endif
