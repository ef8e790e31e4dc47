"""UDP between two programs on one host, at the stack's own address.

server PORT: echoes every datagram to its sender, upper-cased, until it gets b"stop".
client ADDR PORT SEED: sends datagrams of random sizes unconnected and connected, checks each
echo, then checks that a connected socket aimed at a closed port reports ECONNREFUSED through
SO_ERROR. One line per result.
"""
import errno
import random
import socket
import sys


def server(port):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", port))
    print("listening", flush=True)
    served = 0
    while True:
        data, source = sock.recvfrom(65536)
        if data == b"stop":
            break
        sock.sendto(data.upper(), source)
        served += 1
    print(f"served {served}", flush=True)


def exchange(sock, rng, count, connected, target):
    good = 0
    for _ in range(count):
        size = rng.choice([1, 7, 100, 1400, 1472, 4000, 8000, rng.randrange(1, 9000)])
        data = bytes(rng.randrange(97, 123) for _ in range(size))
        if connected:
            sock.send(data)
            echo = sock.recv(65536)
        else:
            sock.sendto(data, target)
            echo, source = sock.recvfrom(65536)
            if source != target:
                print(f"wrong source {source}", flush=True)
                continue
        good += echo == data.upper()
    return good


def client(addr, port, seed):
    rng = random.Random(seed)
    target = (addr, port)
    plain = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    plain.settimeout(10)
    print(f"plain good={exchange(plain, rng, 100, False, target)}", flush=True)
    linked = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    linked.settimeout(10)
    linked.connect(target)
    print(f"linked good={exchange(linked, rng, 100, True, target)}", flush=True)
    linked.send(b"stop")
    closed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    closed.settimeout(1)
    closed.connect((addr, port + 1))
    closed.send(b"anyone?")
    # The kernel fails the read itself (which takes the error); joyride keeps it in SO_ERROR.
    try:
        closed.recv(100)
        code = 0
    except OSError as error:
        code = error.errno or 0
    if code != errno.ECONNREFUSED:
        code = closed.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    print(f"closed-port={errno.errorcode.get(code, code)}", flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "server":
        server(int(sys.argv[2]))
    else:
        client(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
