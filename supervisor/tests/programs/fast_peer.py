"""Peers for the fast-path tests: an echo server whose connections are handled in the accepting
process, a forked child, an exec'd program, or a process that receives the socket with
SCM_RIGHTS; an epoll echo server; and a client that streams a seeded payload through the echo
and checks it comes back intact.

    fast_peer.py server MODE PORT         MODE: inline | fork | exec | scm | epoll
    fast_peer.py client PORT SIZE SEED    prints "echoed <sha256> <bytes>" and "sent <sha256>"
    fast_peer.py echo                     stdin -> stdout (what the exec mode runs)
    fast_peer.py server forkwrite PORT    after accept, parent and child both write records
    fast_peer.py records PORT N           reads 2*N records, checks each writer's are whole and
                                          in order: prints "records ok <n>"

Every handler reports how many joyride ring mappings its process has ("rings=N"), which is
how the tests tell the fast path from the trap path."""
import hashlib
import os
import random
import selectors
import socket
import sys
import threading


def rings():
    with open("/proc/self/maps") as maps:
        return sum("joyride-ring" in line for line in maps)


def log(*words):
    print(*words, file=sys.stderr, flush=True)


def echo_socket(conn):
    total = 0
    while True:
        data = conn.recv(65536)
        if not data:
            break
        conn.sendall(data)
        total += len(data)
    log(f"handler pid={os.getpid()} rings={rings()} echoed={total}")
    conn.close()


def echo_stdio():
    # The exec'd image: the connection is fd 0 and fd 1.
    total = 0
    while True:
        data = os.read(0, 65536)
        if not data:
            break
        view = memoryview(data)
        while view:
            view = view[os.write(1, view):]
        total += len(data)
    log(f"handler pid={os.getpid()} rings={rings()} echoed={total}")


def server(mode, port):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("0.0.0.0", port))
    listener.listen(16)
    if mode == "epoll":
        return epoll_server(listener)
    if mode == "forkwrite":
        return fork_writers(listener)
    receiver = None
    if mode == "scm":
        parent_end, child_end = socket.socketpair()
        receiver = os.fork()
        if receiver == 0:
            parent_end.close()
            while True:
                msg, fds, _, _ = socket.recv_fds(child_end, 16, 1)
                if not fds:
                    os._exit(0)
                echo_socket(socket.socket(fileno=fds[0]))
        child_end.close()
    log("listening")
    while True:
        conn, _ = listener.accept()
        if mode == "inline":
            echo_socket(conn)
        elif mode == "fork":
            if os.fork() == 0:
                listener.close()
                echo_socket(conn)
                os._exit(0)
            conn.close()
        elif mode == "exec":
            # Take part of the stream here (so that it is on the ring by now), echo it, and let
            # a new program image carry on with the same connection.
            head = conn.recv(1000)
            conn.sendall(head)
            if os.fork() == 0:
                os.dup2(conn.fileno(), 0)
                os.dup2(conn.fileno(), 1)
                os.execvp(sys.executable, [sys.executable, __file__, "echo"])
            conn.close()
        elif mode == "scm":
            socket.send_fds(parent_end, [b"x"], [conn.fileno()])
            conn.close()


def epoll_server(listener):
    listener.setblocking(False)
    selector = selectors.EpollSelector()
    selector.register(listener, selectors.EVENT_READ)
    pending = {}
    finished = set()
    log("listening")
    while True:
        for key, events in selector.select():
            if key.fileobj is listener:
                conn, _ = listener.accept()
                conn.setblocking(False)
                pending[conn] = bytearray()
                selector.register(conn, selectors.EVENT_READ)
                continue
            conn = key.fileobj
            if events & selectors.EVENT_READ and conn not in finished:
                try:
                    data = conn.recv(65536)
                except BlockingIOError:
                    data = None
                if data == b"":
                    finished.add(conn)
                elif data:
                    pending[conn] += data
            if pending[conn]:
                try:
                    sent = conn.send(pending[conn])
                    del pending[conn][:sent]
                except BlockingIOError:
                    pass
            if conn in finished and not pending[conn]:
                # The client's EOF, and everything echoed: done with this one.
                log(f"handler pid={os.getpid()} rings={rings()} echoed=epoll")
                selector.unregister(conn)
                conn.close()
                del pending[conn]
                finished.discard(conn)
                continue
            reading = 0 if conn in finished else selectors.EVENT_READ
            wanted = reading | (selectors.EVENT_WRITE if pending[conn] else 0)
            selector.modify(conn, wanted)


RECORD = 100


def record(tag, index):
    head = f"{tag}{index:07d}".encode()
    return head + bytes([65 + (index + ord(tag)) % 26]) * (RECORD - len(head))


def fork_writers(listener):
    # Parent and child write to one connection at the same time: each record must arrive whole.
    log("listening")
    conn, _ = listener.accept()
    count = int(os.environ.get("RECORDS", "20000"))
    child = os.fork()
    tag = "C" if child == 0 else "P"
    for index in range(count):
        conn.sendall(record(tag, index))
    log(f"handler pid={os.getpid()} rings={rings()} wrote={count}")
    if child == 0:
        os._exit(0)
    os.waitpid(child, 0)
    conn.close()


def records(port, count):
    conn = socket.create_connection(("10.77.0.2", port))
    data = bytearray()
    while True:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    assert len(data) == 2 * count * RECORD, f"{len(data)} bytes"
    seen = {"P": 0, "C": 0}
    for at in range(0, len(data), RECORD):
        piece = bytes(data[at:at + RECORD])
        tag = chr(piece[0])
        assert tag in seen, f"record {at // RECORD} torn: {piece[:20]!r}"
        assert piece == record(tag, seen[tag]), f"record {at // RECORD} torn or out of order: {piece[:20]!r}"
        seen[tag] += 1
    print(f"records ok {seen['P'] + seen['C']} rings={rings()}", flush=True)


def client(port, size, seed):
    payload = random.Random(seed).randbytes(size)
    conn = socket.create_connection(("10.77.0.2", port))

    def send():
        view = memoryview(payload)
        rng = random.Random(seed + 1)
        while view:
            piece = rng.randint(1, 100000)
            conn.sendall(view[:piece])
            view = view[piece:]
        conn.shutdown(socket.SHUT_WR)

    writer = threading.Thread(target=send)
    writer.start()
    echoed = hashlib.sha256()
    got = 0
    while True:
        data = conn.recv(70000)
        if not data:
            break
        echoed.update(data)
        got += len(data)
    writer.join()
    print(f"sent {hashlib.sha256(payload).hexdigest()}", flush=True)
    print(f"echoed {echoed.hexdigest()} {got} rings={rings()}", flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "server":
        server(sys.argv[2], int(sys.argv[3]))
    elif sys.argv[1] == "client":
        client(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
    elif sys.argv[1] == "echo":
        echo_stdio()
    elif sys.argv[1] == "records":
        records(int(sys.argv[2]), int(sys.argv[3]))
