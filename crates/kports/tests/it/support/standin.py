# A stand-in for kports tests: binds and connects what its arguments say, prints `ready`, then
# waits for standard input to close (at most 120 s). Arguments: tcp:HOST:PORT, udp:HOST:PORT,
# connect:HOST:PORT; anything starting with `-` is a flag for kports to read and is ignored.
import signal, socket, sys
signal.alarm(120)
held = []
for spec in sys.argv[1:]:
    if spec.startswith('-'):
        continue
    kind, rest = spec.split(':', 1)
    host, port = rest.rsplit(':', 1)
    host = host.strip('[]')
    fam = socket.AF_INET6 if ':' in host else socket.AF_INET
    if kind == 'connect':
        held.append(socket.create_connection((host, int(port))))
        continue
    s = socket.socket(fam, socket.SOCK_STREAM if kind == 'tcp' else socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if fam == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind((host, int(port)))
    if kind == 'tcp':
        s.listen(64)
    held.append(s)
print('ready', flush=True)
sys.stdin.read()
