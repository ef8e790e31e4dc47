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

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

struct late { int fd; long millis; };
static void *send_late(void *arg) {
    struct late *late = arg;
    usleep(late->millis * 1000);
    if (send(late->fd, "late", 4, 0) != 4) perror("send");
    return NULL;
}

static int rings(void) {
    FILE *maps = fopen("/proc/self/maps", "r");
    char line[512];
    int count = 0;
    while (maps && fgets(line, sizeof line, maps)) count += strstr(line, "joyride-ring") != NULL;
    if (maps) fclose(maps);
    return count;
}

int main(int argc, char **argv) {
    if (argc != 3) return 2;
    int listener = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in any = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
    if (bind(listener, (struct sockaddr *)&any, sizeof any) || listen(listener, 4)) return 1;
    int client = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in to = any;
    inet_pton(AF_INET, argv[1], &to.sin_addr);
    if (connect(client, (struct sockaddr *)&to, sizeof to)) { perror("connect"); return 1; }
    int server = accept(listener, NULL, NULL);
    if (server < 0) { perror("accept"); return 1; }
    /* Some bytes each way first, so that both directions are on their rings by now. */
    char buf[16];
    for (int i = 0; i < 3; i++) {
        if (send(client, "ab", 2, 0) != 2 || recv(server, buf, 2, MSG_WAITALL) != 2) return 1;
        if (send(server, "cd", 2, 0) != 2 || recv(client, buf, 2, MSG_WAITALL) != 2) return 1;
    }

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
