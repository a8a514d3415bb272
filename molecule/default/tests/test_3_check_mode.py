"""`ansible-playbook --check` on the converged stack: runs clean, reports no change."""
import json

from conftest import dump, playbook, recap_changed


def test_check_mode_reports_no_changes():
    run = playbook("site.yml", "--check")
    assert run.returncode == 0, run.stdout[-4000:]
    changed = recap_changed(run.stdout)
    assert changed and all(v == 0 for v in changed.values()), dump(changed) + run.stdout[-4000:]


# A second inventory name for monstack-app2: a host with the same variables, then with one
# of its own. The component action templates a spec once per run for hosts whose spec reads
# the same values (its result's `memo`); a host whose values differ must get its own.
TWIN = "monstack-app2-twin"


def twin_inventory(tmp_path, **twin_vars) -> str:
    host = {"ansible_connection": "community.docker.docker", "ansible_host": "monstack-app2", **twin_vars}
    path = tmp_path / "twin.yml"
    path.write_text(json.dumps({"all": {"children": {"apps": {"hosts": {TWIN: host}}}}}))
    return str(path)


def memo_of(output: str) -> dict[str, str]:
    """The component action's `memo` per host, from -v output."""
    found, host = {}, ""
    for line in output.splitlines():
        if line.startswith(("ok: [", "changed: [")):
            host = line.split("[", 1)[1].split("]")[0]
        elif line.strip().startswith("memo: ") and host:
            found[host] = line.split("memo: ", 1)[1].strip().strip("'")
    return found


def test_hosts_with_the_same_inputs_share_one_templating(tmp_path):
    run = playbook("playbooks/exporters.yml", "--check", "-v", "--limit", f"monstack-app2,{TWIN}",
                   extra_inventory=twin_inventory(tmp_path))
    assert run.returncode == 0, run.stdout[-4000:]
    assert recap_changed(run.stdout) == {"monstack-app2": 0, TWIN: 0}, run.stdout[-4000:]
    memo = memo_of(run.stdout)
    assert sorted(memo.values()) in (["hit", "stored"], ["stored", "waited"]), dump(memo)


def test_a_host_whose_inputs_differ_gets_its_own_spec(tmp_path):
    run = playbook("playbooks/exporters.yml", "--check", "--diff", "-v", "--limit", f"monstack-app2,{TWIN}",
                   extra_inventory=twin_inventory(tmp_path, cadvisor_housekeeping_interval="17s"))
    assert run.returncode == 0, run.stdout[-4000:]
    assert recap_changed(run.stdout) == {"monstack-app2": 0, TWIN: 1}, run.stdout[-4000:]
    assert "+    --housekeeping_interval=17s" in run.stdout, run.stdout[-4000:]
    assert memo_of(run.stdout) == {"monstack-app2": "stored", TWIN: "stored"}, dump(memo_of(run.stdout))
