/* test_pid.c -- getpid() from memory (core/pid.c): it is the process's
 * id, and a fork() child answers with its own, not its parent's. */
#include <criterion/criterion.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

Test(pid, answers_the_process_id_and_a_fork_child_its_own)
{
    pid_t me = (pid_t)syscall(SYS_getpid);
    cr_assert_eq(getpid(), me);
    cr_assert_eq(getpid(), me, "the cached answer stays right");
    pid_t child = fork();
    cr_assert_geq(child, 0);
    if (child == 0)
        _exit(getpid() == (pid_t)syscall(SYS_getpid) && getpid() != me ? 0 : 1);
    int status = 0;
    cr_assert_eq(waitpid(child, &status, 0), child);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child saw its own id");
    cr_assert_eq(getpid(), me);
}
