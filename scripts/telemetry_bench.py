#!/usr/bin/env python3
"""The cost of lineage events and traces on a cached run: 1,000 tasks, all
hits, with and without OPENLINEAGE_URL and OTEL_EXPORTER_OTLP_ENDPOINT
pointing at a collector on loopback that answers 200 to everything: nginx
(`return 200`) when installed, so the collector's own speed is not what is
measured, else a threaded Python server. Runs interleaved; prints medians
and the ratio.

    python3 scripts/telemetry_bench.py [--runs 21] [--tasks 1000]

HOTPASS_BIN picks the binary (default: target/release/hotpass).
"""

import argparse
import http.server
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time

from benchlib import copy_project, hotpass_bin, interleaved, print_medians


class Sink(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=21)
    ap.add_argument("--tasks", type=int, default=1000)
    args = ap.parse_args()
    hotpass = hotpass_bin()
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    work = tempfile.mkdtemp(prefix="hotpass-telemetry-bench-")
    server = proc = None
    if nginx:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        user = "user root;" if os.geteuid() == 0 else ""
        with open(os.path.join(work, "nginx.conf"), "w") as f:
            f.write(f"{user}\ndaemon off; worker_processes 2; pid {work}/nginx.pid; error_log {work}/error.log;\n"
                    f"events {{ worker_connections 1024; }}\nhttp {{ access_log off; client_body_temp_path {work}/body;\n"
                    f" server {{ listen 127.0.0.1:{port}; location / {{ return 200; }} }} }}\n")
        proc = subprocess.Popen([nginx, "-c", os.path.join(work, "nginx.conf"), "-p", work],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        collector = "nginx"
    else:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Sink)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        port = server.server_address[1]
        collector = "python http.server"
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as d:
        copy_project(d, args.tasks)
        plain = {k: v for k, v in os.environ.items()
                 if not k.startswith(("OTEL_", "OPENLINEAGE_")) and k != "TRACEPARENT"}
        traced = dict(plain, OPENLINEAGE_URL=base, OTEL_EXPORTER_OTLP_ENDPOINT=base)
        subprocess.run([hotpass, "-q", "run"], cwd=d, env=plain, check=True,
                       stdout=subprocess.DEVNULL)
        medians = interleaved(d, [
            ("plain", [hotpass, "-q", "run"], plain),
            ("lineage+traces", [hotpass, "-q", "run"], traced),
        ], args.runs)
    if server:
        server.shutdown()
    if proc:
        proc.terminate()
        proc.wait(timeout=10)
    shutil.rmtree(work, ignore_errors=True)
    print_medians(f"{args.tasks} cached tasks, medians of {args.runs} interleaved runs, "
                  f"collector: {collector}", medians)

if __name__ == "__main__":
    main()
