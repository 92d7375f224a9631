#!/usr/bin/env python3
"""Independent reference values for `flowgen eval`, from scipy and numpy.

Not part of the build or the tests: it produced the numbers that
tests/eval.rs compares against, and reproduces them when a metric's
definition changes. Needs `pip install scipy numpy` (checked with scipy
1.17.1, numpy 2.4.6).

Usage: eval_reference.py CIDDS.csv [N]
Scores the file's first N data rows (default 2048) as "synthetic" against the
remaining rows as the reference, and prints the figures as JSON.
"""

import csv
import datetime
import json
import math
import sys
from collections import Counter

import numpy as np
from scipy.spatial.distance import cdist, jensenshannon
from scipy.stats import wasserstein_distance

K = 5
PROTOCOLS = ["TCP", "UDP", "ICMP"]


def parse(row):
    when = datetime.datetime.strptime(row[0].strip(), "%Y-%m-%d %H:%M:%S.%f")
    midnight = when.replace(hour=0, minute=0, second=0, microsecond=0)
    proto = row[2].strip()
    if proto == "ICMP":
        icmp_type, code = (row[6].strip().split(".") + ["0"])[:2]
        src_port, dst_port = 0, int(icmp_type) * 256 + int(code)
    else:
        src_port, dst_port = int(float(row[4])), int(float(row[6]))
    return {
        "tod": (when - midnight).total_seconds() / 86400,
        "duration_s": float(row[1]),
        "proto": proto,
        "src": row[3].strip(),
        "src_port": src_port,
        "dst": row[5].strip(),
        "dst_port": dst_port,
        "packets": int(row[7]),
        "bytes": int(row[8]),
        "flags": row[10].strip(),
    }


def features(flows):
    rows = []
    for f in flows:
        row = [f["tod"], math.log1p(f["duration_s"]), math.log1p(f["packets"]),
               math.log1p(f["bytes"])]
        row += [float(f["proto"] == p) for p in PROTOCOLS]
        row += [float(f["proto"] not in PROTOCOLS)]
        row += [float(c != ".") for c in f["flags"]]
        row += [f["src_port"] / 65535, f["dst_port"] / 65535]
        row += [float(f["src"].startswith("192.168.")), float(f["dst"].startswith("192.168."))]
        row += [float(f["src_port"] < 1024), float(f["dst_port"] < 1024)]
        rows.append(row)
    return np.array(rows)


def jsd(a, b):
    ca, cb = Counter(a), Counter(b)
    keys = sorted(set(ca) | set(cb))
    return jensenshannon([ca[k] for k in keys], [cb[k] for k in keys]) ** 2


def correlation(x):
    with np.errstate(invalid="ignore", divide="ignore"):
        c = np.nan_to_num(np.corrcoef(x, rowvar=False), nan=0.0)
    np.fill_diagonal(c, 1.0)
    return c


def density_coverage(real, fake):
    radii = np.partition(cdist(real, real), K, axis=1)[:, K]
    d = cdist(real, fake)
    density = (d < radii[:, None]).sum(axis=0).mean() / K
    coverage = (d.min(axis=1) < radii).mean()
    return density, coverage


def evaluate(ref, syn):
    out = {}
    for name in ["proto", "src", "dst", "src_port", "dst_port", "flags"]:
        out["jsd_" + name] = jsd([f[name] for f in ref], [f[name] for f in syn])
    scaled = {
        "tod": lambda f: f["tod"],
        "log_duration": lambda f: math.log1p(f["duration_s"]),
        "log_packets": lambda f: math.log1p(f["packets"]),
        "log_bytes": lambda f: math.log1p(f["bytes"]),
    }
    for name, value in scaled.items():
        u, v = [value(f) for f in ref], [value(f) for f in syn]
        out["emd_" + name] = wasserstein_distance(u, v) / (max(u) - min(u))
    xr, xs = features(ref), features(syn)
    out["pcd"] = np.linalg.norm(correlation(xr) - correlation(xs))
    mean, std = xr.mean(axis=0), xr.std(axis=0)
    std[std == 0] = 1.0
    out["density"], out["coverage"] = density_coverage((xr - mean) / std, (xs - mean) / std)
    return {k: float(v) for k, v in out.items()}


def main():
    with open(sys.argv[1], newline="") as f:
        rows = list(csv.reader(f))[1:]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 2048
    flows = [parse(r) for r in rows]
    print(json.dumps(evaluate(flows[n:], flows[:n]), indent=2))


if __name__ == "__main__":
    main()
