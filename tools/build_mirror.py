#!/usr/bin/env python
"""Build a local artifact mirror laid out like the upstream GitHub releases.

The binaries are the real upstream programs as Debian packages them. They are
taken out of the .deb files and repacked exactly as the upstream release
assets are laid out:

    <mirror>/prometheus/prometheus/releases/download/v3.5.3/
        prometheus-3.5.3.linux-amd64.tar.gz   (top folder prometheus-3.5.3.linux-amd64/)
        sha256sums.txt
    <mirror>/google/cadvisor/releases/download/v0.38.7/
        cadvisor                              (one amd64 binary, named as upstream
                                              named it before 0.39; later releases:
                                              cadvisor-v<version>-linux-<arch>)
        sha256sums.txt                        (upstream has none; written here for tests)
    <mirror>/VictoriaMetrics/VictoriaMetrics/releases/download/v1.145.0/
        victoria-metrics-linux-amd64-v1.145.0.tar.gz            (victoria-metrics-prod, no folder)
        victoria-metrics-linux-amd64-v1.145.0_checksums.txt     (archive and binary)

Point a role's `*_download_base_url` at the mirror (``file:///...`` or an HTTP
server) and the archive install path runs unchanged, checksum included.

Archives are built reproducibly (fixed mtime, owner root), so a rebuild gives
the same checksums and hosts see no change. A rerun reuses what is there.

Usage: tools/build_mirror.py [--dest DIR] [--arch amd64 --arch arm64]
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from pathlib import Path

DEBIAN_POOL = os.environ.get("DEBIAN_POOL", "http://deb.debian.org/debian/pool/main")
DEFAULT_DEST = Path(os.environ.get("MONSTACK_CACHE", "/var/cache/monstack")) / "mirror"
EPOCH = 1700000000  # fixed mtime for reproducible archives

# name, upstream version, GitHub owner/repo, packaging, [(deb path, {path in deb: name})]
ARTIFACTS = [
    ("prometheus", "3.5.3", "prometheus/prometheus", "tar", [
        ("p/prometheus/prometheus_3.5.3+ds1-6_{arch}.deb", {"usr/bin/prometheus": "prometheus"}),
        ("p/prometheus/promtool_3.5.3+ds1-6_{arch}.deb", {"usr/bin/promtool": "promtool"}),
    ]),
    ("alertmanager", "0.33.1", "prometheus/alertmanager", "tar", [
        ("p/prometheus-alertmanager/prometheus-alertmanager_0.33.1-5_{arch}.deb",
         {"usr/bin/prometheus-alertmanager": "alertmanager", "usr/bin/amtool": "amtool"}),
    ]),
    ("node_exporter", "1.11.1", "prometheus/node_exporter", "tar", [
        ("p/prometheus-node-exporter/prometheus-node-exporter_1.11.1-3_{arch}.deb",
         {"usr/bin/prometheus-node-exporter": "node_exporter"}),
    ]),
    # An older release, so tests can prove a version upgrade.
    ("node_exporter", "1.5.0", "prometheus/node_exporter", "tar", [
        ("p/prometheus-node-exporter/prometheus-node-exporter_1.5.0-1+b6_{arch}.deb",
         {"usr/bin/prometheus-node-exporter": "node_exporter"}),
    ]),
    # Debian 11's build (glibc 2.31): Debian's newer builds above are linked
    # against glibc 2.34 and do not start on Debian 11 (upstream's release
    # binaries are static and do). The operator scenario's Debian 11 host pins it.
    ("node_exporter", "1.1.2", "prometheus/node_exporter", "tar", [
        ("p/prometheus-node-exporter/prometheus-node-exporter_1.1.2+ds-2.1_{arch}.deb",
         {"usr/bin/prometheus-node-exporter": "node_exporter"}),
    ]),
    # Debian sid's build (forky has it too; trixie has 0.26.0).
    ("blackbox_exporter", "0.28.0", "prometheus/blackbox_exporter", "tar", [
        ("p/prometheus-blackbox-exporter/prometheus-blackbox-exporter_0.28.0-2_{arch}.deb",
         {"usr/bin/prometheus-blackbox-exporter": "blackbox_exporter"}),
    ]),
    ("cadvisor", "0.38.7", "google/cadvisor", "binary", [
        ("c/cadvisor/cadvisor_0.38.7+ds1-2+b7_{arch}.deb", {"usr/bin/cadvisor": "cadvisor"}),
    ]),
    # Debian sid's build (trixie has 1.112.0), repacked as upstream's flat
    # archive with its per-archive checksums file (see build_vm_tarball).
    ("victoriametrics", "1.145.0", "VictoriaMetrics/VictoriaMetrics", "vmtar", [
        ("v/victoriametrics/victoria-metrics_1.145.0+ds1-2_{arch}.deb",
         {"usr/bin/victoria-metrics": "victoria-metrics-prod"}),
    ]),
    # The exporter catalogue's shipped entries (roles/exporters), Debian
    # bookworm's builds laid out as their upstream release tarballs.
    ("process-exporter", "0.7.10", "ncabatoff/process-exporter", "tar", [
        ("p/prometheus-process-exporter/prometheus-process-exporter_0.7.10-3+b5_{arch}.deb",
         {"usr/bin/prometheus-process-exporter": "process-exporter"}),
    ]),
    ("postgres_exporter", "0.11.1", "prometheus-community/postgres_exporter", "tar", [
        ("p/prometheus-postgres-exporter/prometheus-postgres-exporter_0.11.1-3+b5_{arch}.deb",
         {"usr/bin/prometheus-postgres-exporter": "postgres_exporter"}),
    ]),
    ("pushgateway", "1.5.1", "prometheus/pushgateway", "tar", [
        ("p/prometheus-pushgateway/prometheus-pushgateway_1.5.1-2+b5_{arch}.deb",
         {"usr/bin/prometheus-pushgateway": "pushgateway"}),
    ]),
    # The example inventory's own catalogue entry (tests/unit/test_exporter_catalogue.py):
    # upstream names its archives with the v (redis_exporter-v1.45.0.linux-amd64.tar.gz).
    ("redis_exporter", "1.45.0", "oliver006/redis_exporter", "vtagtar", [
        ("p/prometheus-redis-exporter/prometheus-redis-exporter_1.45.0-2+b4_{arch}.deb",
         {"usr/bin/prometheus-redis-exporter": "redis_exporter"}),
    ]),
    # The oldest supported releases (the version matrix, issue 27): Debian
    # bookworm's builds. node_exporter 1.5.0 is above already.
    ("prometheus", "2.42.0", "prometheus/prometheus", "tar", [
        ("p/prometheus/prometheus_2.42.0+ds-5+deb12u1_{arch}.deb",
         {"usr/bin/prometheus": "prometheus", "usr/bin/promtool": "promtool"}),
    ]),
    ("alertmanager", "0.25.0", "prometheus/alertmanager", "tar", [
        ("p/prometheus-alertmanager/prometheus-alertmanager_0.25.0-1+b4_{arch}.deb",
         {"usr/bin/prometheus-alertmanager": "alertmanager", "usr/bin/amtool": "amtool"}),
    ]),
    ("blackbox_exporter", "0.23.0", "prometheus/blackbox_exporter", "tar", [
        ("p/prometheus-blackbox-exporter/prometheus-blackbox-exporter_0.23.0-4+b4_{arch}.deb",
         {"usr/bin/prometheus-blackbox-exporter": "blackbox_exporter"}),
    ]),
]

# The sums file of a release, when upstream does not call it sha256sums.txt
# (process-exporter's goreleaser writes checksums.txt).
SUMS_FILES = {"ncabatoff/process-exporter": "checksums.txt"}


def log(msg: str) -> None:
    print(f"mirror: {msg}", flush=True)


def fetch(url: str, dest: Path) -> None:
    if dest.exists():
        return
    tmp = dest.with_suffix(".part")
    for attempt in range(1, 4):
        try:
            with urllib.request.urlopen(url, timeout=120) as resp, open(tmp, "wb") as out:
                shutil.copyfileobj(resp, out)
            tmp.rename(dest)
            return
        except OSError as exc:  # network errors: retry a few times, then give up loudly
            log(f"download failed ({attempt}/3): {url}: {exc}")
            time.sleep(2 * attempt)
    sys.exit(f"mirror: could not download {url}")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def extract_members(deb: Path, members: dict[str, str], into: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["dpkg-deb", "-x", str(deb), tmp], check=True)
        for src, name in members.items():
            shutil.copy2(Path(tmp) / src, into / name)


def add_file(tar: tarfile.TarFile, name: str, data: bytes, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, EPOCH
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    tar.addfile(info, io.BytesIO(data))


def build_tarball(staging: Path, top: str, out: Path) -> None:
    tmp = out.with_suffix(".part")
    # gzip mtime 0 keeps the archive byte-for-byte reproducible
    with open(tmp, "wb") as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
            with tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar:
                info = tarfile.TarInfo(top)
                info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, EPOCH
                info.uname = info.gname = "root"
                tar.addfile(info)
                for path in sorted(staging.iterdir()):
                    add_file(tar, f"{top}/{path.name}", path.read_bytes(), 0o755)
                add_file(tar, f"{top}/NOTICE", b"Binaries repacked from Debian packages "
                         b"by monstack tools/build_mirror.py\n", 0o644)
    tmp.rename(out)


def build_vm_tarball(staging: Path, out: Path) -> None:
    """VictoriaMetrics' release layout: victoria-metrics-prod at the top of the
    archive (no folder), owned by uid/gid 1000 as upstream's Makefile packs it,
    and <archive minus .tar.gz>_checksums.txt listing the archive and the binary."""
    tmp = out.with_suffix(".part")
    binary = staging / "victoria-metrics-prod"
    with open(tmp, "wb") as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
            with tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar:
                info = tarfile.TarInfo(binary.name)
                data = binary.read_bytes()
                info.size, info.mode, info.mtime = len(data), 0o755, EPOCH
                info.uid = info.gid = 1000
                tar.addfile(info, io.BytesIO(data))
    tmp.rename(out)
    stem = out.name[:-len(".tar.gz")]
    (out.parent / f"{stem}_checksums.txt").write_text(
        f"{sha256(out)}  {out.name}\n{sha256(binary)}  {binary.name}\n")


def build(dest: Path, arches: list[str]) -> list[Path]:
    debs = dest.parent / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    written = []
    for name, version, repo, packaging, sources in ARTIFACTS:
        release = dest / repo / "releases" / "download" / f"v{version}"
        release.mkdir(parents=True, exist_ok=True)
        sums = {}
        for arch in arches:
            if packaging in ("tar", "vtagtar"):
                top = f"{name}-{'v' if packaging == 'vtagtar' else ''}{version}.linux-{arch}"
                asset = release / f"{top}.tar.gz"
            elif packaging == "vmtar":
                asset = release / f"victoria-metrics-linux-{arch}-v{version}.tar.gz"
            elif tuple(int(p) for p in version.split(".")) < (0, 39, 0):
                if arch != "amd64":  # upstream published amd64 only, as plain "cadvisor"
                    continue
                asset = release / name
            else:
                asset = release / f"{name}-v{version}-linux-{arch}"
            if not asset.exists():
                with tempfile.TemporaryDirectory() as staging:
                    for deb_path, members in sources:
                        deb_path = deb_path.format(arch=arch)
                        deb = debs / Path(deb_path).name
                        fetch(f"{DEBIAN_POOL}/{deb_path}", deb)
                        extract_members(deb, members, Path(staging))
                    if packaging in ("tar", "vtagtar"):
                        build_tarball(Path(staging), top, asset)
                    elif packaging == "vmtar":
                        build_vm_tarball(Path(staging), asset)
                    else:
                        shutil.copy2(Path(staging) / name, asset)
                        os.chmod(asset, 0o755)
                log(f"built {asset.relative_to(dest)}")
            sums[asset.name] = sha256(asset)
            written.append(asset)
        if packaging != "vmtar":  # VictoriaMetrics: one _checksums.txt per archive instead
            (release / SUMS_FILES.get(repo, "sha256sums.txt")).write_text(
                "".join(f"{digest}  {fname}\n" for fname, digest in sorted(sums.items())))
    return written


def install_tools(dest: Path) -> Path:
    """Unpack promtool, amtool and blackbox_exporter for the controller (rule unit tests, config checks)."""
    bindir = dest.parent / "bin"
    bindir.mkdir(parents=True, exist_ok=True)
    seen = set()
    for name, version, repo, packaging, _deb in ARTIFACTS:
        if packaging != "tar" or name not in ("prometheus", "alertmanager", "blackbox_exporter") or name in seen:
            continue  # the first entry of a name is its newest release: bin/ holds that one
        seen.add(name)
        top = f"{name}-{version}.linux-amd64"
        archive = dest / repo / "releases" / "download" / f"v{version}" / f"{top}.tar.gz"
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                if member.isfile() and Path(member.name).name not in ("NOTICE",):
                    target = bindir / Path(member.name).name
                    # write beside and rename: a running copy (a test's Prometheus) stays intact
                    part = target.with_name(target.name + ".part")
                    with tar.extractfile(member) as src, open(part, "wb") as out:
                        shutil.copyfileobj(src, out)
                    os.chmod(part, 0o755)
                    os.replace(part, target)
    return bindir


def install_extras(dest: Path) -> Path:
    """Runtime files the Debian builds of the test binaries read from disk.

    Debian's Alertmanager loads its default notification templates from
    /usr/share/prometheus/alertmanager/ instead of embedding them as upstream
    does. The test-host preparation (molecule/shared/prepare.yml) copies this
    tree to the Alertmanager hosts; upstream release binaries never need it.
    """
    extras = dest.parent / "extras"
    target = extras / "usr/share/prometheus/alertmanager"
    if not (target / "default.tmpl").exists():
        deb = dest.parent / "debs" / "prometheus-alertmanager_0.33.1-5_amd64.deb"
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(["dpkg-deb", "-x", str(deb), tmp], check=True)
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(Path(tmp) / "usr/share/prometheus/alertmanager", target, symlinks=True)
    return extras


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST)
    parser.add_argument("--arch", action="append", dest="arches",
                        help="CPU architecture (Debian/upstream name); repeatable; default amd64")
    args = parser.parse_args()
    arches = args.arches or os.environ.get("MIRROR_ARCHES", "amd64").split()
    assets = build(args.dest, arches)
    log(f"{len(assets)} assets ready under {args.dest} (base URL file://{args.dest})")
    if "amd64" in arches:
        log(f"controller tools (promtool, amtool, ...) in {install_tools(args.dest)}")
        log(f"runtime files of the Debian builds in {install_extras(args.dest)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
