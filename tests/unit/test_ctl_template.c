/* test_ctl_template.c -- instance template expansion: placeholders, quoting
 * (a value never splits or joins words), unknown placeholders and bad env
 * entries named in the error, the built-in default command, and the
 * `control:` schema's defaults and cross-field checks. */
#include <criterion/criterion.h>

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "control/ctl_instances.h"

const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libcriterion.so\n"; }

static const ctl_tmpl_vars vars = { .id = "i-7", .version = "2.0 beta", .host = "127.0.0.1",
                                    .state_dir = "/var/lib/hs", .port = 9001 };

static size_t argc_of(char **argv)
{
    size_t n = 0;
    while (argv[n])
        n++;
    return n;
}

Test(ctl_template, expand_every_placeholder)
{
    char err[256] = "";
    char *s = ctl_tmpl_expand("{host}:{port}/{id}/{version}/{state_dir}", &vars, err, sizeof err);
    cr_assert_not_null(s, "%s", err);
    cr_assert_str_eq(s, "127.0.0.1:9001/i-7/2.0 beta//var/lib/hs");
    free(s);
}

Test(ctl_template, literal_braces_and_lone_close)
{
    char err[256] = "";
    char *s = ctl_tmpl_expand("{{port}} is {port} } end", &vars, err, sizeof err);
    cr_assert_not_null(s, "%s", err);
    cr_assert_str_eq(s, "{port} is 9001 } end");
    free(s);
}

Test(ctl_template, unknown_and_unterminated_placeholders)
{
    char err[256] = "";
    cr_assert_null(ctl_tmpl_expand("--port {prot}", &vars, err, sizeof err));
    cr_assert(strstr(err, "{prot}"), "error names it: %s", err);
    cr_assert_null(ctl_tmpl_expand("x {port", &vars, err, sizeof err));
    cr_assert(strstr(err, "unterminated"), "%s", err);
}

Test(ctl_template, exe_is_this_binary)
{
    char err[256] = "", self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    cr_assert_gt(n, 0);
    self[n] = '\0';
    char *s = ctl_tmpl_expand("{exe}", &vars, err, sizeof err);
    cr_assert_str_eq(s, self);
    free(s);
}

Test(ctl_template, argv_split_then_expand)
{
    ctl_template_cfg t = { .command = "python3 -m http.server '{port}' --bind \"{host}\" --tag {version}" };
    char err[256] = "";
    char **argv = ctl_tmpl_argv(&t, &vars, err, sizeof err);
    cr_assert_not_null(argv, "%s", err);
    cr_assert_eq(argc_of(argv), 8);
    cr_assert_str_eq(argv[0], "python3");
    cr_assert_str_eq(argv[3], "9001");
    cr_assert_str_eq(argv[5], "127.0.0.1");
    /* The version holds a space: it stays one word. */
    cr_assert_str_eq(argv[7], "2.0 beta");
    ctl_argv_free(argv);
}

Test(ctl_template, value_cannot_inject_words)
{
    ctl_tmpl_vars v = vars;
    v.version = "1; rm -rf / 'x' \"y\"";
    ctl_template_cfg t = { .command = "app --version={version}" };
    char err[256] = "";
    char **argv = ctl_tmpl_argv(&t, &v, err, sizeof err);
    cr_assert_not_null(argv, "%s", err);
    cr_assert_eq(argc_of(argv), 2);
    cr_assert_str_eq(argv[1], "--version=1; rm -rf / 'x' \"y\"");
    ctl_argv_free(argv);
}

Test(ctl_template, default_command_runs_app)
{
    ctl_template_cfg t = { 0 };
    char err[256] = "";
    char **argv = ctl_tmpl_argv(&t, &vars, err, sizeof err);
    cr_assert_not_null(argv, "%s", err);
    cr_assert_eq(access(argv[0], X_OK), 0, "argv[0] is an executable: %s", argv[0]);
    cr_assert_str_eq(argv[1], "app");
    cr_assert_str_eq(argv[2], "--listen");
    cr_assert_str_eq(argv[3], "127.0.0.1:9001");
    ctl_argv_free(argv);
}

Test(ctl_template, command_errors_are_named)
{
    char err[256] = "";
    ctl_template_cfg t1 = { .command = "app 'unterminated" };
    cr_assert_null(ctl_tmpl_argv(&t1, &vars, err, sizeof err));
    cr_assert(strstr(err, "command") && strstr(err, "quote"), "%s", err);
    ctl_template_cfg t2 = { .command = "app --x {nope}" };
    cr_assert_null(ctl_tmpl_argv(&t2, &vars, err, sizeof err));
    cr_assert(strstr(err, "word 3") && strstr(err, "{nope}"), "%s", err);
    ctl_template_cfg t3 = { .command = "   " };
    cr_assert_null(ctl_tmpl_argv(&t3, &vars, err, sizeof err));
    cr_assert(strstr(err, "empty"), "%s", err);
}

Test(ctl_template, env_expanded_and_checked)
{
    char *env[] = { "PORT={port}", "NAME=inst-{id}" };
    ctl_template_cfg t = { .env = env, .nenv = 2 };
    char err[256] = "";
    char **e = ctl_tmpl_env(&t, &vars, err, sizeof err);
    cr_assert_not_null(e, "%s", err);
    cr_assert_str_eq(e[0], "PORT=9001");
    cr_assert_str_eq(e[1], "NAME=inst-i-7");
    cr_assert_null(e[2]);
    ctl_argv_free(e);
    char *bad[] = { "OK=1", "NOEQUALS" };
    ctl_template_cfg t2 = { .env = bad, .nenv = 2 };
    cr_assert_null(ctl_tmpl_env(&t2, &vars, err, sizeof err));
    cr_assert(strstr(err, "env[1]") && strstr(err, "NOEQUALS"), "%s", err);
}

typedef struct { ctl_config control; } file_t;
static const cfg_field ff[] = {
    { .key = "control", .type = CFG_OBJECT, .offset = 0, .sub = &ctl_config_schema },
};
static const cfg_schema fs = { "hscale", ff, 1, NULL };

Test(ctl_template, config_defaults)
{
    file_t f;
    memset(&f, 0, sizeof f);
    cfg_error e;
    memset(&e, 0, sizeof e);
    cr_assert_eq(cfg_load_text(&fs, &f, "{}", 2, "t", &e), 0, "%s", e.msg);
    cr_assert_eq(cfg_defaults(&fs, &f, &e), 0, "%s", e.msg);
    cr_assert_str_eq(f.control.listen, "127.0.0.1:8081");
    cr_assert_str_eq(f.control.tmpl.ready_path, "/health/ready");
    cr_assert_eq(f.control.instances, 3);
    cr_assert_eq(f.control.driver, CTL_DRIVER_PROCESS);
    cr_assert_eq(f.control.drain_timeout_us, 30000000u);
    cfg_free(&fs, &f);
}

static void load_bad(const char *yaml, const char *want_key)
{
    file_t f;
    memset(&f, 0, sizeof f);
    cfg_error e;
    memset(&e, 0, sizeof e);
    int rc = cfg_defaults(&fs, &f, &e);
    if (rc == 0)
        rc = cfg_load_text(&fs, &f, yaml, strlen(yaml), "t.yaml", &e);
    if (rc == 0)
        rc = cfg_validate(&fs, &f, &e);
    cr_assert_eq(rc, -1, "%s should fail", yaml);
    cr_assert(strstr(e.key, want_key), "key %s names %s (%s)", e.key, want_key, e.msg);
    cfg_free(&fs, &f);
}

Test(ctl_template, config_errors_name_the_key)
{
    load_bad("control:\n  driver: exec\n", "exec.launch");
    load_bad("control:\n  instances: 5\n  max_instances: 2\n", "instances");
    load_bad("control:\n  template:\n    ready_path: health\n", "template.ready_path");
    load_bad("control:\n  gateway: \"ftp://x\"\n", "gateway");
    load_bad("control:\n  template:\n    env: [\"=x\"]\n", "env");
    load_bad("control:\n  drivr: exec\n", "drivr");
}
