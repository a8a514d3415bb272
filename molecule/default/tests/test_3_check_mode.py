"""`ansible-playbook --check` on the converged stack: runs clean, reports no change."""
from conftest import dump, playbook, recap_changed


def test_check_mode_reports_no_changes():
    run = playbook("site.yml", "--check")
    assert run.returncode == 0, run.stdout[-4000:]
    changed = recap_changed(run.stdout)
    assert changed and all(v == 0 for v in changed.values()), dump(changed) + run.stdout[-4000:]
