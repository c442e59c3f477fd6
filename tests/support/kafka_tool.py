#!/usr/bin/env python3
"""An independent Kafka client for the end-to-end tests (confluent-kafka, not the proxy's code).

Commands (all print JSON on stdout):
  create TOPIC PARTITIONS [CONFIG=VALUE ...]   create a topic
  produce TOPIC                                 records from stdin, one JSON per line:
      {"key": <typed>, "value": <typed>, "headers": [[k, v]], "partition": n}
      (a header key k may be {"base64": b}: raw bytes, such as a key that is not UTF-8)
      where <typed> is null or {"format": f, "value": v}, encoded the way Kafka's Java
      serializers do (big-endian) -- independently of the proxy's codecs.
  consume TOPIC N [TIMEOUT_S] [KEY_FORMAT] [VALUE_FORMAT]
      read N records from the beginning (no group commits); decode keys and values with the
      given formats (or 'raw' for base64) and print one JSON line per record
  committed GROUP TOPIC                         the group's committed offsets
  group-members GROUP                           the group's members: client id and assigned partitions
  commit GROUP TOPIC PARTITION=OFFSET ...       commit offsets for a group (as a member-less client)
  topic-config TOPIC                            partition count and the topic's non-default configs
  version                                       client library versions and the broker's
  scram-user NAME PASSWORD                      create (or reset) a SCRAM-SHA-512 user that may do
                                                everything (ACLs on every topic, group, transactional
                                                id and the cluster)
  scram-delete NAME                             delete the user's SCRAM credential (it can no longer log in)
  acl-delete NAME                               delete the ACLs scram-user granted the user
"""
import base64
import json
import os
import struct
import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

BOOT = os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092")


def encode(typed):
    if typed is None:
        return None
    f, v = typed["format"].lower(), typed["value"]
    if v is None:
        return None
    if f == "string":
        return v.encode("utf-8")
    if f == "json":
        return json.dumps(v, separators=(",", ":")).encode("utf-8")
    if f == "int":
        return struct.pack(">i", v)
    if f == "short":
        return struct.pack(">h", v)
    if f == "long":
        return struct.pack(">q", v)
    if f == "double":
        return struct.pack(">d", v)
    if f == "float":
        return struct.pack(">f", v)
    if f in ("bytearray", "byte_array", "avro", "raw"):
        return base64.b64decode(v)
    raise SystemExit(f"unknown format {f}")


def decode(f, b):
    if b is None:
        return None
    f = f.lower()
    if f == "string":
        return b.decode("utf-8")
    if f == "json":
        return json.loads(b.decode("utf-8"))
    if f == "int":
        return struct.unpack(">i", b)[0]
    if f == "short":
        return struct.unpack(">h", b)[0]
    if f == "long":
        return struct.unpack(">q", b)[0]
    if f == "double":
        return struct.unpack(">d", b)[0]
    if f == "float":
        return struct.unpack(">f", b)[0]
    return base64.b64encode(b).decode("ascii")


def create(topic, partitions, *configs):
    admin = AdminClient({"bootstrap.servers": BOOT})
    cfg = dict(c.split("=", 1) for c in configs)
    fut = admin.create_topics([NewTopic(topic, int(partitions), 1, config=cfg)], operation_timeout=30)
    for f in fut.values():
        f.result()
    print(json.dumps({"created": topic}))


def delete_topics(pattern):
    """Deletes every topic whose name matches the regular expression (test leftovers)."""
    import re
    admin = AdminClient({"bootstrap.servers": BOOT})
    names = [t for t in admin.list_topics(timeout=10).topics if re.search(pattern, t)]
    if names:
        for f in admin.delete_topics(names, operation_timeout=30).values():
            try:
                f.result()
            except Exception as e:  # already gone: fine
                print(json.dumps({"error": str(e)}), file=sys.stderr)
    print(json.dumps({"deleted": len(names)}))


def produce(topic):
    p = Producer({"bootstrap.servers": BOOT, "linger.ms": 5, "acks": "all"})
    errors = []
    count = 0
    for line in sys.stdin:
        if not line.strip():
            continue
        r = json.loads(line)
        kw = {}
        if r.get("partition") is not None:
            kw["partition"] = r["partition"]
        # A header key may be {"base64": "..."}: raw bytes, e.g. a key that is not UTF-8.
        headers = [(base64.b64decode(k["base64"]) if isinstance(k, dict) else k, v.encode() if v is not None else None)
                   for k, v in r.get("headers", [])]
        p.produce(topic, key=encode(r.get("key")), value=encode(r.get("value")), headers=headers or None,
                  on_delivery=lambda e, m: e and errors.append(str(e)), **kw)
        count += 1
        p.poll(0)
    left = p.flush(30)
    print(json.dumps({"produced": count, "errors": errors, "unflushed": left}))
    if errors or left:
        sys.exit(1)


def consume(topic, n, timeout=30, key_format="raw", value_format="raw"):
    n, timeout = int(n), float(timeout)
    # KAFKA_TOOL_ISOLATION=read_committed reads as an exactly-once consumer would.
    c = Consumer({"bootstrap.servers": BOOT, "group.id": f"kafka-tool-{os.getpid()}-{time.time()}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "isolation.level": os.environ.get("KAFKA_TOOL_ISOLATION", "read_uncommitted")})
    c.subscribe([topic])
    got = []
    deadline = time.time() + timeout
    while len(got) < n and time.time() < deadline:
        for m in c.consume(min(1000, n - len(got)), 0.5):
            if m.error():
                print(json.dumps({"error": str(m.error())}), file=sys.stderr)
                continue
            try:
                headers = [[k, v.decode() if v is not None else None] for k, v in (m.headers() or [])]
            except (UnicodeDecodeError, SystemError) as e:  # confluent-kafka decodes header keys as UTF-8
                headers = {"undecodable": str(e.__cause__ or e)}
            got.append({
                "partition": m.partition(), "offset": m.offset(), "timestamp": m.timestamp()[1],
                "key": decode(key_format, m.key()), "value": decode(value_format, m.value()),
                "headers": headers,
            })
    c.close()
    got.sort(key=lambda r: (r["partition"], r["offset"]))
    for r in got:
        print(json.dumps(r))


def committed(group, topic):
    c = Consumer({"bootstrap.servers": BOOT, "group.id": group})
    md = c.list_topics(topic, timeout=10)
    parts = [TopicPartition(topic, p) for p in md.topics[topic].partitions]
    print(json.dumps({str(tp.partition): tp.offset for tp in c.committed(parts, timeout=10)}))
    c.close()


def group_members(group):
    admin = AdminClient({"bootstrap.servers": BOOT})
    desc = admin.describe_consumer_groups([group])[group].result(timeout=10)
    print(json.dumps([{"client_id": m.client_id,
                       "partitions": [[tp.topic, tp.partition] for tp in (m.assignment.topic_partitions if m.assignment else [])]}
                      for m in desc.members]))


def commit(group, topic, *assignments):
    c = Consumer({"bootstrap.servers": BOOT, "group.id": group, "enable.auto.commit": False})
    offsets = [TopicPartition(topic, int(p), int(o)) for p, o in (a.split("=", 1) for a in assignments)]
    done = c.commit(offsets=offsets, asynchronous=False)
    print(json.dumps({str(tp.partition): tp.offset for tp in done}))
    c.close()


def topic_config(topic):
    from confluent_kafka.admin import ConfigResource
    admin = AdminClient({"bootstrap.servers": BOOT})
    md = admin.list_topics(topic, timeout=10)
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    configs = admin.describe_configs([res])[res].result(timeout=10)
    print(json.dumps({"partitions": len(md.topics[topic].partitions),
                      "replicas": len(md.topics[topic].partitions[0].replicas),
                      "configs": {k: v.value for k, v in configs.items() if not v.is_default}}))


def _user_acls(name):
    from confluent_kafka.admin import (AclBinding, AclOperation, AclPermissionType, ResourcePatternType,
                                       ResourceType)
    any_ = (AclOperation.ALL, AclPermissionType.ALLOW)
    return [AclBinding(t, n, ResourcePatternType.LITERAL, f"User:{name}", "*", *any_)
            for t, n in ((ResourceType.TOPIC, "*"), (ResourceType.GROUP, "*"),
                         (ResourceType.TRANSACTIONAL_ID, "*"), (ResourceType.BROKER, "kafka-cluster"))]


def scram_user(name, password):
    from confluent_kafka.admin import ScramCredentialInfo, ScramMechanism, UserScramCredentialUpsertion
    admin = AdminClient({"bootstrap.servers": BOOT})
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096)
    for f in admin.alter_user_scram_credentials(
            [UserScramCredentialUpsertion(name, info, password.encode())]).values():
        f.result(timeout=30)
    for f in admin.create_acls(_user_acls(name)).values():
        f.result(timeout=30)
    print(json.dumps({"user": name}))


def scram_delete(name):
    from confluent_kafka.admin import ScramMechanism, UserScramCredentialDeletion
    admin = AdminClient({"bootstrap.servers": BOOT})
    for f in admin.alter_user_scram_credentials(
            [UserScramCredentialDeletion(name, ScramMechanism.SCRAM_SHA_512)]).values():
        f.result(timeout=30)
    print(json.dumps({"deleted": name}))


def acl_delete(name):
    from confluent_kafka.admin import (AclBindingFilter, AclOperation, AclPermissionType, ResourcePatternType,
                                       ResourceType)
    admin = AdminClient({"bootstrap.servers": BOOT})
    flt = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, f"User:{name}", None,
                           AclOperation.ANY, AclPermissionType.ANY)
    for f in admin.delete_acls([flt]).values():
        f.result(timeout=30)
    print(json.dumps({"acls_deleted": name}))


def version():
    import confluent_kafka
    admin = AdminClient({"bootstrap.servers": BOOT})
    md = admin.list_topics(timeout=10)
    print(json.dumps({"confluent_kafka": confluent_kafka.version()[0], "librdkafka": confluent_kafka.libversion()[0],
                      "brokers": [f"{b.host}:{b.port}" for b in md.brokers.values()], "cluster_id": md.cluster_id}))


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"create": create, "produce": produce, "consume": consume, "committed": committed, "commit": commit, "group-members": group_members,
     "topic-config": topic_config, "version": version, "delete-topics": delete_topics,
     "scram-user": scram_user, "scram-delete": scram_delete, "acl-delete": acl_delete}[cmd](*args)
