"""Listens on the TCP ports and echoes on the UDP ports given, until killed.

argv: tcp=PORT,PORT,... udp=PORT,...  Prints "ready" once every socket is bound."""
import select
import socket
import sys

args = dict(a.split("=", 1) for a in sys.argv[1:])
socks = []
for p in filter(None, args.get("tcp", "").split(",")):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", int(p)))
    s.listen(64)
    socks.append(s)
udp = []
for p in filter(None, args.get("udp", "").split(",")):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", int(p)))
    udp.append(s)
print("ready", flush=True)
while True:
    # Handshakes complete in the backlog; accept and close to keep it from filling.
    r, _, _ = select.select(socks + udp, [], [], 5)
    for s in r:
        if s in udp:
            data, peer = s.recvfrom(2048)
            s.sendto(data, peer)
        else:
            c, _ = s.accept()
            c.close()
