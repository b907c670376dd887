/* pid.c -- getpid() answered from memory, for the whole process.
 *
 * Why: glibc stopped caching the process id (2.25), and OpenSSL 3.0 asks
 * for it on every RAND_bytes, to notice a fork (openssl_get_fork_id):
 * five system calls per TLS 1.3 connection, two per TLS 1.2 one, each a
 * few µs on a virtual machine, for a number that cannot change. The
 * executable's definition comes before libc's in symbol lookup, so this
 * one answers every caller that goes through the dynamic linker
 * (libcrypto, libpq, hiredis, ours); glibc's own internals call the
 * system directly and are unaffected.
 *
 * Invariant: pid_cached is this process's id, or 0 before the first call.
 * A fork() child refreshes it in the atfork handler before any code of the
 * child runs. Children made by posix_spawn or vfork exec without calling
 * getpid, and hscale makes no thread or process with a bare clone(). */
#include <pthread.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <unistd.h>

static _Atomic pid_t pid_cached;

static void pid_after_fork_child(void)
{
    atomic_store_explicit(&pid_cached, (pid_t)syscall(SYS_getpid), memory_order_relaxed);
}

__attribute__((constructor)) static void pid_cache_init(void)
{
    pthread_atfork(NULL, NULL, pid_after_fork_child);
    pid_after_fork_child();
}

pid_t getpid(void)
{
    pid_t p = atomic_load_explicit(&pid_cached, memory_order_relaxed);
    if (p == 0) {          /* a caller that ran before the constructor */
        p = (pid_t)syscall(SYS_getpid);
        atomic_store_explicit(&pid_cached, p, memory_order_relaxed);
    }
    return p;
}
