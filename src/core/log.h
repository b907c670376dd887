/* log.h -- levelled logging to stderr, as plain lines or JSON lines.
 *
 * One write(2) per record, so lines from several threads never interleave.
 * The level and format are process-wide and set once at start (from config
 * or HSCALE_LOG_LEVEL / HSCALE_LOG_FORMAT). */
#ifndef HSCALE_CORE_LOG_H
#define HSCALE_CORE_LOG_H

#include <stdbool.h>

typedef enum { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR, LOG_OFF } log_level;

/* Parses "debug|info|warn|error|off"; returns -1 when unknown. */
int  log_level_parse(const char *s, log_level *out);
void log_set_level(log_level level);
log_level log_get_level(void);
void log_set_json(bool json);
/* A short component name printed with every record ("gateway", "app"). */
void log_set_component(const char *name);

/* Applies HSCALE_LOG_LEVEL (debug|info|warn|error|off) and
 * HSCALE_LOG_FORMAT (text|json) when set. Returns -1 (after logging a
 * warning) when either holds an unknown value; the setting is then kept. */
int  log_init_from_env(void);
/* Where records go; stderr by default. For tests and log files. */
void log_set_fd(int fd);

void log_write(log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...) do { if (log_get_level() <= LOG_DEBUG) log_write(LOG_DEBUG, __VA_ARGS__); } while (0)
#define log_info(...)  do { if (log_get_level() <= LOG_INFO)  log_write(LOG_INFO,  __VA_ARGS__); } while (0)
#define log_warn(...)  do { if (log_get_level() <= LOG_WARN)  log_write(LOG_WARN,  __VA_ARGS__); } while (0)
#define log_error(...) do { if (log_get_level() <= LOG_ERROR) log_write(LOG_ERROR, __VA_ARGS__); } while (0)

#endif
