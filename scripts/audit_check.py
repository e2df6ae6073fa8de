#!/usr/bin/env python3
"""Check the audit log a client check's `spillway serve` wrote (its stdout, JSON lines).

Usage: audit_check.py AUDIT_FILE API_PREFIX MIN_COUNT REGION[,REGION...]

Passes when at least MIN_COUNT records whose `api` starts with API_PREFIX were served
(`outcome` "ok"), and every such record was served in one of the REGIONs (the inference
profile's destination set: residency). The serving region is `inferenceRegion`, which the
gateway writes when it differs from `sourceRegion`. Prints one line; exits 1 otherwise.
"""
import json
import sys


def main():
    if len(sys.argv) != 5:
        print(__doc__, file=sys.stderr)
        return 2
    path, prefix, least, allowed = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    allowed = set(allowed.split(","))
    records = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("{"):
                records.append(json.loads(line))
    served = [r for r in records if r.get("api", "").startswith(prefix) and r.get("outcome") == "ok"]
    for r in served:
        r["servedIn"] = r.get("inferenceRegion") or r["sourceRegion"]
    outside = [r for r in served if r["servedIn"] not in allowed]
    if outside:
        print(f"RESIDENCY: served outside {sorted(allowed)}: {outside}")
        return 1
    if len(served) < least:
        print(f"{len(served)} served {prefix!r} record(s) in the audit log, expected {least}")
        return 1
    regions = sorted({r["servedIn"] for r in served})
    print(f"{len(served)} served {prefix!r} record(s), all in {', '.join(regions)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
