#!/usr/bin/env python3
"""A Server-Sent Events reader over raw HTTP (Python's http.client, no SSE library), for the
end-to-end tests of GET /sse/out.

  sse_client.py URL N TIMEOUT_S [LAST_EVENT_ID] [HEADER=VALUE ...]

Prints one JSON line for the response ({"status", "headers"}; with "body" when it is not 200),
then one per event ({"id", "event", "data"}) and per comment ({"comment"}), until N events
(comments not counted), the end of the stream or TIMEOUT_S; then closes the connection.
"""
import http.client
import json
import socket
import sys
import time
import urllib.parse


def main():
    url, n, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    last = sys.argv[4] if len(sys.argv) > 4 else ""
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    headers = {"Accept": "text/event-stream"}
    if last:
        headers["Last-Event-ID"] = last
    for h in sys.argv[5:]:
        k, v = h.split("=", 1)
        headers[k] = v
    conn.request("GET", u.path + ("?" + u.query if u.query else ""), headers=headers)
    r = conn.getresponse()
    head = {"status": r.status, "headers": {k.lower(): v for k, v in r.getheaders()}}
    if r.status != 200:
        head["body"] = r.read().decode()
        print(json.dumps(head), flush=True)
        return
    print(json.dumps(head), flush=True)
    deadline = time.time() + timeout
    events, event = 0, {}
    while events < n:
        left = deadline - time.time()
        if left <= 0:
            break
        conn.sock.settimeout(left)
        try:
            line = r.readline()
        except (socket.timeout, TimeoutError):
            break
        if not line:
            break
        line = line.decode("utf-8").rstrip("\r\n")
        if line == "":
            if "data" in event:
                print(json.dumps(event), flush=True)
                events += 1
            event = {}
        elif line.startswith(":"):
            print(json.dumps({"comment": line[1:].strip()}), flush=True)
        else:
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "data":
                event["data"] = event["data"] + "\n" + value if "data" in event else value
            else:
                event[field] = value
    conn.close()


main()
