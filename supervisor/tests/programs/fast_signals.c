/* Signals and timeouts on a connected socket pair made through joyride's local path: a blocking
 * recv interrupted by a handler installed without SA_RESTART fails with EINTR; with SA_RESTART
 * it carries on and returns the data sent later; SO_RCVTIMEO ends a blocking recv with EAGAIN.
 * Prints one line per case and the number of joyride ring mappings of the process, so the same
 * program checks the fast path (library preloaded) and the trap path alike.
 * Usage: fast_signals ADDR PORT */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "local_pair.h"

static volatile sig_atomic_t handled;
static void on_alarm(int sig) { (void)sig; handled++; }

static void arm(int restart, long millis) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_alarm;
    action.sa_flags = restart ? SA_RESTART : 0;
    sigaction(SIGALRM, &action, NULL);
    struct itimerval timer = {.it_value = {.tv_sec = millis / 1000, .tv_usec = (millis % 1000) * 1000}};
    setitimer(ITIMER_REAL, &timer, NULL);
}

struct late { int fd; long millis; };
static void *send_late(void *arg) {
    struct late *late = arg;
    usleep(late->millis * 1000);
    if (send(late->fd, "late", 4, 0) != 4) perror("send");
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 3) return 2;
    int client, server;
    if (local_pair(argv[1], argv[2], &client, &server)) return 1;
    char buf[16];

    arm(0, 200);
    double start = now_ms();
    ssize_t got = recv(server, buf, sizeof buf, 0);
    int error = errno;
    printf("no-restart: result=%zd errno=%s handled=%d waited=%s\n", got,
           got < 0 ? strerrorname_np(error) : "-", (int)handled, now_ms() - start >= 150 ? "yes" : "no");

    handled = 0;
    arm(1, 100);
    struct late late = {.fd = client, .millis = 300};
    pthread_t thread;
    pthread_create(&thread, NULL, send_late, &late);
    got = recv(server, buf, sizeof buf, 0);
    pthread_join(thread, NULL);
    printf("restart: result=%zd data=%.*s handled=%d\n", got, got > 0 ? (int)got : 0, buf, (int)handled);

    struct timeval timeout = {.tv_sec = 0, .tv_usec = 200000};
    setsockopt(server, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    start = now_ms();
    got = recv(server, buf, sizeof buf, 0);
    error = errno;
    printf("rcvtimeo: result=%zd errno=%s waited=%s\n", got, got < 0 ? strerrorname_np(error) : "-",
           now_ms() - start >= 150 ? "yes" : "no");
    printf("rings=%d\n", rings());
    return 0;
}
