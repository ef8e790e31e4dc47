/*
 * connect_accept: the TCP socket calls an ordinary program makes, each checked against the
 * kernel's semantics. The test builds it with `gcc -static` (so the trap path alone must
 * serve it) and runs it in two roles:
 *
 *   connect_accept peer PORT
 *       The kernel-side helper. Listens on 0.0.0.0:PORT and serves each connection in a
 *       forked child that obeys one command line, and echoes UDP datagrams on PORT too:
 *         ECHO\n          echo every byte; at end of stream send "EOF-SEEN\n" and close
 *         CLOSE\n         close at once (the client then writes into a closed connection)
 *         RESET\n         close with SO_LINGER {1, 0}: a reset
 *         CONNECT port\n  connect back to the client's address at `port`, send
 *                         "hello from peer\n", then behave as ECHO on that connection
 *
 *   connect_accept app PEER_IP PEER_PORT CLOSED_PORT LISTEN_PORT OWN_IP
 *       The program under test. Prints "ok CHECK" or "FAIL CHECK: why" per check and exits 1
 *       if any check failed. OWN_IP is the address its sockets must report as their own;
 *       nothing may listen on PEER_IP:CLOSED_PORT.
 *
 * The program holds no assumption about joyride: it passes with both roles run natively in
 * two namespaces joined by a veth pair, so a failure under joyride is joyride's.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

/* Every wait in the program is bounded by this (milliseconds); the whole run by ALARM_S. */
#define IO_TIMEOUT_MS 10000
#define ALARM_S 90

static int failures;
static volatile sig_atomic_t sigpipes;

static void report(int good, const char *check, const char *fmt, ...)
{
    if (good) {
        printf("ok %s\n", check);
    } else {
        va_list ap;
        failures++;
        printf("FAIL %s: ", check);
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        printf("\n");
    }
    fflush(stdout);
}

/* The condition, and on failure the last errno in words. */
#define CHECK(cond, check) report((cond), (check), "errno %d (%s)", errno, strerror(errno))

static void die(const char *what)
{
    printf("FAIL %s: errno %d (%s)\n", what, errno, strerror(errno));
    fflush(stdout);
    exit(1);
}

/* xorshift64: a byte stream no two windows of which look alike. */
static uint64_t next_random(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    return x;
}

static int wait_fd(int fd, short events)
{
    struct pollfd p = { .fd = fd, .events = events };
    int n;
    do {
        n = poll(&p, 1, IO_TIMEOUT_MS);
    } while (n < 0 && errno == EINTR);
    if (n == 0)
        errno = ETIMEDOUT;
    return n > 0 ? 0 : -1;
}

/* Works on blocking and non-blocking descriptors alike: poll first, then one call. */
static int write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        if (wait_fd(fd, POLLOUT) < 0)
            return -1;
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Reads exactly len bytes; returns the number read before end of stream, or -1. */
static ssize_t read_exact(int fd, void *buf, size_t len)
{
    char *p = buf;
    size_t got = 0;
    while (got < len) {
        if (wait_fd(fd, POLLIN) < 0)
            return -1;
        ssize_t n = read(fd, p + got, len - got);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                continue;
            return -1;
        }
        if (n == 0)
            break;
        got += (size_t)n;
    }
    return (ssize_t)got;
}

/* 0 when the next read reports end of stream. */
static int expect_eof(int fd)
{
    char c;
    for (;;) {
        if (wait_fd(fd, POLLIN) < 0)
            return -1;
        ssize_t n = read(fd, &c, 1);
        if (n == 0)
            return 0;
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (n > 0)
            errno = EPROTO;
        return -1;
    }
}

/* ---- peer role ---------------------------------------------------------------------- */

static int read_line(int fd, char *line, size_t cap)
{
    size_t len = 0;
    while (len + 1 < cap) {
        ssize_t n = read(fd, line + len, 1);
        if (n <= 0)
            return -1;
        if (line[len] == '\n') {
            line[len] = 0;
            return 0;
        }
        len++;
    }
    return -1;
}

static void echo_until_eof(int fd)
{
    char buf[16384];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return;
        if (n == 0) {
            write_all(fd, "EOF-SEEN\n", 9);
            return;
        }
        if (write_all(fd, buf, (size_t)n) < 0)
            return;
    }
}

static void serve(int c)
{
    char line[64];
    int port;
    if (read_line(c, line, sizeof line) < 0)
        return; /* a readiness probe: connected, sent nothing */
    if (strcmp(line, "ECHO") == 0) {
        echo_until_eof(c);
    } else if (strcmp(line, "CLOSE") == 0) {
        /* close() below, with nothing unread: a FIN, not a reset */
    } else if (strcmp(line, "RESET") == 0) {
        struct linger abort_on_close = { .l_onoff = 1, .l_linger = 0 };
        setsockopt(c, SOL_SOCKET, SO_LINGER, &abort_on_close, sizeof abort_on_close);
    } else if (sscanf(line, "CONNECT %d", &port) == 1) {
        struct sockaddr_in back;
        socklen_t len = sizeof back;
        if (getpeername(c, (struct sockaddr *)&back, &len) < 0)
            return;
        back.sin_port = htons((uint16_t)port);
        int s = socket(AF_INET, SOCK_STREAM, 0);
        if (s < 0 || connect(s, (struct sockaddr *)&back, sizeof back) < 0)
            return;
        if (write_all(s, "hello from peer\n", 16) == 0)
            echo_until_eof(s);
        close(s);
    }
    close(c);
}

static int peer(int port)
{
    signal(SIGCHLD, SIG_IGN); /* children reap themselves */
    signal(SIGPIPE, SIG_IGN);
    int l = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    if (l < 0 || setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0)
        die("peer socket");
    if (bind(l, (struct sockaddr *)&a, sizeof a) < 0 || listen(l, 64) < 0)
        die("peer bind/listen");
    int u = socket(AF_INET, SOCK_DGRAM, 0);
    if (u < 0 || bind(u, (struct sockaddr *)&a, sizeof a) < 0)
        die("peer udp bind");
    if (fork() == 0) {
        char buf[2048];
        for (;;) {
            struct sockaddr_in from;
            socklen_t len = sizeof from;
            ssize_t n = recvfrom(u, buf, sizeof buf, 0, (struct sockaddr *)&from, &len);
            if (n >= 0)
                sendto(u, buf, (size_t)n, 0, (struct sockaddr *)&from, len);
        }
    }
    close(u);
    printf("peer listening on %d\n", port);
    fflush(stdout);
    for (;;) {
        int c = accept(l, NULL, NULL);
        if (c < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            die("peer accept");
        }
        pid_t pid = fork();
        if (pid == 0) {
            close(l);
            alarm(ALARM_S);
            serve(c);
            _exit(0);
        }
        close(c);
    }
}

/* ---- app role ----------------------------------------------------------------------- */

static struct sockaddr_in peer_addr, closed_addr;
static struct in_addr own_ip;

static const char *fmt_addr(const struct sockaddr_in *a)
{
    static char text[4][64];
    static int slot;
    char *t = text[slot++ % 4];
    char ip[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
    snprintf(t, 64, "%s:%u (family %u)", ip, ntohs(a->sin_port), a->sin_family);
    return t;
}

static int same_addr(const struct sockaddr_in *a, struct in_addr ip, int port)
{
    return a->sin_family == AF_INET && a->sin_addr.s_addr == ip.s_addr &&
           (port < 0 ? a->sin_port != 0 : ntohs(a->sin_port) == port);
}

static void check_name(int fd, int peer_side, struct in_addr ip, int port, const char *check)
{
    struct sockaddr_in a;
    memset(&a, 0xa5, sizeof a);
    socklen_t len = sizeof a;
    int rc = peer_side ? getpeername(fd, (struct sockaddr *)&a, &len)
                       : getsockname(fd, (struct sockaddr *)&a, &len);
    char want[INET_ADDRSTRLEN], want_port[16] = "any port";
    inet_ntop(AF_INET, &ip, want, sizeof want);
    if (port >= 0)
        snprintf(want_port, sizeof want_port, "%d", port);
    report(rc == 0 && len == sizeof a && same_addr(&a, ip, port), check,
           "rc %d errno %d len %u got %s, want %s:%s", rc, rc ? errno : 0, len, fmt_addr(&a),
           want, want_port);
}

static int int_option(int fd, int level, int name, int *value)
{
    socklen_t len = sizeof *value;
    *value = -12345;
    int rc = getsockopt(fd, level, name, value, &len);
    if (rc == 0 && len != sizeof *value) {
        errno = EMSGSIZE;
        return -1;
    }
    return rc;
}

/* Sends `total` bytes in chunks of varied size, each echoed back and compared before the
 * next goes, so that no buffer on the way has to hold more than a chunk. */
static void echo_check(int fd, size_t total, uint64_t seed, const char *check)
{
    static char out[8192], in[8192];
    uint64_t state = seed | 1;
    size_t sent = 0;
    while (sent < total) {
        size_t len = 1 + (size_t)(next_random(&state) % sizeof out);
        if (len > total - sent)
            len = total - sent;
        for (size_t i = 0; i < len; i += 8) {
            uint64_t r = next_random(&state);
            memcpy(out + i, &r, len - i < 8 ? len - i : 8);
        }
        if (write_all(fd, out, len) < 0) {
            report(0, check, "write at byte %zu: errno %d (%s)", sent, errno, strerror(errno));
            return;
        }
        ssize_t got = read_exact(fd, in, len);
        if (got != (ssize_t)len || memcmp(in, out, len) != 0) {
            report(0, check, "chunk at byte %zu: read %zd of %zu (errno %d), %s", sent, got,
                   len, errno, got == (ssize_t)len ? "content differs" : "short");
            return;
        }
        sent += len;
    }
    report(1, check, "");
}

/* After our shutdown(SHUT_WR) the peer reads end of stream, says so, and closes. */
static void half_close_check(int fd, const char *check)
{
    char buf[9];
    int rc = shutdown(fd, SHUT_WR);
    ssize_t got = rc == 0 ? read_exact(fd, buf, 9) : -1;
    report(rc == 0 && got == 9 && memcmp(buf, "EOF-SEEN\n", 9) == 0 && expect_eof(fd) == 0,
           check, "shutdown rc %d, read %zd, errno %d (%s)", rc, got, errno, strerror(errno));
}

static int connect_peer(const char *command)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&peer_addr, sizeof peer_addr) < 0)
        die("connect to the peer");
    if (write_all(fd, command, strlen(command)) < 0)
        die("send a command to the peer");
    return fd;
}

static void blocking_client(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0, "socket(AF_INET, SOCK_STREAM)");
    check_name(fd, 0, (struct in_addr){ INADDR_ANY }, 0, "getsockname before bind: 0.0.0.0:0");
    int rc = connect(fd, (struct sockaddr *)&peer_addr, sizeof peer_addr);
    CHECK(rc == 0, "blocking connect to the kernel-side peer");
    check_name(fd, 0, own_ip, -1, "getsockname after connect: own address, a port");
    check_name(fd, 1, peer_addr.sin_addr, ntohs(peer_addr.sin_port),
               "getpeername after connect: the peer");

    int one = 1, v;
    rc = setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    CHECK(rc == 0, "setsockopt TCP_NODELAY");
    rc = int_option(fd, IPPROTO_TCP, TCP_NODELAY, &v);
    report(rc == 0 && v != 0, "getsockopt TCP_NODELAY is on", "rc %d value %d errno %d", rc, v,
           errno);
    rc = int_option(fd, SOL_SOCKET, SO_TYPE, &v);
    report(rc == 0 && v == SOCK_STREAM, "getsockopt SO_TYPE == SOCK_STREAM", "rc %d value %d", rc,
           v);
    rc = int_option(fd, SOL_SOCKET, SO_DOMAIN, &v);
    report(rc == 0 && v == AF_INET, "getsockopt SO_DOMAIN == AF_INET", "rc %d value %d", rc, v);
    rc = int_option(fd, SOL_SOCKET, SO_PROTOCOL, &v);
    report(rc == 0 && v == IPPROTO_TCP, "getsockopt SO_PROTOCOL == IPPROTO_TCP", "rc %d value %d",
           rc, v);
    rc = int_option(fd, SOL_SOCKET, SO_ERROR, &v);
    report(rc == 0 && v == 0, "getsockopt SO_ERROR == 0 when connected", "rc %d value %d", rc, v);

    /* The kernel writes a truncated address and reports the full length. */
    struct sockaddr_in name;
    memset(&name, 0xa5, sizeof name);
    socklen_t short_len = 8;
    rc = getpeername(fd, (struct sockaddr *)&name, &short_len);
    const unsigned char *tail = (const unsigned char *)&name + 8;
    report(rc == 0 && short_len == sizeof name && name.sin_family == AF_INET &&
               name.sin_port == peer_addr.sin_port && tail[0] == 0xa5 && tail[7] == 0xa5,
           "getpeername into 8 bytes: truncated, full length reported", "rc %d len %u", rc,
           short_len);

    /* The peer waits for a command line: nothing to read until the timeout. */
    struct timeval quarter = { 0, 250000 };
    rc = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &quarter, sizeof quarter);
    char byte;
    ssize_t n = rc == 0 ? recv(fd, &byte, 1, 0) : 0;
    report(rc == 0 && n == -1 && errno == EAGAIN,
           "blocking recv with SO_RCVTIMEO and no data: EAGAIN", "rc %d n %zd errno %d (%s)", rc,
           n, errno, strerror(errno));
    struct timeval forever = { 0, 0 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &forever, sizeof forever);

    CHECK(write_all(fd, "ECHO\n", 5) == 0, "send a command line");
    echo_check(fd, 256 * 1024, 0x5eed1, "256 KiB echoed intact (we connected)");
    half_close_check(fd, "shutdown(SHUT_WR): the peer reads EOF, we still read its reply, then EOF");
    CHECK(close(fd) == 0, "close");
}

static void nonblocking_client(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    CHECK(fd >= 0, "socket(SOCK_NONBLOCK)");
    int rc = connect(fd, (struct sockaddr *)&peer_addr, sizeof peer_addr);
    CHECK(rc == -1 && errno == EINPROGRESS, "non-blocking connect: EINPROGRESS");
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = { .events = EPOLLOUT, .data.fd = fd };
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
        die("epoll set-up");
    memset(&ev, 0, sizeof ev);
    int n = epoll_wait(ep, &ev, 1, IO_TIMEOUT_MS);
    report(n == 1 && (ev.events & EPOLLOUT) && !(ev.events & (EPOLLERR | EPOLLHUP)),
           "epoll: EPOLLOUT (and no error) when the connect completes", "n %d events %#x", n,
           ev.events);
    int v;
    rc = int_option(fd, SOL_SOCKET, SO_ERROR, &v);
    report(rc == 0 && v == 0, "SO_ERROR == 0 after a completed non-blocking connect",
           "rc %d value %d", rc, v);
    int fl = fcntl(fd, F_GETFL);
    report(fl >= 0 && (fl & O_NONBLOCK), "O_NONBLOCK from SOCK_NONBLOCK", "flags %#x", fl);
    check_name(fd, 1, peer_addr.sin_addr, ntohs(peer_addr.sin_port),
               "getpeername after a non-blocking connect");
    CHECK(write_all(fd, "ECHO\n", 5) == 0, "send a command line (non-blocking)");
    echo_check(fd, 64 * 1024, 0x5eed2, "64 KiB echoed intact on a non-blocking socket");
    half_close_check(fd, "shutdown(SHUT_WR) on a non-blocking socket");
    close(fd);
    close(ep);
}

static void refused(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int rc = connect(fd, (struct sockaddr *)&closed_addr, sizeof closed_addr);
    CHECK(rc == -1 && errno == ECONNREFUSED, "blocking connect to a closed port: ECONNREFUSED");
    close(fd);

    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    rc = connect(fd, (struct sockaddr *)&closed_addr, sizeof closed_addr);
    CHECK(rc == -1 && errno == EINPROGRESS, "non-blocking connect to a closed port: EINPROGRESS");
    int ep = epoll_create1(0);
    struct epoll_event ev = { .events = EPOLLOUT, .data.fd = fd };
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
        die("epoll set-up");
    memset(&ev, 0, sizeof ev);
    int n = epoll_wait(ep, &ev, 1, IO_TIMEOUT_MS);
    report(n == 1, "epoll wakes up when the connect is refused", "n %d events %#x", n, ev.events);
    int v;
    rc = int_option(fd, SOL_SOCKET, SO_ERROR, &v);
    report(rc == 0 && v == ECONNREFUSED, "SO_ERROR == ECONNREFUSED", "rc %d value %d", rc, v);
    rc = int_option(fd, SOL_SOCKET, SO_ERROR, &v);
    report(rc == 0 && v == 0, "SO_ERROR reads 0 once reported", "rc %d value %d", rc, v);
    close(fd);
    close(ep);
}

static void listener(int port)
{
    int one = 1, v;
    int l = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(l >= 0 && setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0,
          "listener socket with SO_REUSEADDR");
    struct sockaddr_in any = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    CHECK(bind(l, (struct sockaddr *)&any, sizeof any) == 0, "bind 0.0.0.0:PORT");
    CHECK(listen(l, 16) == 0, "listen");
    check_name(l, 0, (struct in_addr){ INADDR_ANY }, port, "getsockname of the listener");
    int rc = int_option(l, SOL_SOCKET, SO_ACCEPTCONN, &v);
    report(rc == 0 && v == 1, "SO_ACCEPTCONN == 1", "rc %d value %d", rc, v);
    CHECK(fcntl(l, F_SETFL, fcntl(l, F_GETFL) | O_NONBLOCK) == 0, "listener made non-blocking");
    rc = accept(l, NULL, NULL);
    CHECK(rc == -1 && errno == EAGAIN, "accept with no client: EAGAIN");

    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = { .events = EPOLLIN, .data.fd = l };
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, l, &ev) < 0)
        die("epoll set-up");
    int n = epoll_wait(ep, &ev, 1, 0);
    report(n == 0, "epoll: listener not readable before a client", "n %d events %#x", n,
           ev.events);

    char command[32];
    snprintf(command, sizeof command, "CONNECT %d\n", port);
    int ctl = connect_peer(command);
    memset(&ev, 0, sizeof ev);
    n = epoll_wait(ep, &ev, 1, IO_TIMEOUT_MS);
    report(n == 1 && (ev.events & EPOLLIN), "epoll: EPOLLIN when the kernel-side client connects",
           "n %d events %#x", n, ev.events);

    struct sockaddr_in from;
    memset(&from, 0xa5, sizeof from);
    socklen_t flen = sizeof from;
    int a = accept4(l, (struct sockaddr *)&from, &flen, SOCK_NONBLOCK | SOCK_CLOEXEC);
    CHECK(a >= 0, "accept4(SOCK_NONBLOCK | SOCK_CLOEXEC)");
    report(flen == sizeof from && same_addr(&from, peer_addr.sin_addr, -1),
           "accept4 reports the client's address", "len %u got %s", flen, fmt_addr(&from));
    int fl = fcntl(a, F_GETFL), fd_flags = fcntl(a, F_GETFD);
    report(fl >= 0 && (fl & O_NONBLOCK), "accepted socket has O_NONBLOCK", "flags %#x", fl);
    report(fd_flags >= 0 && (fd_flags & FD_CLOEXEC), "accepted socket has FD_CLOEXEC",
           "fd flags %#x", fd_flags);
    check_name(a, 0, own_ip, port, "getsockname of the accepted socket: own address, PORT");
    check_name(a, 1, from.sin_addr, ntohs(from.sin_port),
               "getpeername of the accepted socket == accept's address");
    char hello[16];
    ssize_t got = read_exact(a, hello, 16);
    report(got == 16 && memcmp(hello, "hello from peer\n", 16) == 0,
           "the client's first bytes arrive", "read %zd errno %d", got, errno);
    echo_check(a, 256 * 1024, 0x5eed3, "256 KiB echoed intact (we accepted)");
    half_close_check(a, "shutdown(SHUT_WR) on an accepted socket");
    close(a);
    close(ctl);

    /* Plain accept on a blocking listener: the new socket inherits neither flag. */
    CHECK(fcntl(l, F_SETFL, fcntl(l, F_GETFL) & ~O_NONBLOCK) == 0, "listener made blocking");
    ctl = connect_peer(command);
    a = accept(l, NULL, NULL);
    CHECK(a >= 0, "blocking accept");
    fl = fcntl(a, F_GETFL);
    fd_flags = fcntl(a, F_GETFD);
    report(fl >= 0 && !(fl & O_NONBLOCK) && fd_flags == 0,
           "accept(): no O_NONBLOCK, no FD_CLOEXEC", "flags %#x fd flags %#x", fl, fd_flags);
    got = read_exact(a, hello, 16);
    report(got == 16 && memcmp(hello, "hello from peer\n", 16) == 0,
           "first bytes on a blocking accepted socket", "read %zd errno %d", got, errno);
    close(a);
    close(ctl);
    close(l);
    close(ep);
}

static void on_sigpipe(int sig)
{
    (void)sig;
    sigpipes++;
}

/* Writes until the stack reports the peer gone; returns the failing call's errno. */
static int write_into_closed(int fd, int use_send)
{
    char buf[1024];
    memset(buf, 'x', sizeof buf);
    for (int i = 0; i < 500; i++) {
        ssize_t n = use_send ? send(fd, buf, sizeof buf, MSG_NOSIGNAL) : write(fd, buf, sizeof buf);
        if (n < 0 && errno != EINTR)
            return errno;
        usleep(10000);
    }
    return 0;
}

static void closed_peer(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigpipe;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGPIPE, &sa, NULL) < 0)
        die("sigaction");

    int fd = connect_peer("CLOSE\n");
    CHECK(expect_eof(fd) == 0, "the peer's close reads as end of stream");
    int err = write_into_closed(fd, 1);
    report(err == EPIPE, "send(MSG_NOSIGNAL) after the peer closed: EPIPE", "errno %d (%s)", err,
           strerror(err));
    report(sigpipes == 0, "no SIGPIPE with MSG_NOSIGNAL", "%d SIGPIPEs", (int)sigpipes);
    close(fd);

    fd = connect_peer("CLOSE\n");
    CHECK(expect_eof(fd) == 0, "the peer's close reads as end of stream (2)");
    err = write_into_closed(fd, 0);
    report(err == EPIPE, "write() after the peer closed: EPIPE", "errno %d (%s)", err,
           strerror(err));
    report(sigpipes >= 1, "write() after the peer closed raises SIGPIPE", "%d SIGPIPEs",
           (int)sigpipes);
    close(fd);
    signal(SIGPIPE, SIG_DFL);
}

static void reset_by_peer(void)
{
    int fd = connect_peer("RESET\n");
    char byte;
    ssize_t n = -1;
    if (wait_fd(fd, POLLIN) == 0)
        n = read(fd, &byte, 1);
    int e = errno;
    report(n == -1 && e == ECONNRESET, "read after the peer's reset: ECONNRESET",
           "read returned %zd%s%s", n, n < 0 ? ", errno " : " (end of stream)",
           n < 0 ? strerror(e) : "");
    close(fd);
}

/* Sends `len` bytes and waits for their echo, three tries of a second each. */
static int udp_round_trip(int fd, const char *out, size_t len, struct sockaddr_in *from)
{
    char in[2048];
    for (int attempt = 0; attempt < 3; attempt++) {
        if (send(fd, out, len, 0) != (ssize_t)len)
            return -1;
        struct pollfd p = { .fd = fd, .events = POLLIN };
        if (poll(&p, 1, 1000) != 1)
            continue;
        socklen_t flen = sizeof *from;
        ssize_t n = recvfrom(fd, in, sizeof in, 0, (struct sockaddr *)from, &flen);
        return n == (ssize_t)len && memcmp(in, out, len) == 0 ? 0 : -1;
    }
    errno = ETIMEDOUT;
    return -1;
}

static void connected_udp(void)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    CHECK(fd >= 0, "socket(AF_INET, SOCK_DGRAM)");
    int rc = connect(fd, (struct sockaddr *)&peer_addr, sizeof peer_addr);
    CHECK(rc == 0, "connect a UDP socket");
    check_name(fd, 0, own_ip, -1, "UDP getsockname after connect: own address, a port");
    check_name(fd, 1, peer_addr.sin_addr, ntohs(peer_addr.sin_port), "UDP getpeername");
    int v;
    rc = int_option(fd, SOL_SOCKET, SO_TYPE, &v);
    report(rc == 0 && v == SOCK_DGRAM, "getsockopt SO_TYPE == SOCK_DGRAM", "rc %d value %d", rc,
           v);
    static char out[1400];
    uint64_t state = 0x5eed4;
    int good = 1;
    struct sockaddr_in from;
    static const size_t sizes[] = { 1, 10, 100, 548, 1000, 1400 };
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0] && good; k++) {
        size_t len = sizes[k];
        for (size_t i = 0; i < len; i++)
            out[i] = (char)next_random(&state);
        memset(&from, 0, sizeof from);
        good = udp_round_trip(fd, out, len, &from) == 0 &&
               same_addr(&from, peer_addr.sin_addr, ntohs(peer_addr.sin_port));
        if (!good)
            report(0, "connected UDP echo", "datagram of %zu bytes: errno %d, from %s", len,
                   errno, fmt_addr(&from));
    }
    if (good)
        report(1, "connected UDP: datagrams of 1..1400 bytes echoed whole, from the peer", "");
    close(fd);
}

static void bad_arguments(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    /* volatile: the compiler must not see, and warn about, the bad pointer */
    struct sockaddr *volatile bad = (struct sockaddr *)8;
    int rc = connect(fd, bad, sizeof(struct sockaddr_in));
    CHECK(rc == -1 && errno == EFAULT, "connect with a bad address pointer: EFAULT");
    close(fd);

    fd = socket(AF_INET, SOCK_STREAM, 0);
    close(fd);
    rc = connect(fd, (struct sockaddr *)&peer_addr, sizeof peer_addr);
    CHECK(rc == -1 && errno == EBADF, "connect on a closed descriptor: EBADF");

    fd = open("/dev/null", O_RDWR);
    rc = connect(fd, (struct sockaddr *)&peer_addr, sizeof peer_addr);
    CHECK(rc == -1 && errno == ENOTSOCK, "connect on /dev/null: ENOTSOCK");
    close(fd);
}

static void unix_pairs(void)
{
    int sv[2], v;
    char buf[8];
    int rc = socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    CHECK(rc == 0, "socketpair(AF_UNIX, SOCK_STREAM)");
    report(write(sv[0], "ping", 4) == 4 && read_exact(sv[1], buf, 4) == 4 &&
               memcmp(buf, "ping", 4) == 0 && write(sv[1], "pong", 4) == 4 &&
               read_exact(sv[0], buf, 4) == 4 && memcmp(buf, "pong", 4) == 0,
           "AF_UNIX stream pair carries bytes both ways", "errno %d", errno);
    rc = int_option(sv[0], SOL_SOCKET, SO_DOMAIN, &v);
    report(rc == 0 && v == AF_UNIX, "AF_UNIX pair: SO_DOMAIN == AF_UNIX", "rc %d value %d", rc, v);
    close(sv[0]);
    close(sv[1]);

    rc = socketpair(AF_UNIX, SOCK_DGRAM, 0, sv);
    CHECK(rc == 0, "socketpair(AF_UNIX, SOCK_DGRAM)");
    report(send(sv[0], "abc", 3, 0) == 3 && send(sv[0], "de", 2, 0) == 2 &&
               recv(sv[1], buf, sizeof buf, 0) == 3 && recv(sv[1], buf, sizeof buf, 0) == 2,
           "AF_UNIX datagram pair keeps boundaries", "errno %d", errno);
    close(sv[0]);
    close(sv[1]);
}

static int parse_ip(const char *text, struct in_addr *ip)
{
    return inet_pton(AF_INET, text, ip) == 1 ? 0 : -1;
}

static int app(char **argv)
{
    alarm(ALARM_S);
    peer_addr.sin_family = closed_addr.sin_family = AF_INET;
    if (parse_ip(argv[0], &peer_addr.sin_addr) < 0 || parse_ip(argv[4], &own_ip) < 0) {
        fprintf(stderr, "bad address\n");
        return 2;
    }
    closed_addr.sin_addr = peer_addr.sin_addr;
    peer_addr.sin_port = htons((uint16_t)atoi(argv[1]));
    closed_addr.sin_port = htons((uint16_t)atoi(argv[2]));

    blocking_client();
    nonblocking_client();
    refused();
    listener(atoi(argv[3]));
    closed_peer();
    reset_by_peer();
    connected_udp();
    bad_arguments();
    unix_pairs();

    printf("%s: %d failed\n", failures ? "FAILED" : "PASSED", failures);
    return failures ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "peer") == 0)
        return peer(atoi(argv[2]));
    if (argc == 7 && strcmp(argv[1], "app") == 0)
        return app(argv + 2);
    fprintf(stderr,
            "usage: %s peer PORT\n"
            "       %s app PEER_IP PEER_PORT CLOSED_PORT LISTEN_PORT OWN_IP\n",
            argv[0], argv[0]);
    return 2;
}
