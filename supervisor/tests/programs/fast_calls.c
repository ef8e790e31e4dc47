/* The less common calls on a connected socket pair made through joyride's local path:
 * sendmmsg and recvmmsg (MSG_WAITFORONE, message lengths, content), ppoll and pselect (nothing
 * ready until the timeout, then ready once bytes wait; the signal mask passed on), and EOF
 * through recvmmsg. Prints one line per case and the number of joyride ring mappings of the
 * process, so the same program checks the fast path (library preloaded) and the trap path.
 * Usage: fast_calls ADDR PORT */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "local_pair.h"

static int ppoll_in(int fd, long millis) {
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    struct timespec timeout = {.tv_sec = millis / 1000, .tv_nsec = (millis % 1000) * 1000000};
    sigset_t mask;
    sigemptyset(&mask);
    int ready = ppoll(&pfd, 1, &timeout, &mask);
    /* glibc's ppoll leaves the caller's timeout alone. */
    if (timeout.tv_sec != millis / 1000 || timeout.tv_nsec != (millis % 1000) * 1000000) return -99;
    return ready == 1 ? (pfd.revents & POLLIN ? 1 : -98) : ready;
}

static int pselect_in(int fd, long millis) {
    fd_set readable;
    FD_ZERO(&readable);
    FD_SET(fd, &readable);
    struct timespec timeout = {.tv_sec = millis / 1000, .tv_nsec = (millis % 1000) * 1000000};
    sigset_t mask;
    sigemptyset(&mask);
    int ready = pselect(fd + 1, &readable, NULL, NULL, &timeout, &mask);
    return ready == 1 ? (FD_ISSET(fd, &readable) ? 1 : -98) : ready;
}

int main(int argc, char **argv) {
    if (argc != 3) return 2;
    int client, server;
    if (local_pair(argv[1], argv[2], &client, &server)) return 1;

    double start = now_ms();
    int ready = ppoll_in(server, 100);
    printf("ppoll idle: ready=%d waited=%s\n", ready, now_ms() - start >= 90 ? "yes" : "no");
    start = now_ms();
    ready = pselect_in(server, 100);
    printf("pselect idle: ready=%d waited=%s\n", ready, now_ms() - start >= 90 ? "yes" : "no");

    /* Three messages of two pieces each. */
    char *pieces[6] = {"alpha-", "one|", "beta-", "two|", "gamma-", "three|"};
    struct iovec out_iov[6];
    struct mmsghdr out[3];
    memset(out, 0, sizeof out);
    for (int i = 0; i < 6; i++) out_iov[i] = (struct iovec){pieces[i], strlen(pieces[i])};
    for (int i = 0; i < 3; i++) {
        out[i].msg_hdr.msg_iov = &out_iov[2 * i];
        out[i].msg_hdr.msg_iovlen = 2;
    }
    int sent = sendmmsg(client, out, 3, 0);
    printf("sendmmsg: result=%d lengths=%u,%u,%u\n", sent, out[0].msg_len, out[1].msg_len,
           out[2].msg_len);

    printf("ppoll data: ready=%d\n", ppoll_in(server, 5000));
    printf("pselect data: ready=%d\n", pselect_in(server, 5000));

    /* Receive in 8-byte messages until the 31 bytes are in, the first one waiting. */
    char in_bufs[8][8];
    struct iovec in_iov[8];
    struct mmsghdr in[8];
    char got[64];
    size_t total = 0;
    int calls = 0;
    while (total < 31 && calls < 100) {
        memset(in, 0, sizeof in);
        for (int i = 0; i < 8; i++) {
            in_iov[i] = (struct iovec){in_bufs[i], sizeof in_bufs[i]};
            in[i].msg_hdr.msg_iov = &in_iov[i];
            in[i].msg_hdr.msg_iovlen = 1;
        }
        int n = recvmmsg(server, in, 8, MSG_WAITFORONE, NULL);
        calls++;
        if (n <= 0) { printf("recvmmsg: result=%d errno=%s\n", n, strerrorname_np(errno)); return 1; }
        for (int i = 0; i < n && total + in[i].msg_len <= sizeof got; i++) {
            memcpy(got + total, in_bufs[i], in[i].msg_len);
            total += in[i].msg_len;
        }
    }
    printf("recvmmsg: bytes=%zu data=%.*s\n", total, (int)total, got);

    /* Nothing waits: a non-blocking recvmmsg fails with EAGAIN; after the peer's close every
     * message is an empty one (end of stream), as the kernel fills them. */
    int n = recvmmsg(server, in, 8, MSG_DONTWAIT, NULL);
    printf("recvmmsg empty: result=%d errno=%s\n", n, n < 0 ? strerrorname_np(errno) : "-");
    printf("rings=%d\n", rings());
    close(client);
    n = recvmmsg(server, in, 8, 0, NULL);
    unsigned lengths = 0;
    for (int i = 0; i < n; i++) lengths += in[i].msg_len;
    printf("recvmmsg eof: result=%d bytes=%u\n", n, lengths);
    return 0;
}
