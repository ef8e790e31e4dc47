/* Times getsockname(2) on one socket, for benches/intercept_cost.rs.
 *
 *   getsockname_loop tcp|unix CALLS BATCH
 *
 * tcp: an AF_INET stream socket bound to 0.0.0.0:0 and listening (under `joyride run` a
 * stackd socket, so socket(), bind() and listen() go to the daemon); unix: an unbound AF_UNIX stream socket (never a
 * stackd socket). After a warm-up, CALLS calls are timed in batches of BATCH with
 * CLOCK_MONOTONIC: one clock read per batch keeps the clock's own cost out of a call's figure.
 * Prints one line of per-call nanoseconds over the batches:
 *
 *   RESULT kind=tcp calls=20000 batch=100 median_ns=... p99_ns=... min_ns=... mean_ns=...
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define WARMUP 1000

static long long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* One getsockname; exits on failure, as a failed call would time an error path. */
static void name_once(int fd, int expect_family)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) {
		fprintf(stderr, "getsockname: %s\n", strerror(errno));
		exit(2);
	}
	if (ss.ss_family != expect_family) {
		fprintf(stderr, "getsockname gave family %d, expected %d\n", ss.ss_family,
			expect_family);
		exit(2);
	}
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: %s tcp|unix CALLS BATCH\n", argv[0]);
		return 2;
	}
	const char *kind = argv[1];
	long calls = atol(argv[2]), batch = atol(argv[3]);
	if (calls <= 0 || batch <= 0 || calls % batch != 0) {
		fprintf(stderr, "CALLS must be a positive multiple of BATCH\n");
		return 2;
	}
	int fd, family;
	if (strcmp(kind, "tcp") == 0) {
		family = AF_INET;
		fd = socket(AF_INET, SOCK_STREAM, 0);
		if (fd < 0) {
			perror("socket");
			return 2;
		}
		struct sockaddr_in any = { .sin_family = AF_INET, .sin_port = 0 };
		any.sin_addr.s_addr = htonl(INADDR_ANY);
		if (bind(fd, (struct sockaddr *)&any, sizeof any) != 0) {
			perror("bind");
			return 2;
		}
		if (listen(fd, 16) != 0) {
			perror("listen");
			return 2;
		}
	} else if (strcmp(kind, "unix") == 0) {
		family = AF_UNIX;
		fd = socket(AF_UNIX, SOCK_STREAM, 0);
		if (fd < 0) {
			perror("socket");
			return 2;
		}
	} else {
		fprintf(stderr, "unknown kind %s\n", kind);
		return 2;
	}

	for (int i = 0; i < WARMUP; i++)
		name_once(fd, family);

	long batches = calls / batch;
	double *per_call = malloc(sizeof(double) * batches);
	if (!per_call)
		return 2;
	double sum = 0;
	for (long b = 0; b < batches; b++) {
		long long start = now_ns();
		for (long i = 0; i < batch; i++)
			name_once(fd, family);
		per_call[b] = (double)(now_ns() - start) / (double)batch;
		sum += per_call[b];
	}
	qsort(per_call, batches, sizeof(double), cmp_double);
	/* Nearest rank, as the bench computes its own percentiles. */
	long p99 = (long)((double)(batches - 1) * 0.99 + 0.5);
	printf("RESULT kind=%s calls=%ld batch=%ld median_ns=%.1f p99_ns=%.1f min_ns=%.1f "
	       "mean_ns=%.1f\n",
	       kind, calls, batch, per_call[(batches - 1) / 2], per_call[p99], per_call[0],
	       sum / (double)batches);
	fflush(stdout);
	return 0;
}
