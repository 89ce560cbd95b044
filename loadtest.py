"""Load on the demo: concurrent clients against `main.py --demo` on 127.0.0.1, the figures an operator
sizes a machine by. bench.py's --demo_clients runs it; from Python, call `load_table`.

Starts the demo as an operator would (main.py --demo, a process of its own, its temporary files in a
folder of this module's), then for each number of clients runs that many gradio_client clients at
once for the given seconds, each asking again and again for the page's first grid (every digit,
images_per_digit of each) with a seed never asked before. Prints a table: requests answered per
second, latency p50/p95 (the request and the download of the PNG it links), errors and the first
one's message, the files the demo holds after the level, and the server's resident memory after
it (beside its memory before the first request).

Without an export it serves an untrained export of the default MNIST model: drawing takes as long
with any weights.
"""
import itertools
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import numpy as np

from utils import cpu_model

ROOT = os.path.dirname(os.path.abspath(__file__))


def untrained_export(folder):
    """An export of the default conditional MNIST model, untrained, in folder/1."""
    import keras
    from model import DCGAN
    from serving import export_savedmodel
    keras.utils.set_random_seed(0)
    return export_savedmodel(DCGAN(), os.path.join(folder, "1"), step=1)


def start_demo(export, port, folder):
    """main.py --demo serving export, its scratch files and Gradio's under folder; returns once it serves."""
    env = dict(os.environ, TMPDIR=folder, GRADIO_TEMP_DIR=os.path.join(folder, "gradio"), PYTHONUNBUFFERED="1")
    server = subprocess.Popen([sys.executable, os.path.join(ROOT, "main.py"), "--demo", f"--from_savedmodel={export}",
                               f"--demo_port={port}"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env=env)
    lines = []
    for line in server.stdout:  # ends if the server dies
        lines.append(line)
        if "running on" in line:
            # Keep reading its output, or a full pipe would stall it.
            threading.Thread(target=server.stdout.read, daemon=True).start()
            return server
    raise SystemExit("Error: the demo did not start:\n" + "".join(lines[-5:]))


def resident_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        fields = dict(line.split(":", 1) for line in f)
    return int(fields["VmRSS"].split()[0]) / 1024


def files_under(folder):
    return sum(len(files) for _, _, files in os.walk(folder))


def drive(url, clients, seconds, digits, n, seeds, downloads):
    """Latencies (s) of the requests answered and the messages of those that failed, over seconds."""
    from gradio_client import Client
    latencies, errors = [], []
    end = time.monotonic() + seconds

    def client(index):
        c = Client(url, verbose=False, download_files=os.path.join(downloads, str(index)))
        while time.monotonic() < end:
            start = time.monotonic()
            try:
                c.predict(digits, n, next(seeds), api_name="/generate")
                latencies.append(time.monotonic() - start)
            except Exception as e:  # every kind a visitor could see is counted, not raised
                errors.append(str(e).splitlines()[0] if str(e) else type(e).__name__)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, errors


def load_table(export, levels, seconds, images_per_digit, port):
    """Prints the table for each number of clients in levels; export: a version folder, or "" for an untrained one."""
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per HTTP request otherwise
    with tempfile.TemporaryDirectory(prefix="dcgan_loadtest_") as folder:
        export = export or untrained_export(os.path.join(folder, "export"))
        demo_files = os.path.join(folder, "demo")
        os.makedirs(demo_files)
        server = start_demo(export, port, demo_files)
        url = f"http://127.0.0.1:{port}/"
        try:
            print(f"Demo of {export} on {url}; {cpu_model()}, {os.cpu_count()} CPUs; "
                  f"{images_per_digit} images of each digit per request, {seconds:g} s per level.")
            print(f"Server memory before the first request: {resident_mb(server.pid):.0f} MB\n")
            print("| clients | requests | requests/s | p50 s | p95 s | errors | files held after | server MB after |")
            print("| --- | --- | --- | --- | --- | --- | --- | --- |")
            seeds = itertools.count()  # next() is atomic: every request's seed is new
            for clients in levels:
                latencies, errors = drive(url, clients, seconds, [str(d) for d in range(10)], images_per_digit, seeds,
                                          os.path.join(folder, "downloads"))
                p50, p95 = np.percentile(latencies, [50, 95]) if latencies else (float("nan"),) * 2
                print(f"| {clients} | {len(latencies)} | {len(latencies) / seconds:.2f} | {p50:.2f} | {p95:.2f} "
                      f"| {len(errors)}{' (' + errors[0] + ')' if errors else ''} | {files_under(demo_files)} "
                      f"| {resident_mb(server.pid):.0f} |", flush=True)
        finally:
            server.terminate()
            server.wait(timeout=60)
