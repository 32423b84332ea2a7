#!/usr/bin/env python3
"""make faults, one per-user limit for the whole fleet.

rate-burst.py BASE_URL TOKEN SECONDS: 8 keep-alive clients, all one user,
send GET /api/tasks?limit=1 as fast as they can for SECONDS, spread by the
balancer over every instance. Prints "answered: N 2xx, M 429" and checks
every 429 is the contract's JSON with Retry-After; exits 1 on any other
status or a malformed 429.
"""
import http.client
import json
import sys
import threading
import time
import urllib.parse

base, token, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
host, port = urllib.parse.urlsplit(base).hostname, urllib.parse.urlsplit(base).port
lock = threading.Lock()
counts = {"2xx": 0, "429": 0, "other": 0}
stop_at = time.time() + seconds


def client():
    conn = http.client.HTTPConnection(host, port, timeout=10)
    while time.time() < stop_at:
        conn.request("GET", "/api/tasks?limit=1", headers={"Authorization": "Bearer " + token})
        res = conn.getresponse()
        body = res.read()
        kind = "other"
        if 200 <= res.status < 300:
            kind = "2xx"
        elif res.status == 429:
            try:
                ok = json.loads(body)["error_code"] == "RATE_LIMITED" and res.getheader("Retry-After")
            except ValueError:
                ok = False
            kind = "429" if ok else "other"
        with lock:
            counts[kind] += 1
        if res.will_close:
            conn.close()
            conn = http.client.HTTPConnection(host, port, timeout=10)


threads = [threading.Thread(target=client) for _ in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("answered: %d 2xx, %d 429, %d other" % (counts["2xx"], counts["429"], counts["other"]))
sys.exit(1 if counts["other"] else 0)
