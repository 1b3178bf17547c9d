"""What the reliability scripts share (storm.py, rolling-deploy.py,
netfaults.py, dead-peers.py): commands, free ports, a node's /metrics, and
starting a server that logs a line when it is up."""

import re
import socket
import subprocess
import sys
import threading
import urllib.request


def sh(*args, check=True):
    """Runs a command, its output captured."""
    return subprocess.run(args, check=check, capture_output=True, text=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def scrape(url):
    """The page's samples by series, the `node` label left out."""
    with urllib.request.urlopen(url, timeout=2) as r:
        page = r.read().decode()
    out = {}
    for line in page.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        name, value = line.rsplit(" ", 1)
        name = re.sub(r'node="[^"]*",?', "", name).replace("{}", "")
        out[name] = float(value)
    return out


def spawn(cmd, wait_for):
    """Starts `cmd` and waits for a line of its stderr holding `wait_for`;
    returns the process and that line. The rest of its log is read and
    dropped, so that it never blocks on a full pipe."""
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        if wait_for in line:
            threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
            return proc, line
    sys.exit(f"did not start: {' '.join(cmd)}")


def busiest_second(points):
    """The largest rise per second of a counter over any window of at least
    1 s, from (time, value) points in time order."""
    best = 0.0
    for i, (t0, v0) in enumerate(points):
        for t1, v1 in points[i:]:
            if t1 - t0 >= 1.0:
                best = max(best, (v1 - v0) / (t1 - t0))
                break
    return best
