"""Fail when a tracked file holds a secret that `.secrets.baseline` has not audited as harmless.

detect-secrets' pre-commit hook rewrites the baseline (and fails) whenever lines holding the
audited examples move, so CI instead re-scans into a copy of the baseline, which keeps the
audit decisions of known findings, and fails on any finding not audited as a false positive.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BASELINE = Path(".secrets.baseline")


def main() -> int:
    """Re-scan the repository against a copy of the baseline; return 1 on unaudited findings."""
    with tempfile.TemporaryDirectory() as directory:
        copy = Path(directory) / "baseline.json"
        shutil.copy(BASELINE, copy)
        scanner = Path(sys.executable).with_name("detect-secrets")
        subprocess.run([str(scanner), "scan", "--baseline", str(copy)], check=True)
        results = json.loads(copy.read_text())["results"]
    unaudited = [
        f"{file}:{finding['line_number']}: {finding['type']}"
        for file, findings in results.items()
        for finding in findings
        if finding.get("is_secret") is not False
    ]
    for line in unaudited:
        print(f"possible secret, not audited in {BASELINE}: {line}", file=sys.stderr)
    if unaudited:
        print(
            "remove it, or if it is an example: detect-secrets scan --baseline .secrets.baseline "
            "&& detect-secrets audit .secrets.baseline",
            file=sys.stderr,
        )
    return 1 if unaudited else 0


if __name__ == "__main__":
    raise SystemExit(main())
