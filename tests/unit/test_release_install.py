"""The release install: plugins/plugin_utils/release_install.py (controller) and the host module
plugins/modules/install_release.py.

Real upstream-layout assets come from the project's mirror ($MONSTACK_CACHE/mirror, built by
tools/build_mirror.py), served by a loopback HTTP server that counts the requests. Most tests call
ensure_release with a stand-in for the action whose module calls run the host module's code in this
process on temporary directories; two run it through ansible-playbook (local connection, and a
systemd container when MONSTACK_RELEASE_TEST_HOST names one).
"""
from __future__ import annotations

import base64
import hashlib
import http.server
import importlib.util
import io
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import REPO_ROOT

REPO = Path(REPO_ROOT)
MIRROR = Path(os.environ.get("MONSTACK_CACHE", "/var/cache/monstack")) / "mirror"
NE_DIR = MIRROR / "prometheus/node_exporter/releases/download/v1.11.1"
NE_ASSET = "node_exporter-1.11.1.linux-amd64.tar.gz"


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


ri = _load("ansible_collections.monstack.stack.plugins.plugin_utils.release_install",
           REPO / "plugins/plugin_utils/release_install.py")
mod = _load("install_release_module", REPO / "plugins/modules/install_release.py")
ReleaseError = sys.modules["ansible_collections.monstack.stack.plugins.module_utils.release"].ReleaseError

needs_mirror = pytest.mark.skipif(not (NE_DIR / NE_ASSET).is_file(),
                                  reason=f"no mirror at {MIRROR} (tools/build_mirror.py builds it)")


def ne_digest():
    return (NE_DIR / "sha256sums.txt").read_text().split()[0]


class Mirror(http.server.ThreadingHTTPServer):
    """The mirror over loopback HTTP; counts GETs per path; optional delay per response."""

    daemon_threads = True

    def __init__(self, root, delay=0.0):
        self.root, self.delay, self.hits = Path(root), delay, Counter()
        self.lock = threading.Lock()
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(server.root), **kwargs)

            def do_GET(self):
                with server.lock:
                    server.hits[self.path] += 1
                time.sleep(server.delay)
                super().do_GET()

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.server_address[1]

    def close(self):
        self.shutdown()
        self.server_close()


@pytest.fixture
def mirror():
    server = Mirror(MIRROR)
    yield server
    server.close()


def release(tmp_path, **extra):
    spec = {"name": "node_exporter", "version": "1.11.1", "binaries": ["node_exporter"],
            "cache_dir": str(tmp_path / "cache"), "version_dir": str(tmp_path / "opt/node_exporter/1.11.1"),
            "link_dir": str(tmp_path / "bin")}
    (tmp_path / "bin").mkdir(parents=True, exist_ok=True)
    spec.update(extra)
    return spec


class FakeAction:
    """The parts of ActionBase that ensure_release uses; module calls run install_release's code here."""

    def __init__(self, check=False):
        self.check = check
        self._connection = SimpleNamespace(_shell=SimpleNamespace(tmpdir=None, join_path=os.path.join))
        self.calls = []
        self.sent = []

    def _execute_module(self, module_name, module_args, task_vars):
        self.calls.append((module_name, dict(module_args)))
        assert module_name == "monstack.stack.install_release"
        params = {"binary_subdir": "", "src": None, "url": None, "checksum": None, "format": "tar", "strip_top": True,
                  "unpack_all": False, "link_dir": "/usr/local/bin", "remove_src": False, "timeout": 60}
        params.update(module_args)
        try:
            return mod.install(SimpleNamespace(check_mode=self.check), params)
        except ReleaseError as exc:
            return {"failed": True, "msg": str(exc)}

    def _make_tmp_path(self):
        self._connection._shell.tmpdir = tempfile.mkdtemp(prefix="fake-remote-tmp-")
        return self._connection._shell.tmpdir

    def _transfer_file(self, local, remote):
        self.sent.append(local)
        shutil.copyfile(local, remote)

    def _fixup_perms2(self, paths):
        pass

    def _remove_tmp_path(self, path):
        shutil.rmtree(path)
        self._connection._shell.tmpdir = None


def tree(root):
    return sorted(str(p.relative_to(root)) for p in Path(root).rglob("*")) if Path(root).exists() else []


# --------------------------------------------------------------------------- plan (pure)

def test_plan_of_an_upstream_release():
    plan = ri.release_plan({"name": "node_exporter", "version": "1.11.1", "binaries": ["node_exporter"],
                            "cache_dir": "/c"}, "x86_64")
    gh = "https://github.com/prometheus/node_exporter/releases/download/v1.11.1"
    assert plan["url"] == f"{gh}/{NE_ASSET}" and plan["checksum"] == f"sha256:{gh}/sha256sums.txt"
    assert plan["arch"] == "amd64" and plan["format"] == "tar" and plan["strip_top"]
    assert plan["version_dir"] == "/opt/monstack/node_exporter/1.11.1"
    assert plan["links"] == {"/usr/local/bin/node_exporter": "/opt/monstack/node_exporter/1.11.1/node_exporter"}
    assert plan["cache_file"] == f"/c/node_exporter-1.11.1/{NE_ASSET}"


def test_plan_of_grafana_style_overrides_and_victoriametrics_sums():
    plan = ri.release_plan({"name": "grafana", "version": "12.4.6", "binaries": ["grafana"], "binary_subdir": "bin",
                            "unpack_all": True, "release_url": "https://dl.grafana.com/oss/release/",
                            "asset": "grafana-12.4.6.linux-{arch}.tar.gz", "checksums_file": "{asset}.sha256",
                            "version_dir": "/opt/monstack/grafana/12.4.6"}, "aarch64")
    assert plan["url"] == "https://dl.grafana.com/oss/release/grafana-12.4.6.linux-arm64.tar.gz"
    assert plan["checksum"] == "sha256:" + plan["url"] + ".sha256"
    assert plan["links"] == {"/usr/local/bin/grafana": "/opt/monstack/grafana/12.4.6/bin/grafana"}
    vm = ri.release_plan({"name": "victoriametrics", "version": "1.145.0", "binaries": ["victoria-metrics-prod"],
                          "archive_flat": True, "checksums_file": "victoria-metrics-linux-{arch}-v{version}_checksums.txt"},
                         "x86_64")
    assert vm["sums_url"].endswith("/v1.145.0/victoria-metrics-linux-amd64-v1.145.0_checksums.txt")
    assert not vm["strip_top"]
    stem = ri.release_plan({"name": "victoriametrics", "version": "1.145.0", "binaries": ["victoria-metrics-prod"],
                            "checksums_file": "{asset_stem}_checksums.txt"}, "x86_64")
    assert stem["sums_url"] == vm["sums_url"]
    # a checksum reference given whole (placeholders filled): a pinned digest, or a sums file but not over http
    ref = {"name": "grafana", "version": "12.4.6", "binaries": ["grafana"], "release_url": "http://mirror.test/g",
           "asset": "grafana-12.4.6.linux-{arch}.tar.gz", "var_prefix": "grafana"}
    assert ri.release_plan(dict(ref, checksum_ref="sha256:" + "a" * 64), "x86_64")["checksum"] == "sha256:" + "a" * 64
    https = dict(ref, checksum_ref="sha256:https://mirror.test/g/{asset}.sha256")
    assert ri.release_plan(https, "x86_64")["checksum"] == "sha256:https://mirror.test/g/grafana-12.4.6.linux-amd64.tar.gz.sha256"
    with pytest.raises(ReleaseError, match="grafana_checksums has no amd64 entry and the sums file: 'http://mirror"):
        ri.release_plan(dict(ref, checksum_ref="sha256:http://mirror.test/g/{asset}.sha256"), "x86_64")
    cad = ri.release_plan({"name": "cadvisor", "version": "0.38.7", "binaries": ["cadvisor"]}, "x86_64")
    assert cad["asset"] == "cadvisor" and cad["format"] == "binary"


@pytest.mark.parametrize("extra,message", [
    ({"base_url": "http://mirror.corp.test"}, "node_exporter_checksums has no amd64 entry and the sums file"),
    ({"checksums": {"amd64": "PASTE"}}, "node_exporter_checksums.amd64: 'PASTE' is not a SHA-256 digest"),
    ({"method": "apt"}, "node_exporter_install_method: 'apt' is not an install method"),
    ({"version": "v1.11.1"}, "node_exporter_version: 'v1.11.1' is not a release version"),
    ({"method": "local", "local_path": ""}, "node_exporter_local_archive: empty"),
    ({"method": "local", "vars": {"local_path": "cadvisor_local_binary"}}, "cadvisor_local_binary: empty"),
    ({"binaries": []}, "names no binaries"),
    ({"bogus": 1}, "unknown keys bogus"),
])
def test_plan_errors_name_the_variable(extra, message):
    spec = {"name": "node_exporter", "version": "1.11.1", "binaries": ["node_exporter"]}
    spec.update(extra)
    with pytest.raises(ReleaseError, match=message.replace("(", r"\(")):
        ri.release_plan(spec, "x86_64")
    result = ri.ensure_release(FakeAction(), {}, spec, "x86_64", False)
    assert result["failed"] and message in result["msg"]


def test_package_method_without_packages_does_nothing():
    """Grafana's package (apt, .deb) is installed by the role's own tasks: nothing to do here."""
    action = FakeAction()
    assert ri.ensure_release(action, {}, {"name": "grafana", "method": "package", "packages": []}, "x86_64", False) \
        == {"changed": False}
    assert not action.calls


def test_package_method_masks_the_packaged_service_first():
    calls = []

    class Recorder(FakeAction):
        def _execute_module(self, module_name, module_args, task_vars):
            calls.append((module_name, module_args))
            return {"changed": module_name == "ansible.builtin.apt"}

    result = ri.ensure_release(Recorder(), {}, {"name": "node_exporter", "method": "package",
                                                "packages": ["prometheus-node-exporter"],
                                                "package_services": ["prometheus-node-exporter.service"]}, "x86_64", True)
    assert calls == [("ansible.builtin.systemd_service", {"name": "prometheus-node-exporter.service", "masked": True}),
                     ("ansible.builtin.apt", {"name": ["prometheus-node-exporter"], "state": "present",
                                              "update_cache": True, "cache_valid_time": 86400})]
    assert result == {"changed": True, "msg": "node_exporter: package prometheus-node-exporter would be installed"}


def test_pinned_checksum_allows_plain_http():
    plan = ri.release_plan({"name": "node_exporter", "version": "1.11.1", "binaries": ["node_exporter"],
                            "base_url": "http://mirror.corp.test", "checksums": {"amd64": "SHA256:" + "AB" * 32}},
                           "x86_64")
    assert plan["checksum"] == "sha256:" + "ab" * 32


# --------------------------------------------------------------------------- controller download

@needs_mirror
def test_download_once_into_the_cache_from_loopback_http(tmp_path, mirror):
    spec = release(tmp_path, base_url=mirror.url, checksums={"amd64": ne_digest()})
    plan = ri.release_plan(spec, "x86_64")
    path, digest, downloaded = ri.fetch_to_cache(plan)
    assert downloaded and digest == ne_digest() and Path(path).read_bytes() == (NE_DIR / NE_ASSET).read_bytes()
    assert oct(os.stat(path).st_mode & 0o777) == "0o600" and oct(os.stat(os.path.dirname(path)).st_mode & 0o777) == "0o700"
    assert ri.fetch_to_cache(plan) == (path, digest, False)
    assert mirror.hits == Counter({f"/prometheus/node_exporter/releases/download/v1.11.1/{NE_ASSET}": 1})
    # no temporary file left beside it (lock and verified note only)
    assert sorted(os.listdir(os.path.dirname(path))) == [NE_ASSET, NE_ASSET + ".lock", NE_ASSET + ".verified"]


@needs_mirror
def test_checksum_mismatch_is_refused_and_nothing_cached(tmp_path, mirror):
    wrong = "0" * 64
    spec = release(tmp_path, base_url=mirror.url, checksums={"amd64": wrong})
    with pytest.raises(ReleaseError) as err:
        ri.fetch_to_cache(ri.release_plan(spec, "x86_64"))
    message = str(err.value)
    assert f"SHA-256 {ne_digest()}, but {wrong} expected (pinned in node_exporter_checksums)" in message
    assert "Fix: if the pinned value in node_exporter_checksums is wrong" in message
    assert [n for n in os.listdir(tmp_path / "cache/node_exporter-1.11.1") if not n.endswith(".lock")] == []
    action = FakeAction()
    result = ri.ensure_release(action, {}, spec, "x86_64", False)
    assert result["failed"] and "expected" in result["msg"] and not action.sent
    assert not (tmp_path / "opt").exists() and tree(tmp_path / "bin") == []


@needs_mirror
def test_a_corrupted_cache_file_is_downloaded_again(tmp_path, mirror):
    spec = release(tmp_path, base_url=mirror.url, checksums={"amd64": ne_digest()})
    plan = ri.release_plan(spec, "x86_64")
    path, _, _ = ri.fetch_to_cache(plan)
    with open(path, "r+b") as fh:
        fh.write(b"X")
    assert ri.fetch_to_cache(plan)[2] is True
    assert hashlib.sha256(Path(path).read_bytes()).hexdigest() == ne_digest()


@needs_mirror
def test_sums_file_over_file_url(tmp_path):
    spec = release(tmp_path, base_url=f"file://{MIRROR}")
    path, digest, downloaded = ri.fetch_to_cache(ri.release_plan(spec, "x86_64"))
    assert downloaded and digest == ne_digest()
    vm = {"name": "victoriametrics", "version": "1.145.0", "binaries": ["victoria-metrics-prod"], "archive_flat": True,
          "checksums_file": "victoria-metrics-linux-{arch}-v{version}_checksums.txt", "base_url": f"file://{MIRROR}",
          "cache_dir": str(tmp_path / "cache")}
    assert ri.fetch_to_cache(ri.release_plan(vm, "x86_64"))[2]


def _fetch_in_child(spec, queue):
    plan = ri.release_plan(spec, "x86_64")
    queue.put(ri.fetch_to_cache(plan)[1:])


@needs_mirror
def test_concurrent_forks_download_once(tmp_path):
    server = Mirror(MIRROR, delay=0.5)  # the first download is still running when the others ask
    try:
        spec = release(tmp_path, base_url=server.url, checksums={"amd64": ne_digest()})
        ctx = multiprocessing.get_context("fork")
        queue = ctx.Queue()
        children = [ctx.Process(target=_fetch_in_child, args=(spec, queue)) for _ in range(5)]
        for child in children:
            child.start()
        results = [queue.get(timeout=60) for _ in children]
        for child in children:
            child.join(timeout=60)
        assert sorted(r[1] for r in results) == [False] * 4 + [True]
        assert all(r[0] == ne_digest() for r in results)
        assert server.hits[f"/prometheus/node_exporter/releases/download/v1.11.1/{NE_ASSET}"] == 1
    finally:
        server.close()


# --------------------------------------------------------------------------- ensure_release end to end (in process)

@needs_mirror
def test_install_link_then_nothing_to_do(tmp_path, mirror):
    spec = release(tmp_path, base_url=mirror.url, checksums={"amd64": ne_digest()})
    action = FakeAction()
    result = ri.ensure_release(action, {}, spec, "x86_64", False)
    vdir = tmp_path / "opt/node_exporter/1.11.1"
    assert result["changed"] and result["unpacked"] and result["downloaded"], result
    assert tree(vdir) == ["node_exporter"]  # only the binary, not NOTICE
    assert oct((vdir / "node_exporter").stat().st_mode & 0o7777) == "0o755"
    assert os.readlink(tmp_path / "bin/node_exporter") == str(vdir / "node_exporter")
    assert result["links_changed"] == [str(tmp_path / "bin/node_exporter")]
    assert subprocess.run([str(tmp_path / "bin/node_exporter"), "--version"], capture_output=True,
                          text=True).stdout.startswith("node_exporter, version 1.11.1")
    assert not any(Path(tempfile.gettempdir()).glob("fake-remote-tmp-*/release-*"))
    again = FakeAction()
    assert ri.ensure_release(again, {}, spec, "x86_64", False) == {
        "changed": False, "version_dir": str(vdir), "links_changed": [], "unpacked": False}
    assert len(again.calls) == 1 and not again.sent  # asked the host once, sent nothing
    # a link pointed elsewhere is put back without a download
    os.unlink(tmp_path / "bin/node_exporter")
    os.symlink("/bin/true", tmp_path / "bin/node_exporter")
    fixed = ri.ensure_release(FakeAction(), {}, spec, "x86_64", False)
    assert fixed["changed"] and not fixed["unpacked"] and os.readlink(tmp_path / "bin/node_exporter") == str(
        vdir / "node_exporter")
    assert mirror.hits[f"/prometheus/node_exporter/releases/download/v1.11.1/{NE_ASSET}"] == 1


@needs_mirror
def test_check_mode_reports_and_changes_nothing(tmp_path, mirror):
    spec = release(tmp_path, base_url=mirror.url, checksums={"amd64": ne_digest()})
    action = FakeAction(check=True)
    result = ri.ensure_release(action, {}, spec, "x86_64", True)
    assert result["changed"] and result["unpacked"] and "would be installed" in result["msg"]
    assert result["diff"]["after"] == f"node_exporter 1.11.1 ({NE_ASSET})\n"
    assert not (tmp_path / "opt").exists() and tree(tmp_path / "bin") == [] and not (tmp_path / "cache").exists()
    assert not mirror.hits and not action.sent
    # converged host: check mode says nothing to do
    ri.ensure_release(FakeAction(), {}, spec, "x86_64", False)
    assert ri.ensure_release(FakeAction(check=True), {}, spec, "x86_64", True)["changed"] is False
    # host download in check mode downloads nothing either
    shutil.rmtree(tmp_path / "opt")
    hits = sum(mirror.hits.values())
    host = dict(spec, download_on="host")
    result = ri.ensure_release(FakeAction(check=True), {}, host, "x86_64", True)
    assert result["changed"] and not (tmp_path / "opt/node_exporter/1.11.1").exists()
    assert sum(mirror.hits.values()) == hits


@needs_mirror
def test_download_on_host_verifies_against_the_sums_file(tmp_path, mirror):
    spec = release(tmp_path, base_url=f"file://{MIRROR}", download_on="host")
    action = FakeAction()
    result = ri.ensure_release(action, {}, spec, "x86_64", False)
    assert result["changed"] and result["unpacked"] and not action.sent
    assert [c[1].get("url") for c in action.calls] == [f"file://{NE_DIR}/{NE_ASSET}"]
    assert tree(tmp_path / "opt/node_exporter") == ["1.11.1", "1.11.1/node_exporter"]  # the download is gone
    # plain http with a wrong pin: the host refuses and keeps nothing
    bad = release(tmp_path / "b", base_url=mirror.url, download_on="host", checksums={"amd64": "1" * 64})
    result = ri.ensure_release(FakeAction(), {}, bad, "x86_64", False)
    assert result["failed"] and "but " + "1" * 64 + " expected" in result["msg"]
    assert tree(tmp_path / "b/opt") == ["node_exporter"]


@needs_mirror
def test_local_asset_and_a_single_binary(tmp_path):
    spec = release(tmp_path, method="local", local_path=str(NE_DIR / "node_exporter-1.11.1.linux-{arch}.tar.gz"))
    action = FakeAction()
    result = ri.ensure_release(action, {}, spec, "x86_64", False)
    assert result["changed"] and action.sent == [str(NE_DIR / NE_ASSET)] and not result["downloaded"]
    missing = ri.ensure_release(FakeAction(), {}, release(tmp_path / "m", method="local", local_path="/nope-{arch}"),
                                "aarch64", False)
    assert missing["failed"] and missing["msg"].startswith("node_exporter_local_archive: /nope-arm64 is not a file")
    checked = ri.ensure_release(FakeAction(check=True), {}, release(tmp_path / "m", method="local",
                                                                    local_path="/nope-{arch}"), "aarch64", True)
    assert checked["failed"] and "is not a file on the controller" in checked["msg"]
    cad_dir = MIRROR / "google/cadvisor/releases/download/v0.38.7"
    if not (cad_dir / "cadvisor").is_file():
        pytest.skip("no cAdvisor 0.38.7 in the mirror")
    cad = {"name": "cadvisor", "version": "0.38.7", "binaries": ["cadvisor"], "base_url": f"file://{MIRROR}",
           "cache_dir": str(tmp_path / "cache"), "version_dir": str(tmp_path / "opt/cadvisor/0.38.7"),
           "link_dir": str(tmp_path / "bin")}
    assert ri.ensure_release(FakeAction(), {}, cad, "x86_64", False)["changed"]
    assert (tmp_path / "opt/cadvisor/0.38.7/cadvisor").read_bytes() == (cad_dir / "cadvisor").read_bytes()


# --------------------------------------------------------------------------- the host module: safe unpacking

def make_tar(path, members):
    """members: (name, kind, data-or-linkname, mode)."""
    with tarfile.open(path, "w:gz") as tar:
        for name, kind, data, mode in members:
            info = tarfile.TarInfo(name)
            info.mode = mode
            if kind == "file":
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            elif kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif kind == "sym":
                info.type, info.linkname = tarfile.SYMTYPE, data
                tar.addfile(info)
            elif kind == "hard":
                info.type, info.linkname = tarfile.LNKTYPE, data
                tar.addfile(info)
            elif kind == "fifo":
                info.type = tarfile.FIFOTYPE
                tar.addfile(info)
    return str(path)


def run_module(tmp_path, src, check=False, **params):
    args = {"dest": str(tmp_path / "opt/x/1.0.0"), "binaries": ["x"], "binary_subdir": "", "src": src, "url": None,
            "checksum": None, "format": "tar", "strip_top": True, "unpack_all": False,
            "link_dir": str(tmp_path / "bin"), "remove_src": False, "timeout": 5}
    args.update(params)
    (tmp_path / "bin").mkdir(exist_ok=True)
    return mod.install(SimpleNamespace(check_mode=check), args)


@pytest.mark.parametrize("members,message", [
    ([("x-1/x", "file", b"#!/bin/sh\n", 0o755), ("x-1/../../../escaped", "file", b"evil", 0o644)], "'..' component"),
    ([("x-1/x", "file", b"#!/bin/sh\n", 0o755), ("/tmp/absolute-member", "file", b"evil", 0o644)], "absolute path"),
    ([("x-1/x", "file", b"#!/bin/sh\n", 0o755), ("x-1/out", "sym", "../../../../etc", 0o777)], "outside the release"),
    ([("x-1/x", "file", b"#!/bin/sh\n", 0o755), ("x-1/abs", "sym", "/etc/shadow", 0o777)], "outside the release"),
    # q -> . then p -> q/.. : lexically inside, really the parent of the release
    ([("x-1/x", "file", b"#!/bin/sh\n", 0o755), ("x-1/q", "sym", ".", 0o777), ("x-1/p", "sym", "q/..", 0o777)],
     "outside the release"),
    ([("x-1/x", "file", b"#!/bin/sh\n", 0o755), ("x-1/h", "hard", "/etc/passwd", 0o644)], "hard link"),
    ([("x-1/x", "file", b"#!/bin/sh\n", 0o755), ("x-1/fifo", "fifo", None, 0o644)], "device or FIFO"),
])
def test_unsafe_archives_are_refused_whole(tmp_path, members, message):
    src = make_tar(tmp_path / "bad.tar.gz", members)
    with pytest.raises(ReleaseError, match=message):
        run_module(tmp_path, src, unpack_all=True)
    assert not (tmp_path / "opt/x/1.0.0").exists() and tree(tmp_path / "opt/x") == []  # no half-made directory
    assert not Path("/tmp/absolute-member").exists() and not (tmp_path.parent / "escaped").exists()
    assert tree(tmp_path / "bin") == []


def test_traversal_is_refused_even_when_only_the_binaries_are_unpacked(tmp_path):
    src = make_tar(tmp_path / "bad.tar.gz", [("x-1/x", "file", b"#!/bin/sh\n", 0o755),
                                             ("x-1/../../escaped", "file", b"evil", 0o644)])
    with pytest.raises(ReleaseError, match="'..' component"):
        run_module(tmp_path, src)


def test_whole_tree_with_inner_links_modes_and_no_setuid(tmp_path):
    src = make_tar(tmp_path / "g.tar.gz", [
        ("g-1.0.0/", "dir", None, 0o777), ("g-1.0.0/bin/", "dir", None, 0o755),
        ("g-1.0.0/bin/x", "file", b"#!/bin/sh\necho hi\n", 0o4777),
        ("g-1.0.0/conf/defaults.ini", "file", b"a=1\n", 0o666),
        ("g-1.0.0/conf/link.ini", "sym", "defaults.ini", 0o777),
        ("g-1.0.0/bin/same", "hard", "g-1.0.0/bin/x", 0o755),
    ])
    result = run_module(tmp_path, src, unpack_all=True, binary_subdir="bin/")
    dest = tmp_path / "opt/x/1.0.0"
    assert result["changed"] and result["members"] == 5  # the top folder itself is stripped
    assert tree(dest) == ["bin", "bin/same", "bin/x", "conf", "conf/defaults.ini", "conf/link.ini"]
    assert oct((dest / "bin/x").stat().st_mode & 0o7777) == "0o755"
    assert oct((dest / "conf/defaults.ini").stat().st_mode & 0o7777) == "0o644"
    assert os.readlink(dest / "conf/link.ini") == "defaults.ini"
    assert os.readlink(tmp_path / "bin/x") == str(dest / "bin/x")
    assert run_module(tmp_path, src, unpack_all=True, binary_subdir="bin/")["changed"] is False


def test_missing_binary_names_the_members(tmp_path):
    src = make_tar(tmp_path / "a.tar.gz", [("x-1/other", "file", b"", 0o755)])
    with pytest.raises(ReleaseError, match=r"the archive has no top folder with x \(its members: x-1/other\)"):
        run_module(tmp_path, src)


def test_incomplete_version_directory_is_replaced(tmp_path):
    src = make_tar(tmp_path / "a.tar.gz", [("x-1/x", "file", b"#!/bin/sh\n", 0o755)])
    dest = tmp_path / "opt/x/1.0.0"
    dest.mkdir(parents=True)
    (dest / "leftover").write_text("half a release")
    assert run_module(tmp_path, src)["changed"]
    assert tree(tmp_path / "opt/x") == ["1.0.0", "1.0.0/x"]


def test_module_without_source_only_reports(tmp_path):
    result = run_module(tmp_path, None)
    assert result == {"changed": False, "dest": str(tmp_path / "opt/x/1.0.0"), "installed": False, "unpacked": False,
                      "missing": [str(tmp_path / "opt/x/1.0.0/x")], "links_changed": []}
    assert not (tmp_path / "opt").exists()


def test_module_refuses_a_wrong_digest_of_the_sent_file(tmp_path):
    src = make_tar(tmp_path / "a.tar.gz", [("x-1/x", "file", b"#!/bin/sh\n", 0o755)])
    with pytest.raises(ReleaseError, match="not installed"):
        run_module(tmp_path, src, checksum="sha256:" + "2" * 64)
    assert tree(tmp_path / "opt/x") == []


def test_module_documentation_parses():
    import yaml
    for block in (mod.DOCUMENTATION, mod.EXAMPLES, mod.RETURN):
        assert yaml.safe_load(block)
    doc = subprocess.run([str(Path(sys.executable).with_name("ansible-doc")), "-t", "module",
                          "monstack.stack.install_release", "--json"], capture_output=True, text=True,
                         env={**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")}, cwd=REPO)
    assert doc.returncode == 0, doc.stderr
    options = json.loads(doc.stdout)["monstack.stack.install_release"]["doc"]["options"]
    assert {"dest", "binaries", "src", "url", "checksum", "unpack_all", "strip_top", "link_dir"} <= set(options)


# --------------------------------------------------------------------------- through ansible-playbook

def playbook(tmp_path, inventory, hosts, spec, arch, check=False):
    play = [{"hosts": hosts, "gather_facts": False, "tasks": [
        {"name": "Release", "release_install_run": {"release": spec, "arch": arch}, "register": "out"},
        {"name": "Show", "ansible.builtin.debug": {"var": "out"}}]}]
    (tmp_path / "play.yml").write_text(json.dumps(play))
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_ACTION_PLUGINS": str(REPO / "tests/unit/release_action"), "ANSIBLE_STDOUT_CALLBACK": "json",
           "ANSIBLE_HOST_KEY_CHECKING": "False"}
    cmd = [str(Path(sys.executable).with_name("ansible-playbook")), "-i", inventory, str(tmp_path / "play.yml")]
    proc = subprocess.run(cmd + (["--check"] if check else []), capture_output=True, text=True, env=env, cwd=REPO,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(proc.stdout)["plays"][0]["tasks"][0]["hosts"]


@needs_mirror
def test_through_ansible_playbook_on_localhost(tmp_path, mirror):
    spec = release(tmp_path, base_url=mirror.url, checksums={"amd64": ne_digest()})
    inv = tmp_path / "inv.yml"
    inv.write_text(json.dumps({"all": {"hosts": {"localhost": {"ansible_connection": "local",
                                                               "ansible_python_interpreter": sys.executable}}}}))
    inv = str(inv)
    first = playbook(tmp_path, inv, "localhost", spec, "x86_64")["localhost"]
    assert first["changed"] and first["unpacked"] and first["downloaded"], first
    assert os.readlink(tmp_path / "bin/node_exporter") == spec["version_dir"] + "/node_exporter"
    again = playbook(tmp_path, inv, "localhost", spec, "x86_64")["localhost"]
    assert again["changed"] is False
    assert mirror.hits[f"/prometheus/node_exporter/releases/download/v1.11.1/{NE_ASSET}"] == 1


REAL_HOST = os.environ.get("MONSTACK_RELEASE_TEST_HOST", "")


@needs_mirror
@pytest.mark.skipif(not REAL_HOST, reason="set MONSTACK_RELEASE_TEST_HOST to a running systemd test container")
def test_real_host_node_exporter_installed_and_linked(tmp_path, mirror):
    """node_exporter 1.11.1 downloaded once on the controller (loopback mirror), sent to a systemd
    container, unpacked to /opt/monstack/node_exporter/1.11.1, linked, runnable; a rerun changes
    nothing; check mode on the converged host changes nothing."""
    spec = {"name": "node_exporter", "version": "1.11.1", "binaries": ["node_exporter"], "base_url": mirror.url,
            "checksums": {"amd64": ne_digest()}, "cache_dir": str(tmp_path / "cache")}
    inv = tmp_path / "inv.yml"
    inv.write_text(json.dumps({"all": {"hosts": {REAL_HOST: {"ansible_connection": "community.docker.docker"}}}}))
    subprocess.run(["docker", "exec", REAL_HOST, "rm", "-rf", "/opt/monstack/node_exporter",
                    "/usr/local/bin/node_exporter"], check=True)
    first = playbook(tmp_path, str(inv), "all", spec, "x86_64")[REAL_HOST]
    assert first["changed"] and first["unpacked"], first
    link = subprocess.run(["docker", "exec", REAL_HOST, "readlink", "/usr/local/bin/node_exporter"],
                          capture_output=True, text=True, check=True).stdout.strip()
    assert link == "/opt/monstack/node_exporter/1.11.1/node_exporter"
    version = subprocess.run(["docker", "exec", REAL_HOST, "node_exporter", "--version"], capture_output=True,
                             text=True, check=True)
    assert "version 1.11.1" in version.stdout + version.stderr
    listing = subprocess.run(["docker", "exec", REAL_HOST, "find", "/opt/monstack/node_exporter", "-printf",
                              "%p %u %m\\n"], capture_output=True, text=True, check=True).stdout.split("\n")
    assert sorted(filter(None, listing)) == ["/opt/monstack/node_exporter root 755",
                                             "/opt/monstack/node_exporter/1.11.1 root 755",
                                             "/opt/monstack/node_exporter/1.11.1/node_exporter root 755"]
    assert playbook(tmp_path, str(inv), "all", spec, "x86_64")[REAL_HOST]["changed"] is False
    assert playbook(tmp_path, str(inv), "all", spec, "x86_64", check=True)[REAL_HOST]["changed"] is False
    assert mirror.hits[f"/prometheus/node_exporter/releases/download/v1.11.1/{NE_ASSET}"] == 1


def test_modes_do_not_depend_on_the_umask(tmp_path):
    src = make_tar(tmp_path / "a.tar.gz", [("x-1/bin/", "dir", None, 0o700), ("x-1/bin/x", "file", b"#!/bin/sh\n", 0o700)])
    old = os.umask(0o077)
    try:
        run_module(tmp_path, src, binary_subdir="bin/", dest=str(tmp_path / "opt/new/x/1.0.0"))
    finally:
        os.umask(old)
    for path in ("opt/new", "opt/new/x", "opt/new/x/1.0.0", "opt/new/x/1.0.0/bin", "opt/new/x/1.0.0/bin/x"):
        assert oct((tmp_path / path).stat().st_mode & 0o777) == "0o755", path


def test_a_binary_linked_inside_the_release_counts_as_installed(tmp_path):
    src = make_tar(tmp_path / "a.tar.gz", [("x-1/real", "file", b"#!/bin/sh\n", 0o755), ("x-1/x", "sym", "real", 0o777)])
    assert run_module(tmp_path, src, unpack_all=True)["unpacked"]
    again = run_module(tmp_path, src, unpack_all=True)
    assert again["changed"] is False and again["installed"]
    assert os.path.exists(src)  # not sent by the controller: kept
    assert run_module(tmp_path, src, unpack_all=True, remove_src=True)["changed"] is False and not os.path.exists(src)


@needs_mirror
def test_upgrade_then_rollback_is_a_link_switch(tmp_path):
    if not (MIRROR / "prometheus/node_exporter/releases/download/v1.5.0").is_dir():
        pytest.skip("no node_exporter 1.5.0 in the mirror")
    base = {"base_url": f"file://{MIRROR}", "install_root": str(tmp_path / "opt")}
    old = release(tmp_path, version="1.5.0", version_dir="", **base)
    new = release(tmp_path, version_dir="", **base)
    assert ri.ensure_release(FakeAction(), {}, old, "x86_64", False)["unpacked"]
    upgrade = ri.ensure_release(FakeAction(), {}, new, "x86_64", False)
    assert upgrade["unpacked"] and os.readlink(tmp_path / "bin/node_exporter") == str(
        tmp_path / "opt/node_exporter/1.11.1/node_exporter")
    action = FakeAction()
    rollback = ri.ensure_release(action, {}, old, "x86_64", False)
    assert rollback["changed"] and not rollback["unpacked"] and not action.sent
    assert os.readlink(tmp_path / "bin/node_exporter") == str(tmp_path / "opt/node_exporter/1.5.0/node_exporter")
    assert tree(tmp_path / "opt/node_exporter") == ["1.11.1", "1.11.1/node_exporter", "1.5.0", "1.5.0/node_exporter"]


# --------------------------------------------------------------------------- downloads through a proxy (issue 28)

class Proxy(http.server.ThreadingHTTPServer):
    """A forward HTTP proxy on loopback: records every request (absolute URL, Proxy-Authorization),
    forwards it, and can ask for credentials or tamper with what it forwards."""

    daemon_threads = True

    def __init__(self, credentials=None, tamper=False):
        self.seen, self.credentials, self.tamper = [], credentials, tamper
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                auth = self.headers.get("Proxy-Authorization")
                server.seen.append((self.path, auth))
                if server.credentials and auth != "Basic " + base64.b64encode(server.credentials.encode()).decode():
                    self.send_response(407)
                    self.send_header("Proxy-Authenticate", 'Basic realm="test"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                try:
                    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(self.path, timeout=30) as up:
                        body = up.read()
                except urllib.error.HTTPError as err:
                    body, code = err.read(), err.code
                else:
                    code = 200
                if server.tamper and code == 200 and len(body) > 1000:
                    body = body[:500] + bytes([body[500] ^ 1]) + body[501:]
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def url(self, userinfo=""):
        return "http://%s127.0.0.1:%d" % (userinfo + "@" if userinfo else "", self.server_address[1])

    def close(self):
        self.shutdown()
        self.server_close()


@pytest.fixture
def proxy(monkeypatch):
    for name in ("no_proxy", "NO_PROXY", "http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    server = Proxy(credentials="fetch:s3cret-proxy-pw")
    yield server
    server.close()


ASSET_PATH = f"/prometheus/node_exporter/releases/download/v1.11.1/{NE_ASSET}"


@needs_mirror
@pytest.mark.parametrize("where", ["controller", "host"])
def test_downloads_go_through_the_proxy_with_its_credentials(tmp_path, mirror, proxy, where):
    spec = release(tmp_path, base_url=mirror.url, checksums={"amd64": ne_digest()}, download_on=where)
    action = FakeAction()
    secret = {"monstack_download_proxy": proxy.url("fetch:s3cret-proxy-pw")}
    result = ri.ensure_release(action, secret, spec, "x86_64", False)
    assert result["changed"] and result["unpacked"], result
    assert tree(tmp_path / "opt/node_exporter") == ["1.11.1", "1.11.1/node_exporter"]
    assert [path for path, _ in proxy.seen] == [mirror.url + ASSET_PATH], proxy.seen
    assert mirror.hits == Counter({ASSET_PATH: 1})  # the proxy fetched it, nobody else
    assert "s3cret" not in json.dumps(result)
    # the host module got the proxy (a no_log option), the controller sent the file itself
    assert [c[1].get("proxy") for c in action.calls if "url" in c[1]] == ([secret["monstack_download_proxy"]]
                                                                         if where == "host" else [])
    assert bool(action.sent) is (where == "controller")


@needs_mirror
def test_a_sums_file_comes_through_the_proxy_too(tmp_path, mirror, proxy):
    spec = release(tmp_path, base_url=f"file://{MIRROR}", download_on="host",
                   checksum_ref=f"sha256:{mirror.url}/prometheus/node_exporter/releases/download/v1.11.1/sha256sums.txt")
    # a sums file over plain http is still refused, proxy or not (the checksum rules are unchanged)
    result = ri.ensure_release(FakeAction(), {"monstack_download_proxy": proxy.url("fetch:s3cret-proxy-pw")}, spec,
                               "x86_64", False)
    assert result["failed"] and "plain HTTP" in result["msg"] and proxy.seen == []


@needs_mirror
@pytest.mark.parametrize("where", ["controller", "host"])
def test_a_proxy_that_changes_the_download_is_caught_by_the_checksum(tmp_path, mirror, monkeypatch, where):
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    tampering = Proxy(tamper=True)
    try:
        spec = release(tmp_path, base_url=mirror.url, checksums={"amd64": ne_digest()}, download_on=where)
        result = ri.ensure_release(FakeAction(), {"monstack_download_proxy": tampering.url()}, spec, "x86_64", False)
    finally:
        tampering.close()
    assert result["failed"] and ne_digest() + " expected" in result["msg"], result
    assert tree(tmp_path / "opt/node_exporter") in ([], ["1.11.1"]) and not list((tmp_path / "cache").rglob("*.gz"))
    assert len(tampering.seen) == 1


@needs_mirror
def test_wrong_proxy_credentials_fail_without_showing_them(tmp_path, mirror, proxy):
    spec = release(tmp_path, base_url=mirror.url, checksums={"amd64": ne_digest()})
    result = ri.ensure_release(FakeAction(), {"monstack_download_proxy": proxy.url("fetch:wrong-pw")}, spec,
                               "x86_64", False)
    assert result["failed"] and "407" in result["msg"] and "wrong-pw" not in result["msg"], result
    assert mirror.hits == Counter()


@pytest.mark.parametrize("value", ["proxy.corp.test:3128", "socks5://p:1080", "http://user:pw@p:3128/x y",
                                   "http://p:3128/path"])
def test_a_bad_proxy_value_is_refused_without_showing_it(tmp_path, value):
    result = ri.ensure_release(FakeAction(), {"monstack_download_proxy": value}, release(tmp_path), "x86_64", False)
    assert result["failed"] and result["msg"].startswith("monstack_download_proxy: must be a proxy URL")
    assert value not in result["msg"]
