"""The CI jobs of docs/deployments.md, as pasted, register a deployment on the operator's stack.

For each job (GitHub Actions, GitLab CI) a fresh Debian 12 container plays the CI runner: it
gets what the runner image gives (python3 with venv, git on GitHub's), the runner's
environment and the job's secrets; every shell step of the snippet then runs as written,
in order, with the runner's semantics ($GITHUB_ENV/$GITHUB_PATH, working-directory; GitLab's
one shell for before_script+script, world-writable checkout, file variables). Only what a
user fills in differs: the targets (a test host's exporters) and the git remotes, which are
local bare repositories in the runner. The jobs reach the scenario's hosts over SSH as `ops`
with sudo and the example vault, host key checking on; a run with a wrong host key must fail.
Needs the converged stack of test_operator_path.py (run after it; pytest orders the files).
"""
from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from conftest import HOSTS, ROOT, known_hosts, sh

DOC = ROOT / "docs" / "deployments.md"
EXPRESSION = re.compile(r"\$\{\{\s*([^}]+?)\s*\}\}")
GITHUB_SHA = "3f2c1ab9d0e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4"
RECORDS_TOKEN = "records-token-4711"
# The runner's own settings for reaching PyPI from this network (not part of any snippet).
RUNNER_PASS_ENV = ("PIP_CERT", "PIP_INDEX_URL", "PIP_DEFAULT_TIMEOUT", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
                   "http_proxy", "https_proxy", "no_proxy")
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def snippet(heading: str) -> dict:
    """The first ```yaml block under a '## <heading>' of docs/deployments.md."""
    text = DOC.read_text()
    section = text[text.index(f"\n## {heading}\n"):]
    block = re.search(r"^```yaml\n(.*?)^```$", section, re.M | re.S)
    assert block, f"no yaml block under '## {heading}'"
    return yaml.safe_load(block.group(1))


class Runner:
    """A fresh Debian container on the scenario's network, standing in for a CI runner."""

    def __init__(self, name: str, packages: list[str]):
        self.name = name
        network = subprocess.run(["docker", "inspect", "-f", "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} "
                                  "{{end}}", HOSTS[0]], check=True, capture_output=True, text=True).stdout.split()[0]
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
        mounts = ["-v", f"{CA_BUNDLE}:{CA_BUNDLE}:ro"] if Path(CA_BUNDLE).exists() else []
        subprocess.run(["docker", "run", "-d", "--name", name, "--network", network, *mounts,
                        "--entrypoint", "sleep", "monstack-test:debian12", "infinity"],
                       check=True, capture_output=True)
        self.env = {k: os.environ[k] for k in RUNNER_PASS_ENV if k in os.environ}
        # what the runner image has
        self.run("runner image", "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -qq -y "
                 f"--no-install-recommends {' '.join(packages)} >/dev/null", check=True)

    def run(self, title: str, script: str, env: dict | None = None, workdir: str = "/",
            check: bool = False) -> subprocess.CompletedProcess:
        env = {**self.env, **(env or {})}
        args = [arg for key, value in env.items() for arg in ("-e", f"{key}={value}")]
        start = time.monotonic()
        proc = subprocess.run(["docker", "exec", "-i", "-w", workdir, *args, self.name,
                               "bash", "--noprofile", "--norc", "-eo", "pipefail", "-s"],
                              input=script, capture_output=True, text=True, timeout=900)
        output = (proc.stdout + proc.stderr).strip()
        print(f"== {self.name}: {title}: rc={proc.returncode} in {time.monotonic() - start:.1f} s")
        if output:
            print("   " + "\n   ".join(output.splitlines()[-12:]))
        if check:
            assert proc.returncode == 0, f"{title}:\n{output[-4000:]}"
        return proc

    def put(self, path: str, data: bytes, mode: int = 0o600) -> None:
        self.put_tree(str(Path(path).parent), {Path(path).name: (data, mode)})

    def put_tree(self, directory: str, files: dict[str, tuple[bytes, int]]) -> None:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            for name, (data, mode) in files.items():
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = len(data), mode, int(time.time())
                tar.addfile(info, io.BytesIO(data))
        self.run(f"mkdir {directory}", f"mkdir -p {directory}", check=True)
        subprocess.run(["docker", "cp", "-", f"{self.name}:{directory}"], input=buffer.getvalue(), check=True)

    def remove(self) -> None:
        subprocess.run(["docker", "rm", "-f", self.name], capture_output=True)


def git_repos(runner: Runner, inventory: Path) -> None:
    """Bare repositories standing in for the remotes, at /srv/git in the runner: monstack (this
    tree plus the operator's inventory as inventories/production) and an empty records repository.
    Made on the controller: the GitLab runner has no git until its job installs it."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                            capture_output=True).stdout.decode().split("\0")
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com", "-c", "init.defaultBranch=main"]
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "monstack"
        for name in listed:
            path = ROOT / name
            if not name:
                continue
            if path.is_symlink():
                # the checkout's own link (collections/ -> the checkout as monstack.stack)
                # stays a link; a link out of the tree
                # (a worktree's .venv) is left out
                if path.resolve().is_relative_to(ROOT):
                    (src / name).parent.mkdir(parents=True, exist_ok=True)
                    os.symlink(os.readlink(path), src / name)
            elif path.is_file():
                (src / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, src / name)
        shutil.copytree(inventory, src / "inventories" / "production")
        (Path(tmp) / "records").mkdir()
        (Path(tmp) / "records" / "README").write_text("deployment records\n")
        for name, bare in (("monstack", "monstack.git"), ("records", "deployment-records.git")):
            for command in (["init", "-q"], ["add", "-A"], ["commit", "-qm", name],
                            ["clone", "-q", "--bare", ".", f"../git/{bare}"]):
                subprocess.run([*git, *command], cwd=Path(tmp) / name, check=True, capture_output=True)
        subprocess.run(["docker", "cp", f"{tmp}/git", f"{runner.name}:/srv/git"], check=True)


def secrets(operator, wrong_host_keys: bool = False) -> dict[str, str]:
    return {"RECORDS_TOKEN": RECORDS_TOKEN, "MONITORING_SSH_KEY": operator.key.read_text().strip(),
            "MONITORING_KNOWN_HOSTS": known_hosts(wrong_host_keys).rstrip("\n"),
            "MONITORING_VAULT_PASSWORD": operator.vault_pass.read_text().strip()}


def target_file(host: str, name: str) -> str:
    return sh(host, f"cat /etc/prometheus/file_sd/deployments/{name}", check=False).stdout


@pytest.fixture(scope="module")
def stack_ready():
    if sh(HOSTS[0], "test -x /usr/local/bin/prometheus", check=False).returncode != 0:
        pytest.fail("the stack is not converged: run test_operator_path.py first (molecule verify does)")


# ---------------------------------------------------------------------------
# GitHub Actions
# ---------------------------------------------------------------------------
class GitHubJob:
    WORKSPACE, TEMP = "/github/workspace", "/github/runner_temp"

    def __init__(self, runner: Runner, job: dict, context: dict[str, str]):
        self.runner, self.job, self.context = runner, job, context
        self.env = {"HOME": "/root", "CI": "true", "GITHUB_ACTIONS": "true", "GITHUB_WORKSPACE": self.WORKSPACE,
                    "RUNNER_TEMP": self.TEMP, "GITHUB_SHA": GITHUB_SHA, "GITHUB_RUN_ID": "4242",
                    "GITHUB_SERVER_URL": "https://github.com", "GITHUB_REPOSITORY": "example/exchange-rate-api",
                    "GITHUB_REF_NAME": context["github.ref_name"]}
        self.env.update({k: self.expand(str(v)) for k, v in job.get("env", {}).items()})
        self.path: list[str] = []
        runner.run("runner dirs", f"mkdir -p {self.WORKSPACE} {self.TEMP}", check=True)

    def expand(self, text: str) -> str:
        def value(match: re.Match) -> str:
            assert match.group(1) in self.context, f"expression not provided by the test: {match.group(0)}"
            return self.context[match.group(1)]
        return EXPRESSION.sub(value, text)

    def uses(self, step: dict) -> None:
        action, args = step["uses"].split("@")[0], {k: self.expand(str(v)) for k, v in step.get("with", {}).items()}
        if action == "actions/checkout":
            repo = args["repository"].split("/")[1]
            self.runner.run(f"checkout {repo}", f"git clone -q file:///srv/git/{repo}.git {args['path']}",
                            workdir=self.WORKSPACE, check=True)
        elif action == "actions/setup-python":
            version = self.runner.run("python", "python3 -c 'import sys; print(\"%d.%d\" % sys.version_info[:2])'",
                                      check=True).stdout.strip()
            assert version == args["python-version"], f"the runner has Python {version}"
        else:
            raise AssertionError(f"the test does not play {action}")

    def step(self, step: dict, overrides: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        if "uses" in step:
            self.uses(step)
            return subprocess.CompletedProcess([], 0, "", "")
        index = self.job["steps"].index(step)
        files = {"GITHUB_ENV": f"{self.TEMP}/env-{index}", "GITHUB_PATH": f"{self.TEMP}/path-{index}"}
        env = {**self.env, **{k: self.expand(str(v)) for k, v in step.get("env", {}).items()}, **files,
               **(overrides or {})}
        env["PATH"] = ":".join([*self.path, "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"])
        workdir = f"{self.WORKSPACE}/{step.get('working-directory', '')}".rstrip("/")
        self.runner.run("step files", f": > {files['GITHUB_ENV']}; : > {files['GITHUB_PATH']}", check=True)
        proc = self.runner.run(step.get("name", "run"), self.expand(step["run"]), env=env, workdir=workdir)
        exported = self.runner.run("step outputs", f"cat {files['GITHUB_ENV']}; echo ---; cat {files['GITHUB_PATH']}",
                                   check=True).stdout.split("---\n")
        self.env.update(line.split("=", 1) for line in exported[0].splitlines() if "=" in line)
        self.path[:0] = [line for line in exported[1].splitlines() if line]
        return proc


def test_github_actions_job_registers_a_deployment(operator, stack_ready):
    job = snippet("CI: GitHub Actions")["jobs"]["register-deployment"]
    target = f"{HOSTS[2]}:9100"  # the Debian 11 host's node_exporter stands in for the service
    runner = Runner(f"{HOSTS[0]}-ci-github", ["python3-venv", "git"])
    try:
        git_repos(runner, operator.inventory)
        context = {"github.ref_name": "1.4.2", "github.workspace": GitHubJob.WORKSPACE}
        context.update({f"secrets.{k}": v for k, v in secrets(operator).items()})
        run = GitHubJob(runner, job, context)
        run.env["TARGETS"] = target
        for step in job["steps"]:
            proc = run.step(step)
            assert proc.returncode == 0, f"step {step.get('name')!r} failed:\n{(proc.stdout + proc.stderr)[-5000:]}"
        for host in HOSTS[:2]:
            assert target in target_file(host, "production--exchange-rate-api.json"), host
        log = runner.run("records", "git --git-dir /srv/git/deployment-records.git log --format=%s", check=True)
        assert "deploy exchange-rate-api 1.4.2 to production (run 4242)" in log.stdout

        # Host key checking stays on: the same job with a wrong key for every host must not connect
        # (on a new connection: the first run's SSH master connections are dropped, as a new job has none).
        runner.run("drop SSH connections", "rm -rf /root/.ansible/cp", check=True)
        context.update({f"secrets.{k}": v for k, v in secrets(operator, wrong_host_keys=True).items()})
        by_name = {step.get("name"): step for step in job["steps"]}
        assert run.step(by_name["SSH and vault access to the monitoring hosts"]).returncode == 0
        proc = run.step(by_name["Register with monitoring"])
        assert proc.returncode != 0
        assert "Host key verification failed" in proc.stdout + proc.stderr, (proc.stdout + proc.stderr)[-3000:]
    finally:
        runner.remove()


# ---------------------------------------------------------------------------
# GitLab CI
# ---------------------------------------------------------------------------
def test_gitlab_ci_job_registers_a_deployment(operator, stack_ready):
    job = snippet("CI: GitLab CI")["register-deployment"]
    target = f"{HOSTS[2]}:8080"  # the Debian 11 host's cAdvisor stands in for the service
    project_dir = "/builds/ml/fraud-scorer"
    # python:3.12-slim has python3 with venv and no git; the job installs git itself
    runner = Runner(f"{HOSTS[0]}-ci-gitlab", ["python3-venv"])
    try:
        git_repos(runner, operator.inventory)
        secret = secrets(operator)
        runner.put("/builds/tmp/MONITORING_SSH_KEY", (secret.pop("MONITORING_SSH_KEY") + "\n").encode())
        # the git remotes of the snippet, redirected to the local bare repositories
        runner.put("/root/.gitconfig", (
            '[url "file:///srv/git/"]\n'
            f"\tinsteadOf = https://oauth2:{RECORDS_TOKEN}@gitlab.example.com/ops/\n"
            "\tinsteadOf = https://gitlab.example.com/ops/\n").encode(), 0o644)
        variables = {"CI": "true", "GITLAB_CI": "true", "HOME": "/root", "CI_PROJECT_DIR": project_dir,
                     "CI_PROJECT_NAME": "fraud-scorer", "CI_COMMIT_TAG": "2.0.1", "CI_COMMIT_SHORT_SHA": "ab12cd34",
                     "CI_PIPELINE_ID": "777",
                     "CI_PIPELINE_URL": "https://gitlab.example.com/ml/fraud-scorer/-/pipelines/777",
                     "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                     "MONITORING_SSH_KEY": "/builds/tmp/MONITORING_SSH_KEY", **secret}
        project = {"TARGETS": target}  # a CI/CD variable overrides the job's value
        for name, value in job["variables"].items():
            variables[name] = project.get(name) or re.sub(
                r"\$\{?(\w+)\}?", lambda m: variables.get(m.group(1), ""), str(value))
        script = "\n".join(["umask 0000"] + job["before_script"] + job["script"])  # the runner's checkout umask
        runner.run("project dir", f"mkdir -p {project_dir}", check=True)
        proc = runner.run("register-deployment", script, env=variables, workdir=project_dir)
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
        for host in HOSTS[:2]:
            assert target in target_file(host, "production--fraud-scorer.json"), host
        log = runner.run("records", "git --git-dir /srv/git/deployment-records.git log --format=%s", check=True)
        assert "deploy fraud-scorer 2.0.1 to production (pipeline 777)" in log.stdout
        # why ANSIBLE_CONFIG is set: Ansible ignores the world-writable checkout's ansible.cfg
        check = runner.run("ansible.cfg without ANSIBLE_CONFIG", f"stat -c %a .; {project_dir}/.ansible-venv/bin/"
                           "ansible-config dump --only-changed 2>&1 | head -5", workdir=f"{project_dir}/monstack",
                           env={"HOME": "/root"})
        assert check.stdout.startswith("777") and "world writable" in check.stdout, check.stdout
    finally:
        runner.remove()
