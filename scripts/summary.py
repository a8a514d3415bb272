#!/usr/bin/env python3
"""Sum every JUnit file of a test run and print `N passed, N failed, N skipped`.

Exit status 1 when anything failed or errored, or when no test ran at all
(an empty run must never look green).
"""
import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def main(results: str) -> int:
    passed = failed = skipped = 0
    failures, skips = [], []
    files = sorted(Path(results).glob("*.xml"))
    for path in files:
        try:
            root = ET.parse(path).getroot()
        except ET.ParseError as exc:
            failed += 1
            failures.append(f"{path.name}: unreadable results ({exc})")
            continue
        for case in root.iter("testcase"):
            label = f"{path.stem}: {case.get('classname', '')}::{case.get('name')}"
            if case.find("failure") is not None or case.find("error") is not None:
                failed += 1
                failures.append(label)
            elif case.find("skipped") is not None:
                skipped += 1
                reason = case.find("skipped").get("message", "")
                skips.append(f"{label} ({reason})")
            else:
                passed += 1
    print("\n== summary")
    for line in skips:
        print(f"skipped: {line}")
    for line in failures:
        print(f"FAILED:  {line}")
    total = passed + failed + skipped
    print(f"{passed} passed, {failed} failed, {skipped} skipped ({total} checks in {len(files)} result files)")
    if total == 0:
        print("no test ran: treated as a failure")
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "build/results"))
