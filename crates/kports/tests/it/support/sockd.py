"""A socket holder for kports's system tests, run under a copied interpreter named after a
Kubernetes component so that its exe, comm and argv look like the component's.

  sockd.py [--listen tcp|udp|unix:ADDR:PORT|PATH]... [--connect HOST:PORT:COUNT]...
           [--fork] [any other flags, ignored]

Prints "ready PID" once every socket is set up, then holds them until stdin closes. With
--fork, a child process shares every socket (as after fork in a pre-forking server) and prints
"child PID" first. Connections go only to the addresses given, which the tests keep on loopback
or inside their own namespaces.
"""
import os
import socket
import sys
import threading

held = []


def listen(spec):
    proto, rest = spec.split(":", 1)
    if proto == "unix":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(rest)
        s.listen(16)
        held.append(s)
        return
    host, port = rest.rsplit(":", 1)
    host = host.strip("[]")
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    s = socket.socket(fam, kind)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, int(port)))
    if kind == socket.SOCK_STREAM:
        s.listen(512)
    held.append(s)


def connect(spec):
    host, port, count = spec.rsplit(":", 2)
    host = host.strip("[]")
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(int(count)):
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.settimeout(5)
        s.connect((host, int(port)))
        held.append(s)


def accept_forever(s):
    while True:
        c, _ = s.accept()
        held.append(c)


def main(argv):
    i = 0
    fork = False
    while i < len(argv):
        a = argv[i]
        if a == "--listen":
            listen(argv[i + 1])
            i += 2
        elif a == "--connect":
            connect(argv[i + 1])
            i += 2
        elif a == "--fork":
            fork = True
            i += 1
        else:
            i += 1
    # Accept every connection, now and later, so that both ends are ESTABLISHED and owned.
    for s in list(held):
        if s.type == socket.SOCK_STREAM and s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            threading.Thread(target=accept_forever, args=(s,), daemon=True).start()
    if fork:
        pid = os.fork()
        if pid == 0:
            sys.stdin.read()
            os._exit(0)
        print("child", pid, flush=True)
    print("ready", os.getpid(), flush=True)
    sys.stdin.read()


if __name__ == "__main__":
    main(sys.argv[1:])
