/*
 * fork_server: a TCP server of the two classic shapes, for tests that run it under joyride.
 *
 *   fork_server fork PORT      accept loop; one forked child per connection
 *   fork_server thread PORT    accept loop; one detached thread per connection
 *
 * Protocol: the client sends "SEED LEN\n" (decimal); the server answers with LEN bytes of
 * the xorshift64 stream seeded with SEED (each state's 8 bytes little-endian, the last
 * word cut short), then closes. Once listening it prints "ready pid=PID" so that a test can
 * signal it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* A reply no bigger than this; a client that sends nothing is dropped after ALARM_S. */
#define MAX_LEN (64u << 20)
#define ALARM_S 60

static int write_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static void serve(int c)
{
    char line[64];
    size_t len = 0;
    while (len + 1 < sizeof line) {
        ssize_t n = read(c, line + len, 1);
        if (n <= 0)
            goto out;
        if (line[len] == '\n')
            break;
        len++;
    }
    line[len] = 0;
    unsigned long long seed, want;
    if (sscanf(line, "%llu %llu", &seed, &want) != 2 || want > MAX_LEN)
        goto out;
    uint64_t state = seed | 1;
    char buf[65536];
    size_t sent = 0;
    while (sent < want) {
        size_t chunk = want - sent < sizeof buf ? want - sent : sizeof buf;
        for (size_t i = 0; i < chunk; i += 8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            memcpy(buf + i, &state, chunk - i < 8 ? chunk - i : 8);
        }
        if (write_all(c, buf, chunk) < 0)
            goto out;
        sent += chunk;
    }
out:
    close(c);
}

static void *serve_thread(void *arg)
{
    serve((int)(intptr_t)arg);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 3 || (strcmp(argv[1], "fork") != 0 && strcmp(argv[1], "thread") != 0)) {
        fprintf(stderr, "usage: %s fork|thread PORT\n", argv[0]);
        return 2;
    }
    int forking = strcmp(argv[1], "fork") == 0;
    signal(SIGPIPE, SIG_IGN);
    signal(SIGCHLD, SIG_IGN); /* forked children reap themselves */

    int l = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2])) };
    if (l < 0 || setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(l, (struct sockaddr *)&a, sizeof a) < 0 || listen(l, 64) < 0) {
        perror("listen");
        return 1;
    }
    printf("ready pid=%d\n", (int)getpid());
    fflush(stdout);

    for (;;) {
        int c = accept(l, NULL, NULL);
        if (c < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            perror("accept");
            return 1;
        }
        if (forking) {
            pid_t pid = fork();
            if (pid < 0) {
                perror("fork");
                return 1;
            }
            if (pid == 0) {
                close(l);
                alarm(ALARM_S);
                serve(c);
                _exit(0);
            }
            close(c);
        } else {
            pthread_t t;
            if (pthread_create(&t, NULL, serve_thread, (void *)(intptr_t)c) != 0) {
                perror("pthread_create");
                return 1;
            }
            pthread_detach(t);
        }
    }
}
