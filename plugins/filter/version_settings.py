"""Filter plugin: what follows from a component's version (flags, configuration keys).

A thin wrapper over plugins/module_utils/versions.py (the version matrix, shared
with the preflight). Documented for ansible-doc in version_settings.yml beside this file.
"""
from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.monstack.stack.plugins.module_utils.versions import VersionError, settings


def version_settings(version, component, method="archive"):
    """Plain values (flag names, configuration keys to write) for this release of the component."""
    try:
        return settings(str(component), str(version), str(method))
    except VersionError as err:
        raise AnsibleFilterError("version_settings: %s_version: %s" % (component, err)) from None


class FilterModule:
    """The version matrix."""

    def filters(self):
        return {"version_settings": version_settings}
