/*
 * supervisor_death: what a program under joyride sees when its supervisor dies.
 *
 *   supervisor_death PORT REPORT
 *
 * Listens on 0.0.0.0:PORT, writes "ready pid=PID" to the file REPORT, then blocks in
 * accept. A SIGALRM every 200 ms (no SA_RESTART) interrupts an accept that the supervisor
 * holds; after each interruption the program makes a fresh intercepted call (socket). Once
 * the supervisor is gone, the kernel answers such calls with ENOSYS: the program appends
 * "result ENOSYS" and exits 0. Any other outcome — another errno, an accepted connection,
 * or nothing within 20 s — is appended as "result ..." with exit status 1. Every call's
 * outcome is appended as it happens, for the test's failure message.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define DEADLINE_S 20

static int report_fd = -1;

static void note(const char *fmt, ...)
{
    char line[160];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n > sizeof line - 2)
        n = sizeof line - 2;
    line[n++] = '\n';
    /* a regular file: never intercepted, so it works with or without a supervisor */
    if (write(report_fd, line, (size_t)n) < 0)
        _exit(4);
}

static void on_alarm(int sig)
{
    (void)sig;
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s PORT REPORT\n", argv[0]);
        return 2;
    }
    report_fd = open(argv[2], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (report_fd < 0) {
        perror(argv[2]);
        return 2;
    }

    int l = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1])) };
    if (l < 0 || setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(l, (struct sockaddr *)&a, sizeof a) < 0 || listen(l, 8) < 0) {
        note("result setup failed: errno %d (%s)", errno, strerror(errno));
        return 1;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm; /* no SA_RESTART: an interrupted call returns EINTR */
    sigemptyset(&sa.sa_mask);
    struct itimerval every = { { 0, 200000 }, { 0, 200000 } };
    if (sigaction(SIGALRM, &sa, NULL) < 0 || setitimer(ITIMER_REAL, &every, NULL) < 0) {
        note("result setup failed: errno %d (%s)", errno, strerror(errno));
        return 1;
    }
    note("ready pid=%d", (int)getpid());

    double deadline = now() + DEADLINE_S;
    while (now() < deadline) {
        int c = accept(l, NULL, NULL);
        if (c >= 0) {
            note("result accept returned a connection");
            return 1;
        }
        int e = errno;
        note("accept: errno %d (%s)", e, strerror(e));
        if (e == ENOSYS) {
            note("result ENOSYS");
            return 0;
        }
        if (e != EINTR) {
            note("result accept failed with errno %d (%s)", e, strerror(e));
            return 1;
        }
        int s = socket(AF_INET, SOCK_STREAM, 0);
        if (s >= 0) {
            close(s); /* the supervisor still answers */
            continue;
        }
        e = errno;
        note("socket: errno %d (%s)", e, strerror(e));
        if (e == ENOSYS) {
            note("result ENOSYS");
            return 0;
        }
        if (e != EINTR) {
            note("result socket failed with errno %d (%s)", e, strerror(e));
            return 1;
        }
    }
    note("result no error within %d s", DEADLINE_S);
    return 1;
}
