/* The cost of a socket call that joyride intercepts but needs no stackd round trip:
 * getsockname on a connected TCP socket, timed over many calls after a warm-up.
 * Usage: name_cost ADDR PORT CALLS — listens on 0.0.0.0:PORT, connects to ADDR:PORT, accepts,
 * then prints "getsockname_ns=N" (mean per call). Built and run by scripts/bench-inprocess.sh. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s ADDR PORT CALLS\n", argv[0]);
        return 2;
    }
    int port = atoi(argv[2]);
    long calls = atol(argv[3]);
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in any = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (bind(listener, (struct sockaddr *)&any, sizeof any) || listen(listener, 4)) {
        perror("bind/listen");
        return 1;
    }
    int client = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, argv[1], &to.sin_addr);
    if (connect(client, (struct sockaddr *)&to, sizeof to)) {
        perror("connect");
        return 1;
    }
    int server = accept(listener, NULL, NULL);
    if (server < 0) {
        perror("accept");
        return 1;
    }
    struct sockaddr_in name;
    socklen_t len;
    for (int i = 0; i < 1000; i++) {
        len = sizeof name;
        getsockname(client, (struct sockaddr *)&name, &len);
    }
    double start = now_ns();
    for (long i = 0; i < calls; i++) {
        len = sizeof name;
        if (getsockname(client, (struct sockaddr *)&name, &len)) {
            perror("getsockname");
            return 1;
        }
    }
    double spent = now_ns() - start;
    printf("getsockname_ns=%.1f port=%d\n", spent / calls, ntohs(name.sin_port));
    close(server);
    close(client);
    close(listener);
    return 0;
}
