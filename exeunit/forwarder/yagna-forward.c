/*
 * yagna-forward: bridges Unix sockets to TCP ports of a service in the same container.
 *
 *   yagna-forward DIR PORT [PORT ...]     listen on DIR/PORT.sock (mode 0666) for each PORT;
 *                                         each connection there is bridged to 127.0.0.1:PORT
 *                                         (or [::1]:PORT when 127.0.0.1 refuses). Prints
 *                                         "ready" once every socket listens.
 *   yagna-forward --probe PORT [TIMEOUT_MS]   exit 0 if 127.0.0.1:PORT (or [::1]:PORT) accepts
 *                                         a TCP connection within TIMEOUT_MS (default 2000), else 1.
 *   yagna-forward --version               prints "yagna-forward 1".
 *
 * It runs inside a container without a network (loopback only), so that a daemon on the host
 * can reach the container's TCP services through a bind-mounted directory.
 *
 * One process, one thread, never forks: a poll() loop over nonblocking sockets. Each bridged
 * connection owns one 64 KiB buffer per direction, and a side is read only while its buffer
 * has room, so a slow reader holds back its own writer and nothing else.
 *
 * Costs at most: 2 fds and 128 KiB + ~100 bytes of memory per bridged connection (its own
 * mapping, made on accept and returned on close; pages are touched only as data passes), and
 * at most 4096 bridged connections (YAGNA_FORWARD_MAX_CONN may lower it; fewer if
 * RLIMIT_NOFILE is too low): at most ~513 MiB if all 4096 are saturated, ~1 MiB when idle.
 * Past the bound a connection is accepted and closed at once. Exit: 0 on SIGTERM/SIGINT
 * (sockets unlinked), 2 on bad arguments or if a socket cannot be made.
 */
#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define BUF_SIZE (64 * 1024)
#define MAX_CONN 4096
#define BACKLOG 1024
#define ACCEPT_BATCH 64

enum { U = 0, T = 1 }; /* the two sides of a connection: Unix (host daemon), TCP (service) */

struct dir {               /* one direction: bytes read from side s, waiting for side !s */
    size_t head, tail;     /* pending bytes: buf[head..tail) */
    bool eof;              /* side s reached EOF */
    bool shut;             /* ...and all was written, and side !s got shutdown(SHUT_WR) */
    char buf[BUF_SIZE];
};

struct conn {
    int fd[2];             /* [U], [T] */
    int port;
    int attempt;           /* TCP connect attempt: 0 is 127.0.0.1, 1 is ::1 */
    bool connecting;       /* the TCP connect is in progress */
    bool unix_gone;        /* the Unix peer hung up: what the service sends is dropped */
    struct dir d[2];       /* d[U]: Unix to TCP, d[T]: TCP to Unix */
};

struct listener {
    int fd, port;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
};

static struct listener *listeners;
static int nlisteners;
static struct conn *conns[MAX_CONN];
static int nconns, max_conns = MAX_CONN;
static bool paused;        /* out of fds/memory: the listeners rest until a connection closes */
static volatile sig_atomic_t stop_signal;

static void on_signal(int sig) { stop_signal = sig; }

static void unlink_all(void)
{
    for (int i = 0; i < nlisteners; i++)
        unlink(listeners[i].path);
}

static _Noreturn void fail(const char *what, const char *arg) /* "WHAT ARG: errno text" */
{
    fprintf(stderr, "yagna-forward: %s%s: %s\n", what, arg, strerror(errno));
    unlink_all();
    exit(2);
}

static _Noreturn void usage(const char *why, const char *arg)
{
    fprintf(stderr, "yagna-forward: %s%s\nusage: yagna-forward DIR PORT [PORT ...]\n"
                    "       yagna-forward --probe PORT [TIMEOUT_MS]\n"
                    "       yagna-forward --version\n", why, arg);
    exit(2);
}

static bool parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

/* Starts a nonblocking TCP connect to loopback (attempt 0: 127.0.0.1, 1: ::1).
 * Returns 0 if connected, 1 if in progress (*out is set in both cases), -1 (errno) if failed. */
static int start_connect(int port, int attempt, int *out)
{
    union { struct sockaddr sa; struct sockaddr_in in; struct sockaddr_in6 in6; } a;
    socklen_t len;
    memset(&a, 0, sizeof a);
    if (attempt == 0) {
        a.in.sin_family = AF_INET;
        a.in.sin_port = htons((unsigned short)port);
        a.in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        len = sizeof a.in;
    } else {
        a.in6.sin6_family = AF_INET6;
        a.in6.sin6_port = htons((unsigned short)port);
        a.in6.sin6_addr = in6addr_loopback;
        len = sizeof a.in6;
    }
    int fd = socket(a.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1; /* we pass on whatever we read at once: Nagle would only add delay */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    *out = fd;
    if (connect(fd, &a.sa, len) == 0)
        return 0;
    if (errno == EINPROGRESS)
        return 1;
    int saved = errno;
    close(fd);
    errno = saved;
    return -1;
}

static void abort_fd(int fd) /* abortive close: RST rather than FIN where the socket has one */
{
    struct linger lg = { 1, 0 };
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
}

/* Starts the next connect attempt of c; false when none is left. */
static bool next_attempt(struct conn *c)
{
    while (++c->attempt < 2) {
        int r = start_connect(c->port, c->attempt, &c->fd[T]);
        if (r >= 0) {
            c->connecting = (r == 1);
            return true;
        }
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
            paused = true;
    }
    c->fd[T] = -1;
    return false;
}

static void close_conn(int i, bool abortive)
{
    struct conn *c = conns[i];
    for (int s = U; s <= T; s++) {
        if (c->fd[s] < 0)
            continue;
        if (abortive)
            abort_fd(c->fd[s]);
        else
            close(c->fd[s]);
    }
    free(c);
    conns[i] = conns[--nconns];
    paused = false;
}

static void accept_some(struct listener *l)
{
    for (int k = 0; k < ACCEPT_BATCH; k++) {
        int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == ECONNABORTED || errno == EINTR)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                paused = true;
            return; /* EAGAIN: all taken */
        }
        struct conn *c = nconns < max_conns ? malloc(sizeof *c) : NULL;
        if (!c) {
            paused = paused || nconns < max_conns; /* out of memory, not at the bound */
            abort_fd(fd);
            continue;
        }
        /* Not memset: the buffers' pages stay untouched until data passes. */
        c->fd[U] = fd;
        c->port = l->port;
        c->attempt = -1;
        c->unix_gone = false;
        for (int s = U; s <= T; s++)
            c->d[s].head = c->d[s].tail = 0, c->d[s].eof = c->d[s].shut = false;
        if (!next_attempt(c)) {
            abort_fd(fd);
            free(c);
            continue;
        }
        conns[nconns++] = c;
    }
}

/* Moves bytes of direction s of c; rev[] are the poll results of both sides. -1 on error. */
static int pump(struct conn *c, int s, const short rev[2])
{
    struct dir *d = &c->d[s];
    bool dropping = (s == T && c->unix_gone);
    bool moved = false;
    if (!d->eof && d->tail < BUF_SIZE && (rev[s] & (POLLIN | POLLHUP))) {
        ssize_t n = recv(c->fd[s], d->buf + d->tail, BUF_SIZE - d->tail, 0);
        if (n > 0)
            d->tail += (size_t)n, moved = true;
        else if (n == 0)
            d->eof = true;
        else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return -1;
        if (dropping)
            d->head = d->tail = 0;
    }
    if (d->head < d->tail && !dropping && (moved || (rev[!s] & (POLLOUT | POLLHUP)))) {
        ssize_t n = send(c->fd[!s], d->buf + d->head, d->tail - d->head, MSG_NOSIGNAL);
        if (n > 0)
            d->head += (size_t)n;
        else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return -1;
    }
    if (d->head == d->tail)
        d->head = d->tail = 0;
    if (d->eof && d->tail == 0 && !d->shut) {
        if (!dropping && shutdown(c->fd[!s], SHUT_WR) < 0 && errno != ENOTCONN)
            return -1;
        d->shut = true;
    }
    return 0;
}

static void service(int i, short rev_u, short rev_t)
{
    struct conn *c = conns[i];
    short rev[2] = { rev_u, rev_t };
    if (c->connecting) {
        if (!(rev_t & (POLLOUT | POLLERR | POLLHUP)))
            return;
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(c->fd[T], SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0) {
            c->connecting = false;
            return;
        }
        close(c->fd[T]);
        if (!next_attempt(c))
            close_conn(i, true);
        return;
    }
    if ((rev_u | rev_t) & POLLERR) { /* a reset, on either side */
        close_conn(i, true);
        return;
    }
    if (rev_u & POLLHUP)
        c->unix_gone = true;
    if (pump(c, U, rev) < 0 || pump(c, T, rev) < 0) {
        close_conn(i, true);
        return;
    }
    if (c->d[U].shut && (c->d[T].shut || c->unix_gone))
        close_conn(i, false);
}

/* What to poll for on both sides of c. A side with nothing to wait for is left out (fd -1),
 * except that the Unix side is watched for a hang-up while something may still go to it. */
static void want(const struct conn *c, struct pollfd p[2])
{
    p[U] = (struct pollfd){ .fd = -1 };
    p[T] = (struct pollfd){ .fd = c->fd[T], .events = POLLOUT };
    if (c->connecting)
        return;
    short ev[2] = { 0, 0 };
    for (int s = U; s <= T; s++) {
        const struct dir *d = &c->d[s];
        if (!d->eof && d->tail < BUF_SIZE)
            ev[s] |= POLLIN;
        if (d->head < d->tail && !(s == T && c->unix_gone))
            ev[!s] |= POLLOUT;
    }
    bool watch_u = ev[U] || (!c->unix_gone && !c->d[T].shut);
    p[U] = (struct pollfd){ .fd = watch_u ? c->fd[U] : -1, .events = ev[U] };
    p[T] = (struct pollfd){ .fd = ev[T] ? c->fd[T] : -1, .events = ev[T] };
}

static void make_listener(struct listener *l, const char *dir, int port)
{
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    int n = snprintf(a.sun_path, sizeof a.sun_path, "%s/%d.sock", dir, port);
    if (n < 0 || (size_t)n >= sizeof a.sun_path) {
        errno = ENAMETOOLONG;
        fail("socket path too long (at most 107 bytes) in ", dir);
    }
    l->port = port;
    l->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (l->fd < 0)
        fail("cannot make a socket for ", a.sun_path);
    if (unlink(a.sun_path) < 0 && errno != ENOENT)
        fail("cannot remove the stale ", a.sun_path);
    fchmod(l->fd, 0666); /* with umask 0, the mode bind gives the file: anyone may connect */
    if (bind(l->fd, (struct sockaddr *)&a, sizeof a) < 0)
        fail("cannot bind ", a.sun_path);
    memcpy(l->path, a.sun_path, sizeof l->path);
    nlisteners++;
    if (chmod(l->path, 0666) < 0 || listen(l->fd, BACKLOG) < 0)
        fail("cannot listen on ", l->path);
}

static long elapsed_ms(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (t.tv_sec - t0->tv_sec) * 1000 + (t.tv_nsec - t0->tv_nsec) / 1000000;
}

static int probe(int argc, char **argv)
{
    long port, timeout = 2000;
    if (argc < 3 || argc > 4)
        usage("--probe takes PORT [TIMEOUT_MS]", "");
    if (!parse_long(argv[2], 1, 65535, &port))
        usage("bad port: ", argv[2]);
    if (argc == 4 && !parse_long(argv[3], 0, 86400000, &timeout))
        usage("bad timeout: ", argv[3]);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int attempt = 0; attempt < 2; attempt++) {
        int fd, r = start_connect((int)port, attempt, &fd);
        if (r < 0)
            continue;
        struct pollfd p = { .fd = fd, .events = POLLOUT };
        long left;
        while (r == 1 && (left = timeout - elapsed_ms(&t0)) > 0 && poll(&p, 1, (int)left) != 0) {
            int err = 0;
            socklen_t len = sizeof err;
            if (p.revents && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0)
                r = err ? -1 : 0;
        }
        close(fd);
        if (r == 0)
            return 0;
    }
    return 1;
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--version") == 0) {
        puts("yagna-forward 1");
        return 0;
    }
    if (argc >= 2 && strcmp(argv[1], "--probe") == 0)
        return probe(argc, argv);
    if (argc < 3 || argv[1][0] == '-')
        usage("expected DIR PORT [PORT ...]", "");

    const char *env = getenv("YAGNA_FORWARD_MAX_CONN");
    long v;
    if (env && *env) {
        if (!parse_long(env, 1, LONG_MAX, &v))
            usage("bad YAGNA_FORWARD_MAX_CONN: ", env);
        max_conns = v < MAX_CONN ? (int)v : MAX_CONN;
    }
    nlisteners = 0;
    listeners = calloc((size_t)argc, sizeof *listeners);
    if (!listeners)
        fail("out of memory", "");
    int nports = argc - 2;
    for (int i = 0; i < nports; i++) {
        if (!parse_long(argv[i + 2], 1, 65535, &v))
            usage("bad port: ", argv[i + 2]);
        listeners[i].port = (int)v;
        for (int j = 0; j < i; j++)
            if (listeners[j].port == v)
                usage("port given twice: ", argv[i + 2]);
    }

    /* Two fds per connection: ask for enough, or take fewer connections. */
    struct rlimit rl;
    rlim_t need = (rlim_t)max_conns * 2 + (rlim_t)nports + 16;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < need) {
        rl.rlim_cur = rl.rlim_max < need ? rl.rlim_max : need;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
        if (rl.rlim_cur < need)
            max_conns = rl.rlim_cur > (rlim_t)nports + 18 ? (int)((rl.rlim_cur - nports - 16) / 2) : 1;
    }
    mallopt(M_MMAP_THRESHOLD, BUF_SIZE); /* each connection its own mapping, returned on close */

    struct sigaction sa = { .sa_handler = on_signal };
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGCHLD, SIG_IGN); /* as PID 1 of a container: orphans are reaped by the kernel */
    sigset_t stops, unblocked;
    sigemptyset(&stops);
    sigaddset(&stops, SIGTERM);
    sigaddset(&stops, SIGINT);
    sigprocmask(SIG_BLOCK, &stops, &unblocked); /* delivered only inside ppoll(): no race */
    sigdelset(&unblocked, SIGTERM);
    sigdelset(&unblocked, SIGINT);

    umask(0);
    for (int i = 0; i < nports; i++)
        make_listener(&listeners[i], argv[1], listeners[i].port);
    struct pollfd *pfds = calloc((size_t)max_conns * 2 + (size_t)nports, sizeof *pfds);
    if (!pfds)
        fail("out of memory", "");
    printf("ready\n");
    fflush(stdout);

    const struct timespec retry = { 1, 0 }; /* paused with nothing to close: try again then */
    while (!stop_signal) {
        int n = 2 * nconns;
        for (int i = 0; i < nconns; i++)
            want(conns[i], &pfds[2 * i]);
        for (int l = 0; l < nlisteners; l++)
            pfds[n + l] = (struct pollfd){ .fd = paused ? -1 : listeners[l].fd, .events = POLLIN };
        int r = ppoll(pfds, (nfds_t)(n + nlisteners), paused ? &retry : NULL, &unblocked);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            fail("poll failed", "");
        }
        if (r == 0) {
            paused = false;
            continue;
        }
        /* Backwards: close_conn() moves the last connection (already served) into slot i. */
        for (int i = nconns - 1; i >= 0; i--)
            if (pfds[2 * i].revents || pfds[2 * i + 1].revents)
                service(i, pfds[2 * i].revents, pfds[2 * i + 1].revents);
        for (int l = 0; l < nlisteners; l++)
            if (pfds[n + l].revents & POLLIN)
                accept_some(&listeners[l]);
    }
    unlink_all();
    free(pfds);
    return 0;
}
