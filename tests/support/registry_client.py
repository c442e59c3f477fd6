#!/usr/bin/env python3
"""An independent schema-registry client for the end-to-end tests: Confluent's wire format
(magic byte 0, 4-byte big-endian schema id, Avro binary) written and read with fastavro, schemas
registered and looked up over the registry's REST API, records produced and consumed with
confluent-kafka. None of the proxy's code.

Registry from SCHEMA_REGISTRY_URL (default: scripts/registry's Apicurio Registry), with Basic
auth when SCHEMA_REGISTRY_USER_INFO (user:password) is set; Kafka from KAFKA_BOOTSTRAP.

Commands (one JSON datum per stdin line; see avro_tool.py for the union notation):
  encode SUBJECT SCHEMA_FILE     register the schema, print {"id", "hex"} of each framed datum
  decode                         stdin: hex of framed data; print {"id", "datum"} each
  produce TOPIC SUBJECT SCHEMA_FILE   register, frame and produce each datum as a record value
  consume TOPIC N [TIMEOUT_S]    read N values from the beginning, print {"offset", "id", "datum"}
"""
import base64
import io
import json
import os
import struct
import sys
import time
import urllib.error
import urllib.request

import fastavro
from confluent_kafka import Consumer, Producer

sys.path.insert(0, os.path.dirname(__file__))
from avro_tool import from_avro, to_avro  # noqa: E402

URL = os.environ.get("SCHEMA_REGISTRY_URL", "http://127.0.0.1:8081/apis/ccompat/v6").rstrip("/")
USER_INFO = os.environ.get("SCHEMA_REGISTRY_USER_INFO", "")
BOOT = os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092")
SCHEMAS = {}


def call(method, path, body=None):
    req = urllib.request.Request(URL + path, method=method,
                                 data=json.dumps(body).encode() if body is not None else None)
    req.add_header("Content-Type", "application/vnd.schemaregistry.v1+json")
    if USER_INFO:
        req.add_header("Authorization", "Basic " + base64.b64encode(USER_INFO.encode()).decode())
    # Apicurio 2.1's in-memory storage answers 500 now and then when tests register schemas at
    # the same time (a race in the registry, not the proxy): retry server errors a few times.
    for attempt in range(6):
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as e:
            if e.code < 500 or attempt == 5:
                raise
            time.sleep(0.2 * (attempt + 1))


def register(subject, schema_file):
    with open(schema_file) as f:
        text = f.read()
    sid = call("POST", f"/subjects/{subject}/versions", {"schema": text})["id"]
    return sid, fastavro.parse_schema(json.loads(text))


def schema_by_id(sid):
    if sid not in SCHEMAS:
        SCHEMAS[sid] = fastavro.parse_schema(json.loads(call("GET", f"/schemas/ids/{sid}")["schema"]))
    return SCHEMAS[sid]


def frame(sid, schema, datum):
    out = io.BytesIO()
    out.write(struct.pack(">bI", 0, sid))
    fastavro.schemaless_writer(out, schema, to_avro(datum))
    return out.getvalue()


def unframe(data):
    magic, sid = struct.unpack(">bI", data[:5])
    if magic != 0:
        raise SystemExit(f"magic byte {magic}")
    buf = io.BytesIO(data[5:])
    datum = fastavro.schemaless_reader(buf, schema_by_id(sid))
    if buf.tell() != len(data) - 5:
        raise SystemExit("trailing bytes after the datum")
    return sid, from_avro(datum)


def lines():
    return [json.loads(line) for line in sys.stdin if line.strip()]


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "encode":
        sid, schema = register(args[0], args[1])
        for d in lines():
            print(json.dumps({"id": sid, "hex": frame(sid, schema, d).hex()}))
    elif cmd == "decode":
        for line in sys.stdin:
            if line.strip():
                sid, datum = unframe(bytes.fromhex(line.strip()))
                print(json.dumps({"id": sid, "datum": datum}))
    elif cmd == "produce":
        topic, subject, schema_file = args
        sid, schema = register(subject, schema_file)
        p = Producer({"bootstrap.servers": BOOT, "acks": "all"})
        errors = []
        for d in lines():
            p.produce(topic, value=frame(sid, schema, d), on_delivery=lambda e, m: e and errors.append(str(e)))
        left = p.flush(30)
        print(json.dumps({"id": sid, "errors": errors, "unflushed": left}))
        if errors or left:
            sys.exit(1)
    elif cmd == "consume":
        topic, n = args[0], int(args[1])
        timeout = float(args[2]) if len(args) > 2 else 30
        c = Consumer({"bootstrap.servers": BOOT, "group.id": f"registry-client-{os.getpid()}-{time.time()}",
                      "auto.offset.reset": "earliest", "enable.auto.commit": False})
        c.subscribe([topic])
        got, deadline = [], time.time() + timeout
        while len(got) < n and time.time() < deadline:
            for m in c.consume(n - len(got), 0.5):
                if m.error():
                    continue
                sid, datum = unframe(m.value())
                got.append({"offset": m.offset(), "id": sid, "datum": datum})
        c.close()
        for r in sorted(got, key=lambda r: r["offset"]):
            print(json.dumps(r))
    else:
        raise SystemExit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
