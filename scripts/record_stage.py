#!/usr/bin/env python3
"""Record one test stage (lint run, molecule run) as a one-case JUnit file."""
import sys
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

results, name, rc, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
failure = f'<failure message="exit code {rc}">{escape(name)} exited with {rc}</failure>' if rc else ""
slug = "".join(c if c.isalnum() else "-" for c in name).strip("-")
Path(results, f"stage-{slug}.xml").write_text(
    f'<testsuite name="stages" tests="1" failures="{int(rc != 0)}">'
    f'<testcase classname="stage" name={quoteattr(name)} time="{seconds}">{failure}</testcase>'
    "</testsuite>\n")
print(f"-- {name}: {'FAILED (exit ' + str(rc) + ')' if rc else 'ok'} in {seconds}s")
