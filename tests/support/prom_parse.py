#!/usr/bin/env python3
"""Parses Prometheus text exposition from stdin with the reference parser (prometheus_client)
and prints every sample as a JSON line: {"name", "labels", "value"}. A parse error exits 1."""
import json
import sys

from prometheus_client.parser import text_string_to_metric_families

for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        print(json.dumps({"name": s.name, "labels": s.labels, "value": s.value, "type": family.type}))
