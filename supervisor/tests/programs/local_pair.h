/* What the fast-path C test programs share: a connected socket pair made through joyride's
 * local path inside one process, the clock, and the count of joyride ring mappings (which
 * tells the fast path, library preloaded, from the trap path). */
#ifndef JOYRIDE_LOCAL_PAIR_H
#define JOYRIDE_LOCAL_PAIR_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int rings(void) {
    FILE *maps = fopen("/proc/self/maps", "r");
    char line[512];
    int count = 0;
    while (maps && fgets(line, sizeof line, maps)) count += strstr(line, "joyride-ring") != NULL;
    if (maps) fclose(maps);
    return count;
}

/* Listens on PORT, connects to ADDR:PORT and accepts, then moves a few bytes each way so that
 * both directions are on their rings. Returns 0, or 1 after printing what failed. */
static int local_pair(const char *addr, const char *port, int *client, int *server) {
    int listener = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in any = {.sin_family = AF_INET, .sin_port = htons(atoi(port))};
    if (bind(listener, (struct sockaddr *)&any, sizeof any) || listen(listener, 4)) {
        perror("listen");
        return 1;
    }
    *client = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in to = any;
    inet_pton(AF_INET, addr, &to.sin_addr);
    if (connect(*client, (struct sockaddr *)&to, sizeof to)) { perror("connect"); return 1; }
    *server = accept(listener, NULL, NULL);
    if (*server < 0) { perror("accept"); return 1; }
    char buf[2];
    for (int i = 0; i < 3; i++) {
        if (send(*client, "ab", 2, 0) != 2 || recv(*server, buf, 2, MSG_WAITALL) != 2) return 1;
        if (send(*server, "cd", 2, 0) != 2 || recv(*client, buf, 2, MSG_WAITALL) != 2) return 1;
    }
    return 0;
}

#endif
