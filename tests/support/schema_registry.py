#!/usr/bin/env python3
"""A small Confluent-compatible schema registry with HTTP Basic auth, written for one test.

The tests' registry is Apicurio Registry (scripts/registry), whose 2.1 line authenticates with
OpenID Connect only; this one checks that the proxy sends WSPROXY_SCHEMA_BASIC_AUTH_* and handles
a refusal (crates/proxy/tests/registry.rs starts it on a free port). It speaks the subset of Confluent's REST API that serializers and the proxy use, with
Confluent's status codes and error bodies, and checks schemas with fastavro:

  GET  /                                  {}
  GET  /subjects                          ["s", ...]
  POST /subjects/{s}/versions             {"schema": "...", "schemaType"?: "AVRO"} -> {"id": n}
  POST /subjects/{s}                      lookup -> {"subject", "id", "version", "schema"}
  GET  /subjects/{s}/versions             [1, 2, ...]
  GET  /subjects/{s}/versions/{v|latest}  {"subject", "id", "version", "schema"}
  GET  /schemas/ids/{id}                  {"schema": "..."}

Identical schemas (same parsed JSON) get the same id, in any subject. Schemas are kept in a
JSON file (--data) so ids survive a restart. With --user-info user:password (or the env
REGISTRY_USER_INFO), every request needs that HTTP Basic auth (401 otherwise).
"""
import argparse
import base64
import json
import os
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

import fastavro

LOCK = threading.Lock()
STATE = {"schemas": [], "subjects": {}}  # schemas[id-1] = text; subjects[s] = [id of v1, v2, ...]
DATA = None
AUTH = None


def save():
    if DATA:
        tmp = DATA + ".tmp"
        with open(tmp, "w") as f:
            json.dump(STATE, f)
        os.replace(tmp, DATA)


def canonical(text):
    return json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet; the script's log gets one line per request
        print("%s %s" % (self.command, self.path), flush=True)

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def error(self, status, code, message):
        self.reply(status, {"error_code": code, "message": message})

    def authorized(self):
        if not AUTH:
            return True
        expected = "Basic " + base64.b64encode(AUTH.encode()).decode()
        if self.headers.get("Authorization") == expected:
            return True
        self.error(401, 401, "Unauthorized")
        return False

    def read_body(self):
        # Every request's body is read before any answer (one handler serves all the requests
        # of a kept-alive connection): a body left unread would be parsed as the next request
        # line, a 400 for the client's next request on that connection.
        n = int(self.headers.get("Content-Length") or 0)
        self._raw = self.rfile.read(n) if n else b""

    def body(self):
        return json.loads(self._raw) if self._raw else {}

    def do_GET(self):
        self.read_body()
        if not self.authorized():
            return
        path = unquote(urlsplit(self.path).path).rstrip("/")
        with LOCK:
            if path == "":
                return self.reply(200, {})
            if path == "/subjects":
                return self.reply(200, sorted(STATE["subjects"]))
            m = re.fullmatch(r"/schemas/ids/(\d+)", path)
            if m:
                i = int(m.group(1))
                if 1 <= i <= len(STATE["schemas"]):
                    return self.reply(200, {"schema": STATE["schemas"][i - 1]})
                return self.error(404, 40403, f"Schema {i} not found")
            m = re.fullmatch(r"/subjects/([^/]+)/versions", path)
            if m:
                ids = STATE["subjects"].get(m.group(1))
                if ids is None:
                    return self.error(404, 40401, f"Subject '{m.group(1)}' not found.")
                return self.reply(200, list(range(1, len(ids) + 1)))
            m = re.fullmatch(r"/subjects/([^/]+)/versions/([^/]+)", path)
            if m:
                subject, v = m.groups()
                ids = STATE["subjects"].get(subject)
                if ids is None:
                    return self.error(404, 40401, f"Subject '{subject}' not found.")
                n = len(ids) if v in ("latest", "-1") else int(v) if v.isdigit() else 0
                if not 1 <= n <= len(ids):
                    return self.error(404, 40402, f"Version {v} not found.")
                i = ids[n - 1]
                return self.reply(200, {"subject": subject, "id": i, "version": n, "schema": STATE["schemas"][i - 1]})
        self.error(404, 404, "HTTP 404 Not Found")

    def do_POST(self):
        self.read_body()
        if not self.authorized():
            return
        path = unquote(urlsplit(self.path).path).rstrip("/")
        m = re.fullmatch(r"/subjects/([^/]+)(/versions)?", path)
        if not m:
            return self.error(404, 404, "HTTP 404 Not Found")
        subject, register = m.group(1), bool(m.group(2))
        try:
            req = self.body()
            text = req["schema"]
            if req.get("schemaType", "AVRO").upper() != "AVRO":
                return self.error(422, 42201, "Only AVRO schemas are supported by this test registry")
            fastavro.parse_schema(json.loads(text))
            key = canonical(text)
        except Exception as e:  # noqa: BLE001 - any parse problem is the client's
            return self.error(422, 42201, f"Invalid schema: {e}")
        with LOCK:
            canon = [canonical(s) for s in STATE["schemas"]]
            i = canon.index(key) + 1 if key in canon else None
            ids = STATE["subjects"].get(subject, [])
            if not register:
                if i is None or i not in ids:
                    return self.error(404, 40403, "Schema not found")
                return self.reply(200, {"subject": subject, "id": i, "version": ids.index(i) + 1, "schema": text})
            if i is None:
                STATE["schemas"].append(text)
                i = len(STATE["schemas"])
            if i not in ids:
                STATE["subjects"].setdefault(subject, []).append(i)
                save()
        self.reply(200, {"id": i})


def main():
    global DATA, AUTH
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8081)
    ap.add_argument("--data", default=None)
    ap.add_argument("--user-info", default=os.environ.get("REGISTRY_USER_INFO"))
    a = ap.parse_args()
    DATA, AUTH = a.data, a.user_info
    if DATA and os.path.exists(DATA):
        with open(DATA) as f:
            STATE.update(json.load(f))
    server = ThreadingHTTPServer((a.host, a.port), Handler)
    server.daemon_threads = True
    print(f"schema registry listening on http://{a.host}:{a.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
