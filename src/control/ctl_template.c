/* ctl_template.c -- turns an instance template into argv and environment.
 *
 * The command is split into words first (quotes honoured, no shell) and
 * placeholders are expanded inside each word afterwards: a version string
 * or a state directory holding spaces or quotes stays one argument and can
 * never smuggle in another. Unknown placeholders are errors, so a typo such
 * as {prot} is reported at start rather than passed to the service. */
#include "control/ctl_instances.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/proc.h"

const char ctl_tmpl_default_command[] =
    "{exe} app --listen {host}:{port} --instance-id {id} --version {version}";

/* This binary, so the default template runs the same build as control. */
static void self_exe(char *out, size_t outlen)
{
    ssize_t n = readlink("/proc/self/exe", out, outlen - 1);
    if (n <= 0) {
        snprintf(out, outlen, "hscale");
        return;
    }
    out[n] = '\0';
}

static int append_var(buf *b, const char *name, size_t nlen, const ctl_tmpl_vars *v,
                      char *err, size_t errlen)
{
    char tmp[4096];
    const char *val = NULL;
#define IS(s) (nlen == sizeof(s) - 1 && memcmp(name, s, nlen) == 0)
    if (IS("port") && v->noport) {
        snprintf(err, errlen, "{port} is not available: the template has port: none (no listener)");
        return -1;
    } else if (IS("port")) {
        snprintf(tmp, sizeof tmp, "%d", v->port);
        val = tmp;
    } else if (IS("host")) {
        val = v->host ? v->host : "127.0.0.1";
    } else if (IS("id")) {
        val = v->id ? v->id : "";
    } else if (IS("version")) {
        val = v->version ? v->version : "";
    } else if (IS("state_dir")) {
        val = v->state_dir ? v->state_dir : ".";
    } else if (IS("exe")) {
        self_exe(tmp, sizeof tmp);
        val = tmp;
    }
#undef IS
    if (!val) {
        snprintf(err, errlen, "unknown placeholder {%.*s} (expected port, host, id, version, "
                 "exe or state_dir)", (int)nlen, name);
        return -1;
    }
    return buf_append_str(b, val);
}

char *ctl_tmpl_expand(const char *s, const ctl_tmpl_vars *v, char *err, size_t errlen)
{
    buf b;
    buf_init(&b);
    const char *p = s;
    while (*p) {
        if (p[0] == '{' && p[1] == '{') {
            buf_append(&b, "{", 1);
            p += 2;
        } else if (p[0] == '}' && p[1] == '}') {
            buf_append(&b, "}", 1);
            p += 2;
        } else if (*p == '{') {
            const char *end = strchr(p + 1, '}');
            if (!end) {
                snprintf(err, errlen, "unterminated '{' at column %zu in '%s'",
                         (size_t)(p - s) + 1, s);
                goto fail;
            }
            if (append_var(&b, p + 1, (size_t)(end - p - 1), v, err, errlen) < 0)
                goto fail;
            p = end + 1;
        } else {
            size_t n = strcspn(p, "{}");
            if (n == 0)
                n = 1;   /* a lone '}' is literal */
            buf_append(&b, p, n);
            p += n;
        }
    }
    if (buf_append(&b, "", 1) < 0) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    /* The buffer's head is its allocation start: nothing was consumed. */
    return b.data;
fail:
    buf_free(&b);
    return NULL;
}

void ctl_argv_free(char **argv)
{
    if (!argv)
        return;
    for (char **a = argv; *a; a++)
        free(*a);
    free(argv);
}

static char **split_expand(const char *what, const char *cmd, const ctl_tmpl_vars *v, char *err,
                           size_t errlen);

char **ctl_tmpl_argv(const ctl_template_cfg *t, const ctl_tmpl_vars *v, char *err, size_t errlen)
{
    return split_expand("command", t && t->command && t->command[0] ? t->command : ctl_tmpl_default_command,
                        v, err, errlen);
}

char **ctl_tmpl_ready_argv(const ctl_template_cfg *t, const ctl_tmpl_vars *v, char *err,
                           size_t errlen)
{
    if (!t->ready_command || !t->ready_command[0]) {
        snprintf(err, errlen, "no ready_command");
        return NULL;
    }
    return split_expand("ready_command", t->ready_command, v, err, errlen);
}

static char **split_expand(const char *what, const char *cmd, const ctl_tmpl_vars *v, char *err,
                           size_t errlen)
{
    char perr[256];
    char **words = proc_argv_split(cmd, perr, sizeof perr);
    if (!words) {
        snprintf(err, errlen, "%s: %s", what, perr);
        return NULL;
    }
    size_t n = 0;
    while (words[n])
        n++;
    if (n == 0) {
        proc_argv_free(words);
        snprintf(err, errlen, "%s: expected a program, got an empty line", what);
        return NULL;
    }
    char **argv = calloc(n + 1, sizeof *argv);
    if (!argv) {
        proc_argv_free(words);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        char e[256];
        argv[i] = ctl_tmpl_expand(words[i], v, e, sizeof e);
        if (!argv[i]) {
            snprintf(err, errlen, "%s word %zu: %s", what, i + 1, e);
            proc_argv_free(words);
            ctl_argv_free(argv);
            return NULL;
        }
    }
    proc_argv_free(words);
    return argv;
}

char **ctl_tmpl_env(const ctl_template_cfg *t, const ctl_tmpl_vars *v, char *err, size_t errlen)
{
    size_t n = t ? t->nenv : 0;
    char **env = calloc(n + 1, sizeof *env);
    if (!env) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        const char *kv = t->env[i];
        const char *eq = strchr(kv, '=');
        if (!eq || eq == kv) {
            snprintf(err, errlen, "env[%zu]: expected KEY=value, got '%s'", i, kv);
            ctl_argv_free(env);
            return NULL;
        }
        char e[256];
        env[i] = ctl_tmpl_expand(kv, v, e, sizeof e);
        if (!env[i]) {
            snprintf(err, errlen, "env[%zu]: %s", i, e);
            ctl_argv_free(env);
            return NULL;
        }
    }
    return env;
}

int ctl_tmpl_check(const ctl_template_cfg *t, char *key, size_t keylen, char *err, size_t errlen)
{
    ctl_tmpl_vars v = { .id = "i-1", .version = t->version ? t->version : "", .host = "127.0.0.1",
                        .state_dir = ".", .port = 1, .noport = t->port == CTL_PORT_NONE };
    char e[256];
    char **a = ctl_tmpl_argv(t, &v, e, sizeof e);
    if (!a) {
        /* the default command needs {port}: name the cause, not its words */
        if (!(t->command && t->command[0]))
            snprintf(e, sizeof e, "port: none needs a command (the default runs this binary's "
                     "app on {port})");
        snprintf(key, keylen, "command");
        snprintf(err, errlen, "%s", e);
        return -1;
    }
    ctl_argv_free(a);
    if (t->ready_command && t->ready_command[0]) {
        a = ctl_tmpl_ready_argv(t, &v, e, sizeof e);
        if (!a) {
            snprintf(key, keylen, "ready_command");
            snprintf(err, errlen, "%s", e);
            return -1;
        }
        ctl_argv_free(a);
    }
    for (size_t i = 0; i < t->nenv; i++) {
        char *x = ctl_tmpl_expand(t->env[i], &v, e, sizeof e);
        if (!x) {
            snprintf(key, keylen, "env[%zu]", i);
            snprintf(err, errlen, "%s", e);
            return -1;
        }
        free(x);
    }
    if (t->workdir && t->workdir[0]) {
        char *x = ctl_tmpl_expand(t->workdir, &v, e, sizeof e);
        if (!x) {
            snprintf(key, keylen, "workdir");
            snprintf(err, errlen, "%s", e);
            return -1;
        }
        free(x);
    }
    return 0;
}
