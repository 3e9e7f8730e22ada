"""Counts of a schemathesis run, from its JSON report (`--report json`), for `.ci/contract`.

Usage: python st_summary.py REPORT.json
Prints the operations tested, the test cases, the failures grouped by operation (each with the
failure codes and titles schemathesis gives, e.g. `ST201 Schema-violating request accepted`),
errors and warnings. Exit status 0 (the verdict is schemathesis' own exit status).
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict

# The check behind each failure code (`st explain CODE` tells more).
CHECK_OF_CODE = {
    "ST101": "not_a_server_error",
    "ST102": "not_a_server_error",
    "ST103": "status_code_conformance",
    "ST104": "content_type_conformance",
    "ST105": "content_type_conformance",
    "ST106": "content_type_conformance",
    "ST108": "response_schema_conformance",
    "ST109": "response_schema_conformance",
    "ST110": "response_schema_conformance",
    "ST111": "response_schema_conformance",
    "ST201": "negative_data_rejection",
    "ST401": "ignored_auth",
}


def label(failure: dict) -> str:
    code = failure.get("code", "?")
    check = CHECK_OF_CODE.get(code)
    title = failure.get("title", failure.get("type", "?"))
    return f"{code} {check + ': ' if check else ''}{title}"


def main(path: str) -> None:
    try:
        with open(path, encoding="utf-8") as f:
            report = json.load(f)
    except (OSError, ValueError) as e:
        print(f"schemathesis: no readable report ({e})")
        return
    ops = report.get("operations") or {}
    cases = report.get("test_cases") or {}
    failures = report.get("failures") or []
    errors = report.get("errors") or []
    unique = cases.get("unique_failures", sum(f.get("count", 0) for f in failures))
    print(
        f"schemathesis: {ops.get('tested', '?')} operations tested of {ops.get('selected', '?')} "
        f"selected ({ops.get('total', '?')} in the document, {ops.get('errored', 0)} errored, "
        f"{ops.get('skipped', 0)} skipped); {cases.get('generated', '?')} test cases, "
        f"{unique} unique failures, {len(errors)} error kinds; seed {report.get('seed', '?')}; "
        f"{report.get('running_time', 0):.0f}s"
    )
    by_op: dict[str, list[str]] = defaultdict(list)
    for f in failures:
        for op in f.get("operations") or ["(no operation)"]:
            by_op[op].append(label(f))
    if by_op:
        print("failures by operation:")
        for op in sorted(by_op, key=lambda o: (o.split(" ", 1)[-1], o)):
            print(f"  {op}: {'; '.join(sorted(set(by_op[op])))}")
        by_code: dict[str, int] = defaultdict(int)
        for f in failures:
            by_code[label(f)] += int(f.get("count", 0))
        print("failures by check: " + "; ".join(f"{k}: {v}" for k, v in sorted(by_code.items())))
    for e in errors:
        where = ", ".join(e.get("operations") or []) or "-"
        print(f"error: {e.get('title', '?')} x{e.get('count', '?')} ({where})")
    warnings = report.get("warnings") or {}
    for kind, items in sorted(warnings.items()):
        if items:
            shown = ", ".join(map(str, items[:12])) + (" …" if len(items) > 12 else "")
            print(f"warning {kind}: {shown}")
    phases = report.get("phases") or {}
    if phases:
        print("phases: " + ", ".join(f"{k} {v.get('status', '?')}" for k, v in phases.items()))


if __name__ == "__main__":
    main(sys.argv[1])
