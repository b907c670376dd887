/* sock.h -- socket helpers: address parsing, listeners, non-blocking
 * connects. Every socket made here is non-blocking and close-on-exec.
 *
 * Addresses are written "host:port", "[v6]:port" or ":port" (all IPv4
 * interfaces); host names are resolved once, at parse time, never on a
 * request path. */
#ifndef HSCALE_CORE_SOCK_H
#define HSCALE_CORE_SOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

typedef struct sock_addr {
    struct sockaddr_storage ss;
    socklen_t len;
} sock_addr;

/* Parses "host:port", "[v6]:port", ":port" or "*:port" (0.0.0.0). A name
 * resolving to both families picks IPv4 ("localhost" is 127.0.0.1). On
 * error returns -1 and writes why into err, e.g. "missing port in 'x'". */
int  sock_addr_parse(const char *text, sock_addr *out, char *err, size_t errlen);
/* Formats as "host:port" ("[v6]:port" for IPv6). Returns out. */
char *sock_addr_format(const sock_addr *a, char *out, size_t outlen);
bool sock_addr_equal(const sock_addr *a, const sock_addr *b);
/* The port, host order. */
int  sock_addr_port(const sock_addr *a);

typedef struct sock_listen_opts {
    int  backlog;       /* default 4096 when 0 */
    bool reuseport;     /* SO_REUSEPORT: one listener per worker thread */
    bool defer_accept;  /* TCP_DEFER_ACCEPT: wake only when data arrives */
} sock_listen_opts;

/* Binds and listens, TCP_NODELAY set for the accepted sockets to inherit.
 * Returns the fd, or -1 with a message in err. */
int  sock_listen(const sock_addr *a, const sock_listen_opts *o, char *err, size_t errlen);
/* The address a listening socket is bound to (for port 0). */
int  sock_local_addr(int fd, sock_addr *out);
/* Accepts one connection, non-blocking and close-on-exec, TCP_NODELAY set.
 * Returns the fd, or -1 with errno (EAGAIN when the queue is empty). */
int  sock_accept(int lfd, sock_addr *peer);
/* sock_accept for a hot accept loop: sets TCP_NODELAY on the connection
 * only when `set_nodelay` (false when the listener has it: Linux copies it
 * to every accepted socket, one system call less per connection). */
int  sock_accept_ex(int lfd, sock_addr *peer, bool set_nodelay);
/* What sockets accepted on lfd start with: TCP_NODELAY, and whether
 * TCP_DEFER_ACCEPT holds them until their first bytes (read once per
 * listener; a listener handed down by another process may lack either). */
void sock_listener_info(int lfd, bool *nodelay, bool *defer_accept);
/* Starts a non-blocking connect with TCP_NODELAY. Returns the fd (connect
 * in progress or done), or -1 with errno. */
int  sock_connect(const sock_addr *a);
/* After a non-blocking connect became writable: 0, or the socket error. */
int  sock_connect_result(int fd);
/* Blocking connect with a timeout, for tools and the control plane.
 * Returns a blocking fd with TCP_NODELAY set, or -1 with errno. */
int  sock_connect_blocking(const sock_addr *a, int timeout_ms);

int  sock_set_nonblock(int fd, bool on);
int  sock_set_nodelay(int fd);
/* Finds a free loopback TCP port (bind to 0, read it, close). */
int  sock_free_port(void);

#endif
