"""Copy inventories/example and make exactly the edits README.md lists, as a new user would.

README "Quick start for your own hosts" lists the edits; this module applies those
and nothing else, as text edits on the shipped files (comments and layout stay):
  1. hosts.yml: the host names and their addresses (ansible_host, optional SSH port);
     an empty grafana group when there is no Grafana to install;
  2. group_vars/all/main.yml: ansible_user; the mail relay of the e-mail receiver;
     for an offline controller the mirror URL, the versions the mirror holds and its
     cAdvisor sums file (the commented "Where the releases come from" block);
  3. the vault password (the example's own, "monstack-example-only", is used as is).
The preflight refuses the example vault's values (public) unless
monstack_allow_example_secrets is true: as a test of the example itself, this
copy sets it (group_vars/all/zz-example-test.yml), which no real copy does.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "inventories" / "example"
EXAMPLE_VAULT_PASSWORD = "monstack-example-only"
EXAMPLE_HOSTS = ["mon1.example.com", "mon2.example.com", "app1.example.com"]


def copy_example(dest: Path, hosts: list[tuple[str, str, int | None]], ansible_user: str,
                 smtp_smarthost: str, mirror_url: str | None = None,
                 mirror_versions: dict[str, str] | None = None, grafana: bool = False,
                 allow_example_secrets: bool = True) -> Path:
    """cp -r inventories/example <dest>, then the README's edits. Returns the vault password file.
    allow_example_secrets: let the preflight accept the example vault's values (this test's
    own, documented switch; False shows what a user's copy gets)."""
    shutil.copytree(EXAMPLE, dest)
    if allow_example_secrets:
        (dest / "group_vars" / "all" / "zz-example-test.yml").write_text(
            "---\n# A test of the example inventory itself: accept its public vault values.\n"
            "monstack_allow_example_secrets: true\n")
    assert len(hosts) == len(EXAMPLE_HOSTS), "the example has three hosts: give three"

    inv = dest / "hosts.yml"
    text = inv.read_text()
    for example, (name, address, port) in zip(EXAMPLE_HOSTS, hosts):
        old_address = re.search(rf"{re.escape(example)}:\n\s+ansible_host: (\S+)", text).group(1)
        new = f"ansible_host: {address}" + (f"\n      ansible_port: {port}" if port else "")
        text = text.replace(f"ansible_host: {old_address}", new, 1)
        text = text.replace(example, name)
    if not grafana:
        text = re.sub(r"(    grafana:[^\n]*\n      hosts:)\n        \S+:\n", r"\1 {}\n", text)
    inv.write_text(text)

    main = dest / "group_vars" / "all" / "main.yml"
    text = main.read_text()
    text = text.replace("ansible_user: deploy", f"ansible_user: {ansible_user}", 1)
    text = text.replace("alertmanager_smtp_smarthost: smtp.example.com:587",
                        f"alertmanager_smtp_smarthost: {smtp_smarthost}", 1)
    if mirror_url:
        text = text.replace("# monstack_download_base_url: https://artifacts.example.com/github",
                            f"monstack_download_base_url: {mirror_url}", 1)
        for name, version in (mirror_versions or {}).items():
            text, count = re.subn(rf"# {name}_version: \S+", f"{name}_version: {version}", text, count=1)
            assert count == 1, f"{name}_version is not in the example's mirror block"
        text, count = re.subn(r"cadvisor_checksums:\n  amd64: \"[^\"]*\"\n",
                              "cadvisor_checksums: {}\ncadvisor_checksums_file: sha256sums.txt\n", text, count=1)
        assert count == 1, "the example's cadvisor_checksums block changed"
    main.write_text(text)

    password_file = dest.parent / f"{dest.name}.vault-pass"
    password_file.write_text(EXAMPLE_VAULT_PASSWORD + "\n")
    password_file.chmod(0o600)
    return password_file
