#!/usr/bin/env python3
"""Writes benches/RESULTS.md and an SVG chart from the JSON that benches/run.sh collected.

usage: report.py RESULTS_DIR RESULTS.md CHART.svg

RESULTS_DIR holds one ID.json per scenario (the output of `strata bench --format json`), its
ID.meta.json (the bench arguments), machine.txt and optionally criterion.txt. The hand-written
profile findings in benches/findings.md are copied into RESULTS.md after the measured tables.
Standard library only.
"""
import json
import os
import sys

# id, row label, Kafka 2014 figure, target: (kind, value), kind = min records/s | latency | min MB/s
ROWS = [
    ("produce-rf1", "1 producer, RF 1", "821,557 rec/s", ("rps", 1_000_000)),
    ("produce-rf3-acks1", "1 producer, RF 3, acks 1", "786,980 rec/s", ("rps", 600_000)),
    ("produce-rf3-acksall", "1 producer, RF 3, acks all", "421,823 rec/s", ("rps", 400_000)),
    ("consume", "1 consumer", "940,521 rec/s", ("rps", 2_000_000)),
    ("produce-consume", "producer + consumer", "795,064 rec/s", ("rps", 800_000)),
    ("latency", "end-to-end latency at 50,000 rec/s, RF 3, acks 1", "2 ms p50, 3 ms p99", ("latency", (1.0, 3.0))),
    ("latency-rf1", "end-to-end latency at 50,000 rec/s, RF 1", "2 ms p50, 3 ms p99", ("latency", (1.0, 3.0))),
    ("replay-local", "replay from the local-filesystem store", "n/a", ("mbps", 300)),
    ("replay-s3", "replay from LocalStack S3", "n/a", None),
]


def load(d, name):
    p = os.path.join(d, name)
    if not os.path.exists(p):
        return None
    with open(p) as f:
        return json.load(f)


def target_text(t):
    if t is None:
        return "(none set)"
    kind, v = t
    if kind == "rps":
        return f">= {v:,} rec/s"
    if kind == "mbps":
        return f">= {v} MB/s"
    return f"<= {v[0]:g} ms p50, <= {v[1]:g} ms p99"


def measured_text(r, t):
    if t is not None and t[0] == "latency":
        lat = r["latency_ms"]
        return f"{lat['p50']:.2f} ms p50, {lat['p99']:.2f} ms p99, {lat['p999']:.2f} ms p99.9"
    return f"{r['records_per_sec']:,.0f} rec/s ({r['mb_per_sec']:.0f} MB/s)"


def met(r, t):
    if t is None:
        return "-"
    kind, v = t
    if kind == "rps":
        ok = r["records_per_sec"] >= v
    elif kind == "mbps":
        ok = r["mb_per_sec"] >= v
    else:
        ok = r["latency_ms"]["p50"] <= v[0] and r["latency_ms"]["p99"] <= v[1]
    return "yes" if ok else "**no**"


def rss_text(r):
    peaks = r.get("peak_rss_bytes") or {}
    return ", ".join(f"{k} {v / 2**20:.0f} MiB" for k, v in sorted(peaks.items())) or "-"


def chart(results, path):
    """Two panels: throughput (Strata vs Kafka, records/s) and latency percentiles (ms)."""
    bars = []
    for rid, label, kafka, t in ROWS:
        r = results.get(rid)
        if r is None or (t is not None and t[0] == "latency"):
            continue
        k = None
        if kafka.endswith("rec/s"):
            k = float(kafka.split()[0].replace(",", ""))
        bars.append((label, r["records_per_sec"], k))
    w, row_h, left = 900, 34, 300
    h1 = 56 + row_h * len(bars)
    lats = [(rid, results[rid]) for rid in ("latency", "latency-rf1") if rid in results]
    h2 = 150 * len(lats)
    top = max([b[1] for b in bars] + [b[2] or 0 for b in bars] + [1])
    scale = (w - left - 120) / top
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h1 + h2 + 20}" '
           'font-family="sans-serif" font-size="12">',
           f'<rect width="{w}" height="{h1 + h2 + 20}" fill="white"/>',
           '<text x="10" y="20" font-size="14" font-weight="bold">Throughput, records/s '
           '(100-byte records, 6 partitions)</text>',
           '<rect x="10" y="28" width="12" height="12" fill="#2b6cb0"/>'
           '<text x="26" y="39">Strata (this machine, 2 cores)</text>',
           '<rect x="240" y="28" width="12" height="12" fill="#bbb"/>'
           '<text x="256" y="39">Kafka 2014 (3 x 6-core brokers)</text>']
    for i, (label, s, k) in enumerate(bars):
        y = 56 + i * row_h
        out.append(f'<text x="{left - 8}" y="{y + 14}" text-anchor="end">{label}</text>')
        out.append(f'<rect x="{left}" y="{y}" width="{s * scale:.1f}" height="13" fill="#2b6cb0"/>')
        out.append(f'<text x="{left + s * scale + 4:.1f}" y="{y + 11}">{s:,.0f}</text>')
        if k:
            out.append(f'<rect x="{left}" y="{y + 15}" width="{k * scale:.1f}" height="9" fill="#bbb"/>')
            out.append(f'<text x="{left + k * scale + 4:.1f}" y="{y + 24}" fill="#666">{k:,.0f}</text>')
    for n, (rid, lat) in enumerate(lats):
        y0 = h1 + 20 + 150 * n
        l = lat["latency_ms"]
        pts = [("p50", l["p50"], 2.0), ("p99", l["p99"], 3.0), ("p99.9", l["p999"], 14.0)]
        lmax = max([p[1] for p in pts] + [p[2] for p in pts])
        ls = (w - left - 120) / lmax
        rf = "RF 1" if rid == "latency-rf1" else "RF 3, acks 1"
        out.append(f'<text x="10" y="{y0}" font-size="14" font-weight="bold">End-to-end latency, ms, '
                   f'at {lat.get("rate", 50000):,} rec/s, {rf} (Kafka 2014 in grey)</text>')
        for i, (name, v, k) in enumerate(pts):
            y = y0 + 15 + i * row_h
            out.append(f'<text x="{left - 8}" y="{y + 14}" text-anchor="end">{name}</text>')
            out.append(f'<rect x="{left}" y="{y}" width="{v * ls:.1f}" height="13" fill="#2b6cb0"/>')
            out.append(f'<text x="{left + v * ls + 4:.1f}" y="{y + 11}">{v:.2f}</text>')
            out.append(f'<rect x="{left}" y="{y + 15}" width="{k * ls:.1f}" height="9" fill="#bbb"/>')
            out.append(f'<text x="{left + k * ls + 4:.1f}" y="{y + 24}" fill="#666">{k:g}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def main():
    d, md_path, svg_path = sys.argv[1:4]
    results = {rid: load(d, rid + ".json") for rid, *_ in ROWS}
    results = {k: v for k, v in results.items() if v is not None}
    metas = {rid: load(d, rid + ".meta.json") for rid in results}
    with open(os.path.join(d, "machine.txt")) as f:
        machine = f.read().strip()
    lines = [
        "# Strata benchmark results",
        "",
        "Written by `bash benches/run.sh` (do not edit the measured parts by hand; the profile",
        "findings at the end come from `benches/findings.md`). Everything runs on ONE machine: the",
        "brokers, etcd, LocalStack and the load generator share its cores, so every figure includes",
        "the client's own work. Kafka's figures are LinkedIn's 2014 run (three 6-core brokers,",
        "separate load-generator machines).",
        "",
        "## Machine",
        "",
        "```",
        machine,
        "```",
        "",
        "## Kafka's table, beside Strata's",
        "",
        "| scenario (100-byte records, 6 partitions) | Kafka 2014 | Strata target | Strata measured | met | peak RSS per broker |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for rid, label, kafka, t in ROWS:
        r = results.get(rid)
        if r is None:
            lines.append(f"| {label} | {kafka} | {target_text(t)} | not run | - | - |")
            continue
        lines.append(f"| {label} | {kafka} | {target_text(t)} | {measured_text(r, t)} | {met(r, t)} | {rss_text(r)} |")
    idle = load(d, "idle-3000.json")
    if idle is not None:
        per = idle["idle_cpu_percent_per_1000_partitions"]
        brokers = sorted(idle["idle_cpu_percent"])
        lines += [
            "",
            "## Many partitions at rest",
            "",
            f"`strata bench {(load(d, 'idle-3000.meta.json') or {}).get('args', '')}`: one RF 3 topic, "
            "nothing produced; CPU sampled per broker process. Apache Kafka 3.9 on a machine like "
            "this one, same layout: 14% of a core per 1,000 partitions.",
            "",
            "| partitions | every ISR full after | idle CPU, all brokers | per 1,000 partitions | target | met | per broker: CPU, open fds, RSS |",
            "| --- | --- | --- | --- | --- | --- | --- |",
            f"| {idle['partitions']:,} | {idle['ready_seconds']:.1f} s | "
            f"{idle['idle_cpu_percent_total']:.1f}% of a core | {per:.1f}% | <= 5% | "
            f"{'yes' if per <= 5 else '**no**'} | "
            + ", ".join(
                f"{b} {idle['idle_cpu_percent'][b]:.1f}% / {idle['open_fds'][b]:,} / "
                f"{idle['rss_bytes'][b] / 2**20:.0f} MiB" for b in brokers)
            + " |",
        ]
    lines += ["", "![throughput and latency](results.svg)", "", "## Every run", "",
              "| id | records | seconds | records/s | MB/s | p50 ms | p99 ms | p99.9 ms | latency of | command |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for rid, r in results.items():
        l = r["latency_ms"]
        args = (metas.get(rid) or {}).get("args", "")
        lines.append(f"| {rid} | {r['records']:,} | {r['seconds']:.2f} | {r['records_per_sec']:,.0f} | "
                     f"{r['mb_per_sec']:.1f} | {l['p50']:.2f} | {l['p99']:.2f} | {l['p999']:.2f} | "
                     f"{l.get('kind', '')} | `strata bench {args}` |")
    extras = [(rid, k, v) for rid, r in results.items() for k, v in r.items()
              if k in ("remote_records", "max_send_behind_ms")]
    if extras:
        lines += [""] + [f"- {rid}: {k} = {v}" for rid, k, v in extras]
    crit = os.path.join(d, "criterion.txt")
    if os.path.exists(crit):
        with open(crit) as f:
            body = f.read().strip()
        lines += ["", "## Micro-benchmarks (criterion, `cargo bench -p strata-benches`)", "", "```", body, "```"]
    findings = os.path.join(os.path.dirname(os.path.abspath(__file__)), "findings.md")
    if os.path.exists(findings):
        with open(findings) as f:
            lines += ["", f.read().strip()]
    with open(md_path, "w") as f:
        f.write("\n".join(lines) + "\n")
    chart(results, svg_path)


if __name__ == "__main__":
    main()
