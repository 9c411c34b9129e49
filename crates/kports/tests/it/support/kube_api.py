# A stand-in Kubernetes API server for `kports agent --kubeconfig`: it speaks the API's list and
# watch wire format for Nodes and Pods (JSON lists with a resourceVersion; a watch is a chunked
# stream of one JSON event per line) on 127.0.0.1 only. It prints its port on the first line of
# standard output, then one line per request (`nodes list`, `nodes watch rv=10`, ...), and ends
# by itself after 120 s.
#
# The cluster: cp (127.0.0.1, control-plane) and wk (127.0.0.2) in the lists; a watch of Nodes
# then adds wk2 (127.0.0.3), whose agent pod a watch of Pods adds.
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


def node(name, ip, roles=()):
    labels = {"kubernetes.io/hostname": name}
    labels.update({"node-role.kubernetes.io/" + r: "" for r in roles})
    return {"kind": "Node", "apiVersion": "v1",
            "metadata": {"name": name, "resourceVersion": "11", "uid": "uid-" + name,
                         "labels": labels},
            "status": {"addresses": [{"type": "InternalIP", "address": ip},
                                     {"type": "Hostname", "address": name}]}}


def pod(name, node_name, ip):
    return {"kind": "Pod", "apiVersion": "v1",
            "metadata": {"name": name, "namespace": "kube-system", "resourceVersion": "21",
                         "labels": {"app.kubernetes.io/name": "kports"}},
            "spec": {"nodeName": node_name, "hostNetwork": True,
                     "containers": [{"name": "kports", "image": "kports"}]},
            "status": {"phase": "Running", "podIP": ip, "hostIP": ip,
                       "conditions": [{"type": "Ready", "status": "True"}]}}


LISTS = {
    "nodes": {"kind": "NodeList", "apiVersion": "v1", "metadata": {"resourceVersion": "10"},
              "items": [node("cp", "127.0.0.1", ["control-plane"]), node("wk", "127.0.0.2")]},
    "pods": {"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "20"},
             "items": [pod("kports-a", "cp", "127.0.0.1"), pod("kports-b", "wk", "127.0.0.2")]},
}
ADDED = {"nodes": node("wk2", "127.0.0.3"), "pods": pod("kports-c", "wk2", "127.0.0.3")}
PATHS = {"/api/v1/nodes": "nodes", "/api/v1/namespaces/kube-system/pods": "pods"}
lock = threading.Lock()


class Api(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        url = urlparse(self.path)
        query = parse_qs(url.query)
        what = PATHS.get(url.path)
        watch = query.get("watch", [""])[0] in ("1", "true")
        with lock:
            rv = query.get("resourceVersion", [""])[0]
            print(f"{what} {'watch' if watch else 'list'} rv={rv}", flush=True)
        if what is None:
            body = b'{"kind":"Status","apiVersion":"v1","status":"Failure","code":404}'
            self.send_response(404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if not watch:
            body = json.dumps(LISTS[what]).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        line = json.dumps({"type": "ADDED", "object": ADDED[what]}).encode() + b"\n"
        try:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
            self.wfile.flush()
            # Held open, as the API server holds a watch, until the client goes or time is up.
            time.sleep(30)
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Api)
server.daemon_threads = True
print(server.server_address[1], flush=True)
threading.Timer(120, server.shutdown).start()
server.serve_forever()
