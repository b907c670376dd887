/* config.h -- a schema-driven configuration loader.
 *
 * Every module describes its settings as a table of cfg_field (key, type,
 * offset into its struct, default, environment variable, bounds) and this
 * file does the rest: fill defaults, read a YAML file or a JSON document
 * (libfyaml reads both), apply environment overrides, validate, and report
 * the first error with the file, line, column and full key path.
 *
 * Loading is all-or-nothing: callers load into a fresh struct and swap it in
 * only on success, so a bad document never leaves a half-applied config.
 *
 * Value syntax (the same in YAML, JSON, environment and flags):
 *   bool     true/false/yes/no/on/off/1/0
 *   int      decimal integer
 *   double   decimal number
 *   percent  number, optionally with a % sign ("70", "70%"), 0..100 unless bounded
 *   duration number with unit: us, ms, s, m, h ("250ms", "30s", "5m"); a bare
 *            number is seconds. Stored as uint64_t microseconds.
 *   size     number with optional unit: B, KB, KiB, MB, MiB, GB, GiB. Stored
 *            as uint64_t bytes.
 *   string   any scalar. Stored as malloc'd char * (NULL when empty default).
 *   addr     "host:port", checked by sock_addr_parse. Stored as char *. An
 *            optional one (no default) may be "": unset (NULL).
 *   enum     one of `choices`. Stored as int (the index).
 *   strlist  a sequence of strings, or one comma-separated scalar (env).
 *            Stored as char ** plus a size_t count at count_offset.
 *   object   a nested mapping described by `sub`, stored inline.
 *   list     a sequence of mappings described by `sub`: a malloc'd array of
 *            elem_size elements plus a size_t count at count_offset.
 *
 * Details:
 *   - int fields are stored as `int`; double and percent as `double`; bool
 *     as `bool`.
 *   - Bounds (min, max): both 0 means unbounded; max <= min means "at least
 *     min". A percent without bounds is checked against 0..100.
 *   - A list in a document replaces the whole list; every element starts
 *     from its schema's defaults. Lists of objects have no env variables.
 *   - A document whose first non-blank character is '{' is parsed as strict
 *     JSON; anything else as YAML 1.2. YAML anchors/aliases are refused.
 *   - cfg_set on a strlist replaces it from a comma-separated value ("a,b"),
 *     like the environment; paths may index lists: "pools[1].name".
 *   - Errors from the environment are file "<env>" with the variable named
 *     in msg ("MIN_INSTANCES: expected an integer, got 'x'"); from cfg_set,
 *     file "<flag>"; from defaults (a schema bug), "<default>". */
#ifndef HSCALE_CORE_CONFIG_H
#define HSCALE_CORE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "buf.h"

typedef enum {
    CFG_BOOL, CFG_INT, CFG_DOUBLE, CFG_PERCENT, CFG_DURATION, CFG_SIZE,
    CFG_STRING, CFG_ADDR, CFG_ENUM, CFG_STRLIST, CFG_OBJECT, CFG_LIST,
} cfg_type;

typedef struct cfg_error {
    char file[256];   /* "hscale.yaml", "<env>", "<json>", "<flag>" */
    int  line;        /* 1-based; 0 when not from a document */
    int  column;
    char key[160];    /* full dotted path: "gateway.pools[1].health.interval" */
    char msg[256];    /* what was expected and what was found */
} cfg_error;

typedef struct cfg_schema cfg_schema;

typedef struct cfg_field {
    const char *key;
    cfg_type    type;
    size_t      offset;
    const char *def;            /* default, in the value syntax; NULL: zero/empty */
    const char *env;            /* environment variable, or NULL */
    double      min, max;       /* bounds for numbers (durations in seconds,
                                   sizes in bytes); both 0: unbounded */
    const char *const *choices; /* enum names, NULL-terminated */
    const cfg_schema  *sub;     /* object / list element */
    size_t      elem_size;      /* list element size */
    size_t      count_offset;   /* strlist / list: where the size_t count lives */
    const char *help;           /* one line, for docs/configuration.md */
} cfg_field;

struct cfg_schema {
    const char      *name;
    const cfg_field *fields;
    size_t           nfields;
    /* Cross-field checks after a load; fills err->key (relative to obj, or
     * empty for obj itself: the loader prefixes the path) and err->msg. */
    int (*validate)(void *obj, cfg_error *err);
};

/* Fills every field with its default. */
int  cfg_defaults(const cfg_schema *s, void *obj, cfg_error *err);
/* Parses a YAML (or JSON) document over what obj already holds: keys absent
 * from the document keep their current values; unknown keys are errors.
 * `name` is the file name used in errors. */
int  cfg_load_text(const cfg_schema *s, void *obj, const char *text, size_t len,
                   const char *name, cfg_error *err);
int  cfg_load_file(const cfg_schema *s, void *obj, const char *path, cfg_error *err);
/* Applies every field's environment variable that is set. */
int  cfg_apply_env(const cfg_schema *s, void *obj, cfg_error *err);
/* Sets one field by dotted path ("gateway.workers") from text (flags). */
int  cfg_set(const cfg_schema *s, void *obj, const char *path, const char *value, cfg_error *err);
/* Runs every schema's validate hook, depth first. */
int  cfg_validate(const cfg_schema *s, void *obj, cfg_error *err);
/* defaults + file (when path is not NULL) + env + validate. */
int  cfg_load(const cfg_schema *s, void *obj, const char *path, cfg_error *err);
/* Frees strings, string lists and lists (recursively). */
void cfg_free(const cfg_schema *s, void *obj);
/* Deep copy (for handing a config to another thread). Copies the schema's
 * fields only; dst must hold nothing owned (zeroed or cfg_free'd). On
 * failure (out of memory) dst is freed and -1 returned. */
int  cfg_copy(const cfg_schema *s, void *dst, const void *src);

/* "file:line:col: key: msg" (parts that are unknown are left out). */
void cfg_error_format(const cfg_error *e, char *out, size_t outlen);

/* Serialises obj as JSON (durations and sizes in their text form). */
void cfg_to_json(const cfg_schema *s, const void *obj, buf *out);
/* The same for people and API callers: a credential reads "(redacted)"
 * and the password of a URL's user info "***", so a --check or a GET never
 * shows one. A credential is a key named *token, *password or *secret (a
 * rule, not a flag, so a key added later is covered without anyone
 * remembering). Not loadable back as is. */
void cfg_to_json_redacted(const cfg_schema *s, const void *obj, buf *out);
/* A Markdown table of every key: path, type, default, env, help. */
void cfg_doc_markdown(const cfg_schema *s, const char *prefix, buf *out);

/* Value parsers shared with flags and APIs. Return 0, or -1 with a message. */
int cfg_parse_duration(const char *text, uint64_t *us, char *err, size_t errlen);
int cfg_parse_size(const char *text, uint64_t *bytes, char *err, size_t errlen);
int cfg_parse_bool(const char *text, bool *out);
/* "1.5s", "250ms", "40us": the shortest exact form. */
void cfg_format_duration(uint64_t us, char *out, size_t outlen);

#endif
