#!/usr/bin/env python3
"""Unpack the wheels of a directory into one tar.gz, the installed tree of the packages.

A wheel is a zip file of the package as installed; their union is a directory to put on
PYTHONPATH. tests/fastapi_app/deploy.yml ships it to a test host in one piece.

    pack_wheels.py WHEEL_DIR ARCHIVE
"""
from __future__ import annotations

import os
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path


def pack(wheels: Path, archive: Path) -> int:
    found = sorted(wheels.glob("*.whl"))
    if not found:
        raise SystemExit(f"no wheels in {wheels}")
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o755)  # the archive's top directory: readable by the service's user
        for wheel in found:
            with zipfile.ZipFile(wheel) as zipped:
                zipped.extractall(tmp)
        partial = archive.with_name(archive.name + ".part")
        with tarfile.open(partial, "w:gz") as tar:
            tar.add(tmp, arcname=".")
        partial.replace(archive)
    return len(found)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    print(f"{pack(Path(sys.argv[1]), Path(sys.argv[2]))} wheels packed into {sys.argv[2]}")
