/*
 * The first program image of a transfer that a second one finishes:
 *
 *     remote_exec HOST PORT K PREFIX_FILE UPLOAD_FILE M PROGRAM [ARG...]
 *
 * connects to HOST:PORT, reads exactly K bytes of the download (into PREFIX_FILE), writes the
 * first M bytes of UPLOAD_FILE, then execs PROGRAM with its arguments and the socket's
 * descriptor number appended. The peer keeps sending meanwhile, so the socket holds unread
 * bytes when the new image takes it over.
 *
 * Built statically, it runs on the trap path with no library; the image it execs (a dynamic
 * one) gets the fast-path library and asks for rings on a stream already under way.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void die(const char *what)
{
	fprintf(stderr, "remote_exec: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void write_all(int fd, const char *buf, size_t len, const char *what)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			die(what);
		buf += n;
		len -= (size_t)n;
	}
}

int main(int argc, char **argv)
{
	if (argc < 8) {
		fprintf(stderr,
			"usage: remote_exec HOST PORT K PREFIX_FILE UPLOAD_FILE M PROGRAM [ARG...]\n");
		return 2;
	}
	size_t download_head = strtoul(argv[3], NULL, 10);
	size_t upload_head = strtoul(argv[6], NULL, 10);

	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[2])) };
	if (inet_pton(AF_INET, argv[1], &addr.sin_addr) != 1) {
		fprintf(stderr, "remote_exec: bad address %s\n", argv[1]);
		return 2;
	}
	int sock = socket(AF_INET, SOCK_STREAM, 0);
	if (sock < 0)
		die("socket");
	if (connect(sock, (struct sockaddr *)&addr, sizeof addr) != 0)
		die("connect");

	int prefix = open(argv[4], O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (prefix < 0)
		die("open the prefix file");
	/* Odd-sized reads, so that the split falls anywhere in the peer's writes. */
	static char buf[7919];
	size_t got = 0;
	while (got < download_head) {
		size_t want = download_head - got < sizeof buf ? download_head - got : sizeof buf;
		ssize_t n = read(sock, buf, want);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			die("read the download");
		if (n == 0) {
			fprintf(stderr, "remote_exec: EOF after %zu bytes\n", got);
			return 1;
		}
		write_all(prefix, buf, (size_t)n, "write the prefix file");
		got += (size_t)n;
	}
	close(prefix);

	int upload = open(argv[5], O_RDONLY);
	if (upload < 0)
		die("open the upload file");
	size_t sent = 0;
	while (sent < upload_head) {
		size_t want = upload_head - sent < sizeof buf ? upload_head - sent : sizeof buf;
		ssize_t n = read(upload, buf, want);
		if (n <= 0)
			die("read the upload file");
		write_all(sock, buf, (size_t)n, "write the upload");
		sent += (size_t)n;
	}
	close(upload);
	printf("handed over after %zu down, %zu up\n", got, sent);
	fflush(stdout);

	char fd_arg[16];
	snprintf(fd_arg, sizeof fd_arg, "%d", sock);
	char **next = calloc((size_t)argc - 7 + 2, sizeof *next);
	if (next == NULL)
		die("calloc");
	int count = 0;
	for (int i = 7; i < argc; i++)
		next[count++] = argv[i];
	next[count++] = fd_arg;
	next[count] = NULL;
	execvp(next[0], next);
	die("exec");
}
