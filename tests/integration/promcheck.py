#!/usr/bin/python3
"""tests/integration/promcheck.py FILE: parse FILE as the Prometheus text
exposition format 0.0.4, line by line, and print its samples as JSON
({"types": {...}, "samples": [{"name", "family", "labels", "value"}]}), or
exit non-zero naming the first bad line.  Checks: every line a comment
(# HELP / # TYPE, once each, TYPE before the samples) or `name{labels} value`;
label values escaped as 0.0.4 says; every family with HELP and TYPE, named
pqshim_*; counters end in _total and only they; every histogram series has
_bucket lines with le ascending up to +Inf, counts cumulative, +Inf equal to
_count, and one _sum.  Used by t_tool_stat and t_tool_serve."""
import json, math, re, sys

NAME = re.compile(r'[a-zA-Z_:][a-zA-Z0-9_:]*')
LABEL = re.compile(r'[a-zA-Z_][a-zA-Z0-9_]*')

def die(n, line, why):
    sys.exit("line %d: %s: %r" % (n, why, line))

def parse_labels(s, n, line):
    labels, i = {}, 0
    while i < len(s):
        m = LABEL.match(s, i)
        if not m or s[m.end():m.end() + 2] != '="':
            die(n, line, "bad label")
        i, value = m.end() + 2, ''
        while True:
            if i >= len(s):
                die(n, line, "unterminated label value")
            c = s[i]
            if c == '\\':
                e = s[i + 1:i + 2]
                if e not in ('\\', '"', 'n'):
                    die(n, line, "bad escape in a label value")
                value += '\n' if e == 'n' else e
                i += 2
            elif c == '"':
                i += 1
                break
            elif c == '\n':
                die(n, line, "raw newline in a label value")
            else:
                value += c
                i += 1
        if m.group() in labels:
            die(n, line, "label twice")
        labels[m.group()] = value
        if i < len(s):
            if s[i] != ',':
                die(n, line, "expected , between labels")
            i += 1
    return labels

def parse_value(v, n, line):
    if v in ('+Inf', '-Inf', 'NaN'):
        return float(v.replace('Inf', 'inf').replace('NaN', 'nan'))
    if not re.fullmatch(r'-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?', v):
        die(n, line, "bad value")
    return float(v)

helps, types, samples, seen = {}, {}, [], set()
for n, line in enumerate(open(sys.argv[1], encoding='utf-8').read().split('\n'), 1):
    if line == '':
        continue
    if line.startswith('#'):
        m = re.fullmatch(r'# (HELP|TYPE) (\S+) (.*)', line)
        if not m or not NAME.fullmatch(m.group(2)):
            die(n, line, "bad comment line")
        kind, name, rest = m.groups()
        table = helps if kind == 'HELP' else types
        if name in table:
            die(n, line, kind + " twice")
        if kind == 'TYPE':
            if rest not in ('counter', 'gauge', 'histogram', 'summary', 'untyped'):
                die(n, line, "bad type")
            if any(s['family'] == name for s in samples):
                die(n, line, "TYPE after samples")
        table[name] = rest
        continue
    m = re.fullmatch(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)(?: (-?[0-9]+))?', line)
    if not m:
        die(n, line, "not a sample line")
    name, labels = m.group(1), parse_labels(m.group(2) or '', n, line)
    value = parse_value(m.group(3), n, line)
    family = name
    for suffix in ('_bucket', '_sum', '_count'):
        if name.endswith(suffix) and types.get(name[:-len(suffix)]) == 'histogram':
            family = name[:-len(suffix)]
    if family not in types or family not in helps:
        die(n, line, "sample before its HELP and TYPE")
    key = (name, tuple(sorted(labels.items())))
    if key in seen:
        die(n, line, "sample twice")
    seen.add(key)
    samples.append({'name': name, 'family': family, 'labels': labels, 'value': value})

for name, t in types.items():
    if not name.startswith('pqshim_'):
        sys.exit("metric %s: not prefixed pqshim_" % name)
    if name not in helps:
        sys.exit("metric %s: TYPE without HELP" % name)
    if t == 'counter' and not name.endswith('_total'):
        sys.exit("counter %s does not end in _total" % name)
    if t != 'counter' and name.endswith('_total'):
        sys.exit("%s ends in _total but is a %s" % (name, t))
    if t == 'histogram':
        mine = [s for s in samples if s['family'] == name]
        groups = {}
        for s in mine:
            rest = tuple(sorted((k, v) for k, v in s['labels'].items() if k != 'le'))
            groups.setdefault(rest, []).append(s)
        if not groups:
            sys.exit("histogram %s has no samples" % name)
        for rest, ss in groups.items():
            buckets = [s for s in ss if s['name'] == name + '_bucket']
            count = [s['value'] for s in ss if s['name'] == name + '_count']
            total = [s['value'] for s in ss if s['name'] == name + '_sum']
            if len(count) != 1 or len(total) != 1 or not buckets:
                sys.exit("histogram %s: needs buckets, one _sum and one _count" % name)
            les = [parse_value(s['labels'].get('le', 'x'), 0, 'le') for s in buckets]
            if les != sorted(les) or len(set(les)) != len(les) or les[-1] != math.inf:
                sys.exit("histogram %s: le not increasing up to +Inf: %r" % (name, les))
            counts = [s['value'] for s in buckets]
            if counts != sorted(counts):
                sys.exit("histogram %s: buckets not cumulative: %r" % (name, counts))
            if counts[-1] != count[0]:
                sys.exit("histogram %s: +Inf bucket %r != _count %r" % (name, counts[-1], count[0]))
for s in samples:
    if s['value'] == math.inf:
        s['value'] = 'inf'
json.dump({'types': types, 'samples': samples}, sys.stdout)
