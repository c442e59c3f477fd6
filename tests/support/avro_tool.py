#!/usr/bin/env python3
"""Independent Avro codec for the end-to-end tests (fastavro, not the proxy's code).

Commands (one JSON document per stdin line, one result per stdout line):
  encode SCHEMA_FILE   JSON -> hex of the Avro binary datum (schemaless, as on the socket)
  decode SCHEMA_FILE   hex -> JSON of the decoded datum
  check SCHEMA_FILE    parse the schema and print its full name and field names

JSON conventions, both ways: a union value names its branch, {"int": 7}, {"string": "x"},
{"bytes": "<base64>"}, {"double": 1.5}, ... (fastavro's tuple notation underneath); a bare
`bytes` field is {"bytes": "<base64>"} too. Decoding cannot tell int from long or float from
double inside a union (Python has one type for each pair), so it prints {"int": n} or
{"double": x} for those; bytes and strings stay distinct.
"""
import base64
import io
import json
import sys

import fastavro


def load(path):
    with open(path) as f:
        return fastavro.parse_schema(json.load(f))


def to_avro(v):
    if isinstance(v, dict) and len(v) == 1:
        (k, inner), = v.items()
        if k == "bytes":
            return ("bytes", base64.b64decode(inner))
        if k in ("string", "int", "long", "double", "float", "null", "array"):
            return (k, to_avro(inner))
    if isinstance(v, dict):
        return {k: to_avro(x) for k, x in v.items()}
    if isinstance(v, list):
        return [to_avro(x) for x in v]
    return v


def from_avro(v):
    if isinstance(v, bytes):
        return {"bytes": base64.b64encode(v).decode("ascii")}
    if isinstance(v, dict):
        return {k: from_avro(x) for k, x in v.items()}
    if isinstance(v, list):
        return [from_avro(x) for x in v]
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, int):
        return {"int": v}
    if isinstance(v, float):
        return {"double": v}
    if isinstance(v, str):
        return {"string": v}
    return v


def main():
    cmd, path = sys.argv[1], sys.argv[2]
    schema = load(path)
    if cmd == "check":
        print(json.dumps({"name": schema["name"], "fields": [f["name"] for f in schema["fields"]]}))
        return
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        if cmd == "encode":
            out = io.BytesIO()
            fastavro.schemaless_writer(out, schema, to_avro(json.loads(line)))
            print(out.getvalue().hex())
        elif cmd == "decode":
            buf = io.BytesIO(bytes.fromhex(line))
            value = fastavro.schemaless_reader(buf, schema)
            left = len(buf.getvalue()) - buf.tell()
            print(json.dumps({"datum": from_avro(value), "trailing_bytes": left}))
        else:
            raise SystemExit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
