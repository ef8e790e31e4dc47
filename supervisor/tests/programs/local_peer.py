"""Both ends of the local-path checks in supervisor/tests/local_path.rs.

    local_peer.py server PORT DIR   listen on 0.0.0.0:PORT, serve one connection, then close the
                                    listener with one connection still queued
    local_peer.py client PORT DIR   connect to 10.77.0.2:PORT and report what it sees
    local_peer.py storm-server PORT N    accept N connections one after another, echo each
    local_peer.py storm-client PORT N    open, use and close N connections

Steps are paced by files the test creates in DIR, so that it can look at the daemon between
them. Every observation is one line on stdout, compared exactly by the test.
"""

import errno
import os
import socket
import sys
import time

STACK_IP = "10.77.0.2"


def wait_for(directory, name, timeout=60):
    path = os.path.join(directory, name)
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            sys.exit(f"timed out waiting for {path}")
        time.sleep(0.02)


def touch(directory, name):
    with open(os.path.join(directory, name), "w"):
        pass


def name(addr):
    return f"{addr[0]}:{addr[1]}"


def say(text):
    print(text, flush=True)


def read_line(sock):
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def outcome(call):
    try:
        return repr(call())
    except OSError as error:
        return errno.errorcode[error.errno]


def server(port, directory):
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("0.0.0.0", port))
    listener.listen(4)
    say("listening")
    conn, peer = listener.accept()
    say(f"accepted peer={name(peer)} name={name(conn.getsockname())} "
        f"peername={name(conn.getpeername())}")
    conn.sendall(b"echo:" + read_line(conn))
    wait_for(directory, "close-server")
    conn.close()
    say("closed")
    # A connection the client makes now is never accepted: closing the listener resets it.
    wait_for(directory, "queued")
    listener.close()
    say("listener-closed")


def client(port, directory):
    conn = socket.socket()
    conn.connect((STACK_IP, port))
    say(f"connected name={name(conn.getsockname())} peername={name(conn.getpeername())}")
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    state = conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)[0]
    mss = conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG)
    say(f"nodelay={conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)} tcp_state={state} mss={mss}")
    conn.sendall(b"ping\n")
    say(f"reply={read_line(conn)!r}")
    touch(directory, "client-ready")
    say(f"after-close={outcome(lambda: conn.recv(100))}")
    conn.close()
    wait_for(directory, "go-on")
    refused = socket.socket()
    say(f"closed-port={outcome(lambda: refused.connect((STACK_IP, port + 1)))}")
    queued = socket.socket()
    queued.connect((STACK_IP, port))
    say("queued-connected")
    touch(directory, "queued")
    say(f"queued-recv={outcome(lambda: queued.recv(100))}")


def storm_server(port, count):
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("0.0.0.0", port))
    listener.listen(64)
    say("listening")
    for _ in range(count):
        conn, _ = listener.accept()
        conn.sendall(read_line(conn))
        conn.close()
    say("served")
    # Stay until the test has looked at the daemon's books.
    time.sleep(3600)


def storm_client(port, count):
    for i in range(count):
        conn = socket.socket()
        conn.connect((STACK_IP, port))
        message = f"{i}\n".encode()
        conn.sendall(message)
        if read_line(conn) != message:
            sys.exit(f"connection {i}: wrong echo")
        if conn.recv(1) != b"":
            sys.exit(f"connection {i}: no end-of-stream")
        conn.close()
    say(f"done {count}")


def main():
    role, port, arg = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    {
        "server": lambda: server(port, arg),
        "client": lambda: client(port, arg),
        "storm-server": lambda: storm_server(port, int(arg)),
        "storm-client": lambda: storm_client(port, int(arg)),
    }[role]()


main()
