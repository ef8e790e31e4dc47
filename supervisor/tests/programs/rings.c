/* The fast-path library's ring hand-out, as a program sees it (supervisor/tests/local_path.rs).
 *
 *   rings PORT CAPACITY
 *
 * Listens on 0.0.0.0:PORT, connects to 10.77.0.2:PORT (a local connection) and accepts it, then
 * asks both sides for their rings with getsockopt(SOL_JOYRIDE, JOYRIDE_RINGS) and checks: two
 * close-on-exec descriptors each, of 4096 + CAPACITY bytes, that map shared; one side's rx ring
 * is the other's tx ring; asking again gives the same rings; the errors (ENOPROTOOPT on joyride
 * sockets that are not local connections, EINVAL for a short length, EFAULT for a bad buffer).
 * Prints "ok" and exits 0, or names the first failed check and exits 1. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define SOL_JOYRIDE 0x4a52
#define JOYRIDE_RINGS 1

struct joyride_rings {
    int32_t rx_fd;
    int32_t tx_fd;
};

static void fail(const char *what) {
    printf("FAILED: %s (errno %d: %s)\n", what, errno, strerror(errno));
    exit(1);
}

static void check(int ok, const char *what) {
    if (!ok) fail(what);
}

static int expect_errno(int fd, void *value, socklen_t len, int want, const char *what) {
    errno = 0;
    int rc = getsockopt(fd, SOL_JOYRIDE, JOYRIDE_RINGS, value, &len);
    if (rc != -1 || errno != want) {
        printf("FAILED: %s: rc %d errno %d (%s), want %s\n", what, rc, errno, strerror(errno),
               strerror(want));
        exit(1);
    }
    return 0;
}

static struct stat stat_of(int fd, const char *what) {
    struct stat st;
    if (fstat(fd, &st) != 0) fail(what);
    return st;
}

static struct joyride_rings rings_of(int fd, long capacity, const char *side) {
    struct joyride_rings rings = {-1, -1};
    socklen_t len = 64; /* more room than needed: the answer says 8 */
    char what[128];
    snprintf(what, sizeof what, "getsockopt JOYRIDE_RINGS on the %s side", side);
    if (getsockopt(fd, SOL_JOYRIDE, JOYRIDE_RINGS, &rings, &len) != 0) fail(what);
    check(len == sizeof rings, "optlen is 8 after JOYRIDE_RINGS");
    check(rings.rx_fd >= 0 && rings.tx_fd >= 0 && rings.rx_fd != rings.tx_fd,
          "two distinct descriptors");
    int fds[2] = {rings.rx_fd, rings.tx_fd};
    for (int i = 0; i < 2; i++) {
        int flags = fcntl(fds[i], F_GETFD);
        check(flags >= 0 && (flags & FD_CLOEXEC), "ring descriptors are close-on-exec");
        struct stat st = stat_of(fds[i], "fstat a ring");
        check(st.st_size == 4096 + capacity, "ring size is 4096 + capacity");
        void *map = mmap(NULL, st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fds[i], 0);
        check(map != MAP_FAILED, "a ring maps shared, read-write");
        munmap(map, st.st_size);
    }
    return rings;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: rings PORT CAPACITY\n");
        return 2;
    }
    int port = atoi(argv[1]);
    long capacity = atol(argv[2]);

    int listener = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in any = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (bind(listener, (struct sockaddr *)&any, sizeof any) != 0) fail("bind");
    if (listen(listener, 4) != 0) fail("listen");

    int idle = socket(AF_INET, SOCK_STREAM, 0);
    int udp = socket(AF_INET, SOCK_DGRAM, 0);
    struct joyride_rings rings;
    expect_errno(idle, &rings, sizeof rings, ENOPROTOOPT, "an unconnected TCP socket");
    expect_errno(listener, &rings, sizeof rings, ENOPROTOOPT, "a listening socket");
    expect_errno(udp, &rings, sizeof rings, ENOPROTOOPT, "a UDP socket");

    int client = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "10.77.0.2", &to.sin_addr);
    if (connect(client, (struct sockaddr *)&to, sizeof to) != 0) fail("connect to 10.77.0.2");
    int server = accept(listener, NULL, NULL);
    if (server < 0) fail("accept");

    expect_errno(client, &rings, 4, EINVAL, "optlen 4");
    expect_errno(client, (void *)8, sizeof rings, EFAULT, "a bad optval pointer");

    struct joyride_rings c = rings_of(client, capacity, "connecting");
    struct joyride_rings s = rings_of(server, capacity, "accepting");
    ino_t c_rx = stat_of(c.rx_fd, "fstat").st_ino, c_tx = stat_of(c.tx_fd, "fstat").st_ino;
    ino_t s_rx = stat_of(s.rx_fd, "fstat").st_ino, s_tx = stat_of(s.tx_fd, "fstat").st_ino;
    check(c_rx != c_tx, "one ring per direction");
    check(c_rx == s_tx && c_tx == s_rx, "one side's rx ring is the other's tx ring");
    struct joyride_rings again = rings_of(client, capacity, "connecting (again)");
    check(stat_of(again.rx_fd, "fstat").st_ino == c_rx &&
              stat_of(again.tx_fd, "fstat").st_ino == c_tx,
          "asking again gives the same rings");

    /* The connection itself still carries bytes both ways. */
    char buf[16] = {0};
    check(write(client, "ping", 4) == 4, "write on the connecting side");
    check(read(server, buf, sizeof buf) == 4 && memcmp(buf, "ping", 4) == 0, "read ping");
    check(write(server, "pong", 4) == 4, "write on the accepting side");
    check(read(client, buf, sizeof buf) == 4 && memcmp(buf, "pong", 4) == 0, "read pong");
    close(client);
    check(read(server, buf, sizeof buf) == 0, "end-of-stream after the peer closes");
    puts("ok");
    return 0;
}
