"""Peers for the remote-ring tests: one end runs under joyride, the other on the kernel's TCP in
the host namespace (or the other way round), and every byte is checked by SHA-256.

    remote_peer.py server BIND PORT DOWNLOAD_FILE
        accepts one connection; sends DOWNLOAD_FILE while it reads the peer's stream to EOF, then
        answers "<sha256 of what it received>\\n" and closes. Prints "listening", then
        "received <sha256> <bytes> rings=N".
    remote_peer.py gated-server BIND PORT DOWNLOAD_FILE GATE
        as server, but with a full accept queue (a connection of its own that it does not accept
        yet, listen backlog 0), so that the kernel drops other SYNs until the file GATE exists.
    remote_peer.py client HOST PORT UPLOAD_FILE DOWNLOAD_SIZE
        blocking connect; uploads UPLOAD_FILE while it downloads, shuts its write side down,
        reads to EOF. Prints "download <sha256> <bytes>", "uploaded <sha256 the server saw>",
        "rings=N".
    remote_peer.py nbclient HOST PORT UPLOAD_FILE DOWNLOAD_SIZE [GATE]
        as client with a non-blocking connect (EINPROGRESS, poll for writable, SO_ERROR 0) and
        an edge-triggered epoll loop. With GATE, first checks the connecting socket stays
        unwritable, takes no data (EAGAIN) and has SO_ERROR 0 ("pending ok rings=N"), then
        creates GATE.
    remote_peer.py refused HOST PORT
        non-blocking connect to a closed port: prints "so_error <errno name>".
    remote_peer.py continue PREFIX_FILE DOWNLOAD_SIZE UPLOAD_FILE UPLOAD_OFFSET FD
        what remote_exec execs: carries on a transfer on the inherited socket FD whose first
        bytes the previous program image moved (the download's are in PREFIX_FILE; it sent
        UPLOAD_FILE up to UPLOAD_OFFSET). Prints as client.
    remote_peer.py blast BIND PORT FILE
        accepts one connection and sends FILE over and over until a send fails; prints
        "send failed <errno name> after <bytes>" (or "send timed out").
    remote_peer.py partial HOST PORT N
        reads N bytes, prints "read <sha256> <n> rings=N", closes with the rest unread.
    remote_peer.py rst BIND PORT FILE WHEN
        sends FILE and resets the connection (SO_LINGER 0, close), waiting for one byte from
        the peer "before" it sends or "after". Prints "reset sent".
    remote_peer.py expect-reset HOST PORT SIZE MODE
        MODE "ack": reads SIZE bytes, sends the byte, then expects the reset. MODE "late":
        sends the byte and sleeps, so that the reset arrives with data unread, then reads to
        the end. Prints "got <sha256> <bytes> end=<ECONNRESET|EOF|other errno name> rings=N".
    remote_peer.py rst-acked BIND PORT FILE GATE
        after one byte from the peer, sends FILE until the peer's window closes (its unacknowledged
        bytes stay unchanged for half a second) or everything is acknowledged, resets, then
        creates GATE. Prints "acked <bytes>": what the peer's stack acknowledged.
    remote_peer.py read-after-reset HOST PORT GATE
        sends one byte, waits for GATE, then reads to the end; prints as expect-reset.
    remote_peer.py hold BIND PORT GATE
        accepts one connection, sends "hello", closes once the file GATE exists.
    remote_peer.py wait-eof HOST PORT
        reads to EOF; prints "got <bytes>".
    remote_peer.py echo BIND PORT
        accepts one connection and sends back every byte it reads, until EOF. Prints
        "listening", then "echoed <bytes>".
    remote_peer.py exchange HOST PORT COUNT SIZE
        sends COUNT requests of SIZE bytes (request i is bytes (7 i + j) mod 251), each after
        the answer to the one before, and checks that every answer is its request. Prints
        "exchanged <count> <sha256 of the answers> rings=N"."""
import errno
import fcntl
import hashlib
import os
import random
import select
import socket
import struct
import termios
import sys
import threading
import time

# Every wait is bounded: a peer that stalls fails the run instead of hanging it.
WAIT = 60.0
CHUNK = 1 << 16


def rings():
    with open("/proc/self/maps") as maps:
        return sum("joyride-ring" in line for line in maps)


def log(*words):
    print(*words, flush=True)


def fail(*words):
    print("FAIL", *words, flush=True)
    sys.exit(1)


def errno_name(number):
    return errno.errorcode.get(number, str(number))


def wait_for_file(path):
    deadline = time.monotonic() + WAIT
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            fail(f"{path} did not appear")
        time.sleep(0.02)


def listener(bind, port, backlog=16):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((bind, port))
    sock.listen(backlog)
    return sock


def accept_one(sock):
    conn, _ = sock.accept()
    return conn


def connect(host, port):
    # A plain blocking connect (create_connection with a timeout would make it non-blocking).
    conn = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    conn.connect((host, int(port)))
    return conn


def send_file(conn, path, offset=0):
    """Sends `path` from `offset` in pieces of random sizes (a seeded generator, so a run
    repeats)."""
    pieces = random.Random(offset + 17)
    with open(path, "rb") as source:
        source.seek(offset)
        while True:
            data = source.read(pieces.randint(1, 3 * CHUNK))
            if not data:
                return
            conn.sendall(data)


def serve(conn, download):
    sender = threading.Thread(target=send_file, args=(conn, download))
    sender.start()
    digest = hashlib.sha256()
    total = 0
    while True:
        data = conn.recv(CHUNK)
        if not data:
            break
        digest.update(data)
        total += len(data)
    sender.join()
    conn.sendall(digest.hexdigest().encode() + b"\n")
    conn.close()
    log(f"received {digest.hexdigest()} {total} rings={rings()}")


def server(bind, port, download):
    sock = listener(bind, int(port))
    log("listening")
    serve(accept_one(sock), download)


def gated_server(bind, port, download, gate):
    # Backlog 0 holds one connection: ours fills it, and the kernel drops SYNs meanwhile.
    sock = listener(bind, int(port), backlog=0)
    filler = socket.create_connection((bind, int(port)), timeout=WAIT)
    log("listening")
    wait_for_file(gate)
    accept_one(sock).close()
    filler.close()
    serve(accept_one(sock), download)


def split_reply(stream, download_size):
    """The download and the server's digest line after it."""
    if len(stream) != download_size + 65 or not stream.endswith(b"\n"):
        fail(f"expected {download_size} bytes and a digest line, got {len(stream)} bytes")
    return stream[:download_size], stream[download_size:-1].decode()


def report(download, uploaded):
    log(f"download {hashlib.sha256(download).hexdigest()} {len(download)}")
    log(f"uploaded {uploaded}")
    log(f"rings={rings()}")


def read_to_eof(conn):
    parts = []
    while True:
        data = conn.recv(CHUNK)
        if not data:
            return b"".join(parts)
        parts.append(data)


def upload_then_shut(conn, path, offset=0):
    send_file(conn, path, offset)
    conn.shutdown(socket.SHUT_WR)


def client(host, port, upload, download_size):
    conn = connect(host, port)
    uploader = threading.Thread(target=upload_then_shut, args=(conn, upload))
    uploader.start()
    stream = read_to_eof(conn)
    uploader.join()
    report(*split_reply(stream, int(download_size)))


def continue_transfer(prefix_file, download_size, upload, upload_offset, fd):
    # Family and type given: the socket object then asks the descriptor nothing.
    conn = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 0, fileno=int(fd))
    with open(prefix_file, "rb") as prefix:
        head = prefix.read()
    uploader = threading.Thread(target=upload_then_shut, args=(conn, upload, int(upload_offset)))
    uploader.start()
    stream = head + read_to_eof(conn)
    uploader.join()
    report(*split_reply(stream, int(download_size)))


def poll_once(conn, events, timeout_ms):
    poller = select.poll()
    poller.register(conn, events)
    return [revents for _, revents in poller.poll(timeout_ms)]


def nonblocking_connect(host, port):
    conn = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    conn.setblocking(False)
    result = conn.connect_ex((host, int(port)))
    return conn, result


def check_pending(conn):
    """The connect is held up (the server's accept queue is full): the socket must stay
    unwritable, take no data and report no error."""
    if poll_once(conn, select.POLLOUT, 500):
        fail("the connecting socket polled writable before the connection existed")
    try:
        sent = conn.send(b"early")
        fail(f"send on a connecting socket took {sent} bytes")
    except BlockingIOError:
        pass
    error = conn.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if error != 0:
        fail(f"SO_ERROR {errno_name(error)} while connecting")
    if poll_once(conn, select.POLLOUT, 0):
        fail("the connecting socket polled writable after a refused send")
    log(f"pending ok rings={rings()}")


def wait_writable(conn):
    deadline = time.monotonic() + WAIT
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            fail("the connect did not complete")
        if poll_once(conn, select.POLLOUT, int(left * 1000)):
            return


def nbclient(host, port, upload, download_size, gate=None):
    conn, result = nonblocking_connect(host, port)
    if result != errno.EINPROGRESS:
        fail(f"connect_ex returned {errno_name(result)}, not EINPROGRESS")
    if gate is not None:
        check_pending(conn)
        with open(gate, "w"):
            pass
    wait_writable(conn)
    error = conn.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if error != 0:
        fail(f"SO_ERROR {errno_name(error)} after connect")
    log("connected")
    with open(upload, "rb") as source:
        outgoing = memoryview(source.read())
    pieces = random.Random(5)
    epoll = select.epoll()
    epoll.register(conn, select.EPOLLIN | select.EPOLLOUT | select.EPOLLET)
    parts = []
    sent = 0
    writing = True
    eof = False
    while not eof:
        if not epoll.poll(WAIT):
            fail(f"no event for {WAIT}s: sent {sent}, received {sum(map(len, parts))}")
        # Edge-triggered: each direction is worked until it would block.
        while writing:
            if sent == len(outgoing):
                conn.shutdown(socket.SHUT_WR)
                epoll.modify(conn, select.EPOLLIN | select.EPOLLET)
                writing = False
                break
            try:
                sent += conn.send(outgoing[sent:sent + pieces.randint(1, 4 * CHUNK)])
            except BlockingIOError:
                break
        while True:
            try:
                data = conn.recv(CHUNK)
            except BlockingIOError:
                break
            if not data:
                eof = True
                break
            parts.append(data)
    report(*split_reply(b"".join(parts), int(download_size)))


def refused(host, port):
    conn, result = nonblocking_connect(host, port)
    if result == errno.EINPROGRESS:
        if not poll_once(conn, select.POLLOUT, int(WAIT * 1000)):
            fail("the refused connect never completed")
        error = conn.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    else:
        error = result
    log(f"so_error {errno_name(error)}")


def blast(bind, port, path):
    sock = listener(bind, int(port))
    log("listening")
    conn = accept_one(sock)
    # A send that never fails would hang: 30 s without progress ends the run.
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", 30, 0))
    with open(path, "rb") as source:
        data = source.read()
    total = 0
    try:
        while total < 1 << 31:
            total += conn.send(data)
    except (BlockingIOError, TimeoutError):
        log(f"send timed out after {total}")
        return
    except OSError as error:
        log(f"send failed {errno_name(error.errno)} after {total}")
        return
    log(f"send never failed: {total}")


def partial(host, port, n):
    conn = connect(host, port)
    want = int(n)
    got = bytearray()
    while len(got) < want:
        data = conn.recv(min(CHUNK, want - len(got)))
        if not data:
            fail(f"EOF after {len(got)} bytes")
        got += data
    log(f"read {hashlib.sha256(got).hexdigest()} {len(got)} rings={rings()}")
    conn.close()
    log("closed")


def rst(bind, port, path, when):
    sock = listener(bind, int(port))
    log("listening")
    conn = accept_one(sock)
    conn.settimeout(WAIT)

    def go_byte():
        if conn.recv(1) != b"x":
            fail("the peer sent no go byte")

    if when == "before":
        go_byte()
    with open(path, "rb") as source:
        conn.sendall(source.read())
    if when == "after":
        go_byte()
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()
    log("reset sent")


def read_to_end(conn, got):
    """Appends to `got` until the stream ends; returns how: "EOF" or the errno's name."""
    while True:
        try:
            data = conn.recv(CHUNK)
        except OSError as error:
            return errno_name(error.errno)
        if not data:
            return "EOF"
        got += data


def expect_reset(host, port, size, mode):
    conn = connect(host, port)
    got = bytearray()
    if mode == "ack":
        want = int(size)
        while len(got) < want:
            data = conn.recv(min(CHUNK, want - len(got)))
            if not data:
                fail(f"EOF after {len(got)} bytes")
            got += data
    # Counted before the go byte, as the reset may come any time after it.
    mapped = rings()
    conn.sendall(b"x")
    if mode == "late":
        # The reset comes while the data is unread.
        time.sleep(1)
    end = read_to_end(conn, got)
    log(f"got {hashlib.sha256(got).hexdigest()} {len(got)} end={end} rings={mapped}")


def rst_acked(bind, port, path, gate):
    sock = listener(bind, int(port))
    log("listening")
    conn = accept_one(sock)
    conn.settimeout(WAIT)
    if conn.recv(1) != b"x":
        fail("the peer sent no go byte")
    with open(path, "rb") as source:
        data = source.read()
    conn.setblocking(False)
    sent = 0
    last = None
    steady_since = time.monotonic()
    deadline = steady_since + WAIT
    while time.monotonic() < deadline:
        try:
            sent += conn.send(data[sent:])
        except BlockingIOError:
            pass
        # TIOCOUTQ (SIOCOUTQ): bytes sent but not acknowledged, or not sent yet.
        unacked = struct.unpack("i", fcntl.ioctl(conn, termios.TIOCOUTQ, bytes(4)))[0]
        if sent == len(data) and unacked == 0:
            break
        if (sent, unacked) != last:
            last = (sent, unacked)
            steady_since = time.monotonic()
        elif time.monotonic() - steady_since > 0.5:
            break
        time.sleep(0.02)
    else:
        fail("the peer's window never settled")
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()
    log(f"acked {sent - unacked}")
    with open(gate, "w"):
        pass


def read_after_reset(host, port, gate):
    conn = connect(host, port)
    mapped = rings()
    conn.sendall(b"x")
    wait_for_file(gate)
    got = bytearray()
    end = read_to_end(conn, got)
    log(f"got {hashlib.sha256(got).hexdigest()} {len(got)} end={end} rings={mapped}")


def hold(bind, port, gate):
    sock = listener(bind, int(port))
    log("listening")
    conn = accept_one(sock)
    conn.sendall(b"hello")
    log("accepted")
    wait_for_file(gate)
    conn.close()


def wait_eof(host, port):
    conn = connect(host, port)
    log(f"got {len(read_to_eof(conn))}")


def echo(bind, port):
    sock = listener(bind, int(port))
    log("listening")
    conn = accept_one(sock)
    total = 0
    while True:
        data = conn.recv(CHUNK)
        if not data:
            break
        conn.sendall(data)
        total += len(data)
    conn.close()
    log(f"echoed {total}")


def exchange(host, port, count, size):
    conn = connect(host, port)
    digest = hashlib.sha256()
    for i in range(int(count)):
        request = bytes((7 * i + j) % 251 for j in range(int(size)))
        conn.sendall(request)
        answer = bytearray()
        while len(answer) < len(request):
            data = conn.recv(len(request) - len(answer))
            if not data:
                fail(f"EOF in answer {i} after {len(answer)} bytes")
            answer += data
        if answer != request:
            fail(f"answer {i} is not its request")
        digest.update(answer)
    log(f"exchanged {count} {digest.hexdigest()} rings={rings()}")
    conn.close()


COMMANDS = {
    "server": server,
    "gated-server": gated_server,
    "client": client,
    "nbclient": nbclient,
    "refused": refused,
    "continue": continue_transfer,
    "blast": blast,
    "partial": partial,
    "rst": rst,
    "expect-reset": expect_reset,
    "rst-acked": rst_acked,
    "read-after-reset": read_after_reset,
    "hold": hold,
    "wait-eof": wait_eof,
    "echo": echo,
    "exchange": exchange,
}

if __name__ == "__main__":
    COMMANDS[sys.argv[1]](*sys.argv[2:])
