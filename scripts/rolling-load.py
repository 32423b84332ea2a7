#!/usr/bin/env python3
"""make faults, rolling restart: keep-alive load through a load balancer.

rolling-load.py BASE_URL TOKENS_FILE STOP_FILE CREATED_FILE: one client per
token (one user each), each on its own keep-alive connection, cycles
through a create, a list, a get and an update of its own tasks, at most
PER_SECOND requests a second each (under the fleet's per-user limit in
deploy/haproxy.cfg), until STOP_FILE exists. Every acknowledged write (a 201 create, a 200 update) is
written to CREATED_FILE in the order it was answered, as tab-separated
"seq user_index id title": the last line of each id is what the database
must hold. It prints one line of counts and exits 1 if any
request failed: no answer, or not the 2xx it asked for.
"""
import http.client
import json
import os
import sys
import threading
import time
import urllib.parse

base, tokens_file, stop_file, created_file = sys.argv[1:5]
host = urllib.parse.urlsplit(base).hostname
port = urllib.parse.urlsplit(base).port
tokens = [line.strip() for line in open(tokens_file) if line.strip()]
PER_SECOND = 30
lock = threading.Lock()
counts = {"requests": 0, "failed": 0}
failures = []
created = []


def client(index, token):
    headers = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
    conn, n, mine = None, 0, []
    next_at = time.time()
    while not os.path.exists(stop_file):
        next_at += 1.0 / PER_SECOND
        time.sleep(max(0.0, next_at - time.time()))
        if conn is None:
            conn = http.client.HTTPConnection(host, port, timeout=10)
        n += 1
        step = n % 4
        if step == 1 or not mine:
            title = "rolling %d-%d" % (index, n)
            method, path, body, want = "POST", "/api/tasks", json.dumps({"title": title}), 201
        elif step == 2:
            method, path, body, want = "GET", "/api/tasks?limit=20", None, 200
        elif step == 3:
            method, path, body, want = "GET", "/api/tasks/%d" % mine[-1], None, 200
        else:
            method, path, body, want = "PUT", "/api/tasks/%d" % mine[-1], json.dumps({"title": "updated %d" % n}), 200
        try:
            conn.request(method, path, body=body, headers=headers)
            res = conn.getresponse()
            data = res.read()
            ok = res.status == want
            what = "%s %s: %d %s" % (method, path, res.status, data[:200])
            if ok and method == "POST":
                task_id = json.loads(data)["id"]
                mine.append(task_id)
                with lock:
                    created.append((index, task_id, title))
            if ok and method == "PUT":
                with lock:
                    created.append((index, mine[-1], json.loads(body)["title"]))
            if res.will_close:
                conn.close()
                conn = None
        except (OSError, http.client.HTTPException) as e:
            ok, what = False, "%s %s: %r" % (method, path, e)
            conn.close()
            conn = None
        with lock:
            counts["requests"] += 1
            if not ok:
                counts["failed"] += 1
                failures.append(what)


threads = [threading.Thread(target=client, args=(i, t)) for i, t in enumerate(tokens)]
for t in threads:
    t.start()
for t in threads:
    t.join()
with open(created_file, "w") as f:
    for seq, (index, task_id, title) in enumerate(created):
        f.write("%d\t%d\t%d\t%s\n" % (seq, index, task_id, title))
print("requests: %d, failed: %d, creates and updates acknowledged: %d" % (counts["requests"], counts["failed"], len(created)))
for what in failures[:10]:
    print("  failed: " + what)
sys.exit(1 if counts["failed"] else 0)
