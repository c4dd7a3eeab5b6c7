#!/usr/bin/env python3
"""Derives crates/apiserver/src/protobuf/schema.json: for every message of the served API groups,
its fields as (tag, JSON name, wire kind, message type, cardinality).

Field numbers and types come from the k8s-pb crate's generated prost code, JSON names from the
k8s-openapi crate's serde code (both Apache-2.0, both in the local cargo registry). Run:
    python3 tools/gen_protobuf_schema.py <k8s-pb src dir> <k8s-openapi src/v1_33 dir> > src/protobuf/schema.json
"""
import json
import os
import re
import sys

PACKAGES = [
    "apimachinery/pkg/apis/meta/v1", "apimachinery/pkg/api/resource", "apimachinery/pkg/util/intstr",
    "apimachinery/pkg/runtime", "api/core/v1", "api/apps/v1", "api/batch/v1", "api/coordination/v1",
    "api/discovery/v1", "api/events/v1", "api/networking/v1", "api/policy/v1", "api/rbac/v1",
    "api/storage/v1", "api/scheduling/v1", "api/autoscaling/v1", "api/authentication/v1",
    "api/authorization/v1",
]

FIELD_ATTR = re.compile(r'#\[prost\((?P<kind>[a-z0-9_]+)(?: = "(?P<mapspec>[^"]+)")?(?:, (?P<card>optional|repeated|required))?(?:, [a-z_]+ = "[^"]*")*, tag = "(?P<tag>\d+)"\)\]')
FIELD_DECL = re.compile(r'pub (?P<name>r#\w+|\w+): (?P<ty>.+),$')
STRUCT = re.compile(r'^pub struct (\w+) \{')


def resolve(pkg, ty):
    """`super::super::x::y::Name` relative to `pkg` -> `x/y.Name` (or the package's own)."""
    m = re.search(r'((?:super::)*)((?:\w+::)*)(\w+)>*$', re.sub(r',\s*>', '>', ty).replace(' ', ''))
    ups, path, name = m.group(1).count('super::'), m.group(2), m.group(3)
    base = pkg.split('/')
    if ups:
        base = base[:-ups]
    full = base + [p for p in path.split('::') if p]
    return '/'.join(full) + '.' + name


def parse_pkg(src, pkg):
    path = os.path.join(src, pkg, 'mod.rs')
    messages = {}
    cur = None
    attr = None
    pending = ''
    for line in open(path):
        line = line.strip()
        if pending or (attr is not None and line.startswith('pub ') and not line.endswith(',')):
            pending += (' ' if pending else '') + line
            if not (pending.endswith(',') and pending.count('<') == pending.count('>')):
                continue
            line, pending = pending, ''
        if line.startswith('//'):
            continue
        m = STRUCT.match(line)
        if m:
            cur = messages.setdefault(m.group(1), [])
            continue
        if line == '}':
            cur = None
            continue
        m = FIELD_ATTR.match(line)
        if m and cur is not None:
            attr = m
            continue
        m = FIELD_DECL.match(line)
        if m and attr is not None and cur is not None:
            kind = attr.group('kind')
            card = attr.group('card') or 'optional'
            ref = ''
            if kind in ('map', 'btree_map', 'hash_map'):
                k, v = [x.strip() for x in attr.group('mapspec').split(',')]
                kind = 'map:' + v
                if v == 'message':
                    ref = resolve(pkg, re.sub(r',\s*>', '>', m.group('ty')).rsplit(',', 1)[1])
                card = 'map'
            elif kind == 'message':
                ref = resolve(pkg, m.group('ty'))
            cur.append([int(attr.group('tag')), m.group('name').removeprefix('r#'), kind, ref, card])
            attr = None
    return messages


KEY = re.compile(r'"(?P<json>[^"]+)" => Field::Key_(?P<snake>\w+),')


def json_names(openapi, pkg):
    """{lower-case type name: {snake: json}} from k8s-openapi's deserializers."""
    d = os.path.join(openapi, pkg)
    out = {}
    if not os.path.isdir(d):
        return out
    for f in os.listdir(d):
        if not f.endswith('.rs'):
            continue
        text = open(os.path.join(d, f)).read()
        m = re.search(r'pub struct (\w+)', text)
        if not m:
            continue
        out[m.group(1).lower()] = {k.group('snake'): k.group('json') for k in KEY.finditer(text)}
    return out


# Names whose acronyms the snake_case round trip loses, as upstream spells them.
ACRONYMS = {
    'server_address_by_client_cid_rs': 'serverAddressByClientCIDRs', 'target_ww_ns': 'targetWWNs',
    'pod_cid_rs': 'podCIDRs', 'a_pi_group': 'apiGroup', 'non_resource_ur_ls': 'nonResourceURLs',
    # Fields of messages k8s-openapi inlines (VolumeSource, PersistentVolumeSource) or spells
    # differently, which the lookup above cannot find.
    'downward_api': 'downwardAPI', 'scale_io': 'scaleIO', 'u_id': 'uid',
    'insecure_skip_tls_verify_backend': 'insecureSkipTLSVerifyBackend',
}


def camel(snake):
    if snake in ACRONYMS:
        return ACRONYMS[snake]
    parts = snake.split('_')
    return parts[0] + ''.join(p[:1].upper() + p[1:] for p in parts[1:])


def main():
    src, openapi = sys.argv[1], sys.argv[2]
    schema, snakes, openapi_names = {}, {}, {}
    for pkg in PACKAGES:
        names = json_names(openapi, pkg)
        for msg, fields in parse_pkg(src, pkg).items():
            known = names.get(msg.lower(), {})
            openapi_names[pkg + '.' + msg] = known
            snakes[pkg + '.' + msg] = [f[1] for f in fields]
            schema[pkg + '.' + msg] = [[t, known.get(n, camel(n)), k, r, c, n] for t, n, k, r, c in fields]
    # Go structs embedded with `json:",inline"` are a message field in protobuf but flattened in
    # JSON: their own fields appear in the parent's JSON names.
    for name, fields in schema.items():
        known = openapi_names[name]
        for f in fields:
            if f[2] == 'message' and f[5] not in known and known and any(n in known for n in snakes.get(f[3], [])):
                f[4] = 'inline'
    for fields in schema.values():
        for f in fields:
            del f[5]
    json.dump(schema, sys.stdout, separators=(',', ':'), sort_keys=True)


main()
