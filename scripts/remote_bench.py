#!/usr/bin/env python3
"""Times hotpass with a remote cache on a 1,000-task project: a cold run
(nothing cached anywhere; every result uploaded), a remote-warm run (a
fresh local cache on a "second machine": every result downloaded) and a
local-warm run (the no-op), against WebDAV (nginx) and S3 (moto's server),
each also through a proxy that adds latency on loopback.

    python3 scripts/remote_bench.py [--runs 5] [--tasks 1000] [--latency-ms 50]

Needs nginx with the dav-ext module and moto_server (see .ci/run); prints
medians in milliseconds. HOTPASS_BIN picks the binary (default: a release
build of this checkout).
"""

import argparse
import asyncio
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, limit=30):
    end = time.time() + limit
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


def start_nginx(work):
    d = os.path.join(work, "nginx")
    os.makedirs(os.path.join(d, "dav"))
    port = free_port()
    module = "/usr/lib/nginx/modules/ngx_http_dav_ext_module.so"
    user = "user root;" if os.geteuid() == 0 else ""
    conf = f"""load_module {module};
{user}
daemon off; worker_processes 2; pid {d}/nginx.pid; error_log {d}/error.log;
events {{ worker_connections 1024; }}
http {{ access_log off; client_body_temp_path {d}/body;
 server {{ listen 127.0.0.1:{port}; root {d}/dav; client_max_body_size 0;
  location / {{ dav_methods PUT DELETE MKCOL COPY MOVE; dav_ext_methods PROPFIND OPTIONS;
   create_full_put_path on; dav_access user:rw group:rw all:r; }} }} }}
"""
    with open(os.path.join(d, "nginx.conf"), "w") as f:
        f.write(conf)
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    p = subprocess.Popen([nginx, "-c", os.path.join(d, "nginx.conf"), "-p", d],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return p, port, lambda: shutil.rmtree(os.path.join(d, "dav", "cache"), ignore_errors=True)


def start_moto(work):
    port = free_port()
    p = subprocess.Popen(["moto_server", "-H", "127.0.0.1", "-p", str(port)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    state = {"n": 0}

    def fresh_bucket():
        # A new bucket per cold run: an empty remote.
        state["n"] += 1
        name = f"bench{state['n']}"
        req = urllib.request.Request(f"http://127.0.0.1:{port}/{name}", method="PUT")
        urllib.request.urlopen(req).read()
        return name

    return p, port, fresh_bucket


class DelayProxy:
    """A TCP proxy that holds every chunk going to the server for `delay`
    seconds: each request pays the latency once more."""

    def __init__(self, target, delay):
        self.target, self.delay = target, delay
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        asyncio.run_coroutine_threadsafe(self.serve(), self.loop).result()

    async def serve(self):
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", self.port)

    async def pipe(self, reader, writer, delay):
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                if delay:
                    await asyncio.sleep(delay)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def handle(self, cr, cw):
        try:
            sr, sw = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            cw.close()
            return
        await asyncio.gather(self.pipe(cr, sw, self.delay), self.pipe(sr, cw, 0))


def make_project(path, tasks):
    os.makedirs(os.path.join(path, "src"))
    lines = []
    for i in range(tasks):
        with open(os.path.join(path, "src", f"f{i}.txt"), "w") as f:
            f.write(f"input {i}\n")
        lines.append(
            f'[tasks.t{i}]\nrun = "mkdir -p out && cp src/f{i}.txt out/f{i}.txt"\n'
            f'inputs = ["src/f{i}.txt"]\noutputs = ["out/f{i}.txt"]\n')
    with open(os.path.join(path, "hotpass.toml"), "w") as f:
        f.write("".join(lines))


def run(hotpass, project, env):
    start = time.perf_counter()
    r = subprocess.run([hotpass, "-q", "run"], cwd=project, env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    took = (time.perf_counter() - start) * 1000
    if r.returncode != 0 or "unavailable" in r.stderr:
        sys.exit(f"hotpass failed:\n{r.stdout}\n{r.stderr}")
    return took, r.stdout


def measure(hotpass, project, url_for, env, runs):
    cold, remote_warm, local_warm = [], [], []
    for _ in range(runs):
        url = url_for()
        e = dict(env, HOTPASS_REMOTE_CACHE=url, CI="true")
        for d in ("cache", "cache-b", "out"):
            shutil.rmtree(os.path.join(project, d), ignore_errors=True)
        t, out = run(hotpass, project, e)
        assert "1000 ran" in out or " ran," in out
        cold.append(t)
        # A second machine: a fresh cache folder, no outputs.
        shutil.rmtree(os.path.join(project, "out"))
        e2 = dict(env, HOTPASS_REMOTE_CACHE=url, HOTPASS_CACHE_DIR="cache-b")
        t, out = run(hotpass, project, e2)
        assert " 0 ran" in out, out
        remote_warm.append(t)
        t, _ = run(hotpass, project, e2)
        local_warm.append(t)
    return [statistics.median(x) for x in (cold, remote_warm, local_warm)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--tasks", type=int, default=1000)
    ap.add_argument("--latency-ms", type=float, default=50)
    args = ap.parse_args()
    hotpass = os.environ.get("HOTPASS_BIN")
    if not hotpass:
        subprocess.run(["cargo", "build", "--release", "-q"], cwd=ROOT, check=True)
        hotpass = os.path.join(ROOT, "target", "release", "hotpass")
    work = tempfile.mkdtemp(prefix="hotpass-remote-bench-")
    procs = []
    try:
        project = os.path.join(work, "project")
        make_project(project, args.tasks)
        env = {k: v for k, v in os.environ.items()
               if k not in ("CI", "HOTPASS_CACHE_DIR", "HOTPASS_REMOTE_CACHE")}
        env.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                   AWS_REGION="us-east-1")
        # Local only, for reference: cold and no-op.
        local = []
        for _ in range(args.runs):
            for d in ("cache", "out"):
                shutil.rmtree(os.path.join(project, d), ignore_errors=True)
            c, _ = run(hotpass, project, env)
            w, _ = run(hotpass, project, env)
            local.append((c, w))
        print(f"{args.tasks} tasks, medians of {args.runs} runs, milliseconds")
        print(f"{'':28} {'cold':>8} {'remote-warm':>12} {'local-warm':>11}")
        print(f"{'local cache only':28} {statistics.median(c for c, _ in local):8.0f} "
              f"{'-':>12} {statistics.median(w for _, w in local):11.0f}")

        nginx, dav_port, wipe = start_nginx(work)
        procs.append(nginx)
        moto, s3_port, fresh_bucket = start_moto(work)
        procs.append(moto)
        slow_dav = DelayProxy(dav_port, args.latency_ms / 1000)
        slow_s3 = DelayProxy(s3_port, args.latency_ms / 1000)

        def dav(port):
            def url():
                wipe()
                return f"webdav+http://127.0.0.1:{port}/cache"
            return url

        def s3(port):
            def url():
                env["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{port}"
                return f"s3://{fresh_bucket()}/cache"
            return url

        rows = [
            ("WebDAV (nginx)", dav(dav_port)),
            (f"WebDAV +{args.latency_ms:.0f} ms", dav(slow_dav.port)),
            ("S3 (moto)", s3(s3_port)),
            (f"S3 +{args.latency_ms:.0f} ms", s3(slow_s3.port)),
        ]
        for name, url_for in rows:
            c, rw, lw = measure(hotpass, project, url_for, env, args.runs)
            print(f"{name:28} {c:8.0f} {rw:12.0f} {lw:11.0f}", flush=True)
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
