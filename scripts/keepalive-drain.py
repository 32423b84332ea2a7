#!/usr/bin/env python3
"""make faults, drain under keep-alive load.

keepalive-drain.py BASE_URL TOKEN SERVER_PID: 32 clients, each on its own
keep-alive connection, alternate GET /api/tasks?limit=20 and POST
/api/tasks; after 3 s this script sends SIGTERM to SERVER_PID and the
clients go on until the server is gone. Every request is timed from the
moment it is written. It prints one line and exits 1 if any request
written before the signal failed (no answer, or not a 2xx). Requests
written after it are counted apart: answered, or refused by the closed
listener, which is what a drain may do to them.
"""
import http.client
import json
import os
import signal
import sys
import threading
import time
import urllib.parse

CLIENTS, SIGNAL_AFTER, RUN_FOR = 32, 3.0, 8.0

base, token, server_pid = sys.argv[1], sys.argv[2], int(sys.argv[3])
host = urllib.parse.urlsplit(base).hostname
port = urllib.parse.urlsplit(base).port
headers = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
body = json.dumps({"title": "keep-alive"})
lock = threading.Lock()
results = []  # (written_at, ok, what)
signalled_at = [None]
stop_at = time.time() + RUN_FOR


def client():
    conn, n = None, 0
    while time.time() < stop_at:
        if conn is None:
            conn = http.client.HTTPConnection(host, port, timeout=10)
            try:
                conn.connect()
            except OSError:
                conn = None
                with lock:
                    results.append((time.time(), None, "refused"))
                time.sleep(0.01)
                continue
        n += 1
        written_at = time.time()
        try:
            if n % 2:
                conn.request("POST", "/api/tasks", body=body, headers=headers)
            else:
                conn.request("GET", "/api/tasks?limit=20", headers=headers)
            res = conn.getresponse()
            res.read()
            ok = 200 <= res.status < 300
            what = str(res.status)
            if res.will_close:
                conn.close()
                conn = None
        except (OSError, http.client.HTTPException) as e:
            ok, what = False, type(e).__name__
            conn.close()
            conn = None
        with lock:
            results.append((written_at, ok, what))


threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
for t in threads:
    t.start()
time.sleep(SIGNAL_AFTER)
signalled_at[0] = time.time()
os.kill(server_pid, signal.SIGTERM)
for t in threads:
    t.join()

t0 = signalled_at[0]
before = [r for r in results if r[1] is not None and r[0] < t0]
after = [r for r in results if r[1] is not None and r[0] >= t0]
failed_before = [r for r in before if not r[1]]
failed_after = [r for r in after if not r[1]]
refused = sum(1 for r in results if r[1] is None)
print("written before SIGTERM: %d, failed %d; after: %d answered, %d failed on a closing connection, %d connects refused"
      % (len(before), len(failed_before), len(after) - len(failed_after), len(failed_after), refused))
for r in failed_before[:5]:
    print("  failed: written %.1f ms before SIGTERM: %s" % ((t0 - r[0]) * 1000, r[2]), file=sys.stderr)
sys.exit(1 if failed_before else 0)
