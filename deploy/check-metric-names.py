#!/usr/bin/env python3
"""Checks that every metric the Grafana dashboard and the Prometheus rules query is one the
cxrflow services really export.

Exported names come from the Rust sources: every `sub_registry_with_prefix(...)` + `register(
"name", "help", <field>.clone())` under services/*/src, with the field's type looked up in the
same file (prometheus-client appends `_total` to counters; histograms export `_bucket`, `_sum`
and `_count`). The stage runtime's prefix `cxrflow_{service}` is expanded over the service names
passed to `Host::start`.

Usage:
  deploy/check-metric-names.py [--repo DIR] [--list] [--scrape URL ...]

  --list         print the exported names found and exit
  --scrape URL   also read the `# TYPE` lines of running services' /metrics endpoints and fail
                 if the source-derived list misses a family they expose (cross-checks the parser)
Exit status 0 when every queried name is exported, 1 otherwise.
"""
import argparse
import glob
import json
import os
import re
import sys
import urllib.request

import yaml

# --- exported names from the Rust sources ------------------------------------------------------

REGISTER = re.compile(r'\.register\(\s*"([a-z0-9_]+)"\s*,\s*"(?:[^"\\]|\\.)*"\s*,\s*([A-Za-z0-9_.]+?)\.clone\(\)\s*,?\s*\)', re.S)
PREFIX = re.compile(r'sub_registry_with_prefix\(\s*(?:format!\(\s*)?"([^"]+)"')
HOST_START = re.compile(r'Host::start\(\s*("([a-z_]+)"|([A-Z_]+))\s*,')
CONST = re.compile(r'const\s+([A-Z_]+)\s*:\s*&str\s*=\s*"([a-z_]+)"')
TYPE_ALIAS = re.compile(r'\btype\s+([A-Za-z0-9_]+)\s*=\s*([^;]+);')


def rust_files(repo):
    for f in sorted(glob.glob(os.path.join(repo, "services", "*", "src", "**", "*.rs"), recursive=True)):
        if "/tests/" in f or f.endswith("_tests.rs") or f.endswith("/tests.rs"):
            continue
        yield f


def service_names(repo):
    names = set()
    for f in rust_files(repo):
        src = open(f, encoding="utf-8").read()
        consts = dict(CONST.findall(src))
        # a SERVICE constant may live in the crate's lib.rs
        lib = os.path.join(f.split("/src/")[0], "src", "lib.rs")
        if os.path.exists(lib):
            consts.update(CONST.findall(open(lib, encoding="utf-8").read()))
        for _, lit, const in HOST_START.findall(src):
            if lit:
                names.add(lit)
            elif const in consts:
                names.add(consts[const])
            else:
                sys.exit(f"{f}: Host::start with {const}, whose value was not found")
    return sorted(names)


def field_kind(src, field, path):
    """Kind of the metric held in struct field `field` (the first declaration whose type names a
    metric type, directly or through a `type` alias in the same file)."""
    aliases = dict(TYPE_ALIAS.findall(src))
    seen = []
    for m in re.finditer(r'^\s*(?:pub(?:\([a-z]+\))?\s+)?' + re.escape(field) + r'\s*:\s*(.+?),?\s*$', src, re.M):
        ty = m.group(1).strip()
        ty = aliases.get(ty, ty)
        seen.append(ty)
        for kind, word in (("histogram", "Histogram"), ("counter", "Counter"), ("gauge", "Gauge")):
            if re.search(r'\b' + word + r'\b', ty):
                return kind
    sys.exit(f"{path}: field `{field}`: no Counter, Gauge or Histogram type found (saw {seen})")


def exported(repo):
    """{exported sample name: (family, kind, file)}"""
    services = service_names(repo)
    out = {}
    for f in rust_files(repo):
        src = open(f, encoding="utf-8").read()
        prefixes = PREFIX.findall(src)
        regs = REGISTER.findall(src)
        if not regs or not prefixes:
            continue
        if len(set(prefixes)) != 1:
            sys.exit(f"{f}: several metric prefixes {prefixes}; teach check-metric-names.py")
        prefix = prefixes[0]
        expanded = [prefix.replace("{service}", s) for s in services] if "{service}" in prefix else [prefix]
        for name, expr in regs:
            kind = field_kind(src, expr.split(".")[-1], f)
            for p in expanded:
                family = f"{p}_{name}"
                samples = {"counter": [family + "_total"], "gauge": [family],
                           "histogram": [family + s for s in ("_bucket", "_sum", "_count")]}[kind]
                for s in samples:
                    out[s] = (family, kind, os.path.relpath(f, repo))
    return services, out


# --- names used by PromQL expressions ------------------------------------------------------------

KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and", "or", "unless",
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile", "count_values", "group",
    "inf", "nan", "atan2", "limitk", "limit_ratio",
}
BUILTIN_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped", "ALERTS", "ALERTS_FOR_STATE"}


def promql_names(expr):
    e = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)  # strings
    e = re.sub(r'\{[^}]*\}', '', e)                                           # label matchers
    e = re.sub(r'\[[^\]]*\]', '', e)                                          # ranges, subqueries
    e = re.sub(r'\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)', ' ', e)  # label lists
    e = re.sub(r'\boffset\s+\S+', ' ', e)
    e = re.sub(r'\$\{?[A-Za-z_]+\}?', ' ', e)                                # Grafana variables
    names = set()
    for m in re.finditer(r'(?<![A-Za-z0-9_:.])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?', e):
        word, call = m.group(1), m.group(2)
        if call or word.lower() in KEYWORDS or re.fullmatch(r'[0-9].*', word):
            continue
        names.add(word)
    return names


def dashboard_exprs(path):
    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                if t.get("expr"):
                    yield p.get("title", "?"), t["expr"]
            yield from walk(p.get("panels", []))
    d = json.load(open(path, encoding="utf-8"))
    yield from walk(d.get("panels", []))


def rule_exprs(path):
    doc = yaml.safe_load(open(path, encoding="utf-8"))
    for g in doc.get("groups", []):
        for r in g.get("rules", []):
            yield r.get("alert") or r.get("record"), r["expr"], r.get("record")


def scraped(url):
    """({family: type}, {sample name}) from a /metrics endpoint."""
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    fams, samples = {}, set()
    for line in text.splitlines():
        m = re.match(r'# TYPE (\S+) (\S+)', line)
        if m:
            fams[m.group(1)] = m.group(2)
        elif line and not line.startswith("#"):
            samples.add(re.split(r'[{\s]', line, 1)[0])
    return fams, samples


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", default=os.path.dirname(here))
    ap.add_argument("--dashboard", default=os.path.join(here, "grafana", "cxrflow-dashboard.json"))
    ap.add_argument("--rules", default=os.path.join(here, "prometheus", "alerts.yml"))
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--scrape", nargs="*", default=[])
    a = ap.parse_args()

    services, names = exported(a.repo)
    if a.list:
        for n in sorted(names):
            print(n, names[n][1], names[n][2])
        return 0
    print(f"services registering metrics: {', '.join(services)}")
    print(f"exported sample names found in services/*/src: {len(names)} "
          f"({len({v[0] for v in names.values()})} families)")
    errors = []

    # every family a running service exposes must be known from the sources
    for url in a.scrape:
        fams, samples = scraped(url)
        known = {v[0]: v[1] for v in names.values()}
        bad = [f"{url} exposes family {f} ({t}) which the source parser did not find"
               for f, t in sorted(fams.items()) if f.startswith("cxrflow_") and f not in known]
        bad += [f"{url} exposes {f} as {t}, the source parser says {known[f]}"
                for f, t in sorted(fams.items()) if f in known and known[f] != t]
        bad += [f"{url} exposes sample {n} which the source parser did not predict"
                for n in sorted(samples) if n.startswith("cxrflow_") and n not in names]
        print(f"scraped {url}: {len(fams)} families, {len(samples)} sample names, {len(bad)} mismatches")
        errors += bad

    recorded = set()
    rules = list(rule_exprs(a.rules))
    for _, _, rec in rules:
        if rec:
            recorded.add(rec)
    used = {}
    for name, expr, _ in rules:
        for n in promql_names(expr):
            used.setdefault(n, []).append(f"rule {name}")
    dash = list(dashboard_exprs(a.dashboard))
    for title, expr in dash:
        for n in promql_names(expr):
            used.setdefault(n, []).append(f"panel {title!r}")
    print(f"queries checked: {len(rules)} rules, {len(dash)} dashboard targets; distinct names used: {len(used)}")

    for n, where in sorted(used.items()):
        if n in names or n in BUILTIN_SERIES or n in recorded:
            continue
        hint = ""
        base = re.sub(r'_(total|bucket|sum|count)$', '', n)
        cands = [k for k in names if k.startswith(base)]
        if cands:
            hint = f" (exported: {', '.join(sorted(cands)[:4])})"
        errors.append(f"{n} is not exported by any service{hint}; used in {', '.join(sorted(set(where))[:3])}")

    # the dashboard must show what the on-call page promises
    required = ["cxrflow_triage_worklist_studies", "cxrflow_feedback_auroc", "cxrflow_drift_score"]
    dash_used = set().union(*(promql_names(e) for _, e in dash)) if dash else set()
    for r in required:
        if r not in dash_used:
            errors.append(f"the dashboard does not query {r}")
    for suffix in ("_consumer_lag_records", "_dead_lettered_records_total", "_processing_seconds_bucket",
                   "_consumed_records_total"):
        for s in services:
            if f"cxrflow_{s}{suffix}" not in dash_used:
                errors.append(f"the dashboard does not query cxrflow_{s}{suffix}")

    for e in errors:
        print("ERROR:", e)
    if errors:
        print(f"metric-name check FAILED: {len(errors)} problem(s)")
        return 1
    print("metric-name check passed: every queried metric is exported by the services")
    return 0


if __name__ == "__main__":
    sys.exit(main())
