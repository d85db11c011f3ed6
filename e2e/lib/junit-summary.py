#!/usr/bin/env python3
"""junit-summary.py REPORT.xml...: what a conformance run did, from the suite's JUnit reports.

Prints the tests that ran, passed, failed and skipped themselves (specs only: "[It] ..." test cases; a
failed suite setup such as [SynchronizedBeforeSuite] counts as a failure too), then one line per
failure: its name and the first line of its error. Exit 0 when nothing failed, 1 otherwise, 2 when
a report is missing or unreadable (a run that wrote no report must not look like a pass)."""
import sys
import xml.etree.ElementTree as ET


def cases(path):
    root = ET.parse(path).getroot()
    return root.iter("testcase")


def first_line(text):
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()[:300]
    return "(no message)"


def main(paths):
    if not paths:
        print("junit-summary: no report given", file=sys.stderr)
        return 2
    passed = skipped = unselected = 0
    failed = []
    for path in paths:
        try:
            found = list(cases(path))
        except (OSError, ET.ParseError) as e:
            print(f"junit-summary: cannot read {path}: {e}", file=sys.stderr)
            return 2
        for case in found:
            name = case.get("name", "?")
            bad = case.find("failure")
            if bad is None:
                bad = case.find("error")
            if bad is not None:
                failed.append((name, first_line(bad.get("message") or bad.text)))
            elif not name.startswith("[It]"):
                continue
            elif case.find("skipped") is not None:
                # Specs the focus left out are "skipped" with no reason; a test that skips itself says why.
                reason = (case.find("skipped").get("message") or "").strip()
                if reason in ("", "skipped"):
                    unselected += 1
                else:
                    skipped += 1
            else:
                passed += 1
    ran = passed + len(failed)
    print(f"ran {ran}, passed {passed}, failed {len(failed)}, skipped {skipped} (by the tests themselves; "
          f"{unselected} others not selected)")
    for name, why in failed:
        print(f"FAILED {name}\n       {why}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
