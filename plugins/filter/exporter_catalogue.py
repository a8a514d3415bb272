"""Filter plugins: the exporter catalogue (roles/exporters) as data.

exporter_catalogue checks the entries and merges the user's over the shipped ones;
exporter_components makes the component specs of one host's entries (the input of the
action monstack.stack.component); exporter_scrape_jobs makes Prometheus' jobs of the
entries. The work is in plugins/plugin_utils/exporter_catalogue.py. Documented for
ansible-doc in one <filter name>.yml file each, beside this file.
"""
from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.monstack.stack.plugins.plugin_utils import exporter_catalogue as logic


def monstack_exporter_catalogue(user_entries=None):
    """The shipped entries with ``user_entries`` (exporters_entries) merged over them, checked."""
    try:
        return logic.catalogue(user_entries)
    except logic.CatalogueError as err:
        raise AnsibleFilterError(str(err)) from None


def monstack_exporter_components(entries, group_names, groups, base_url="", secrets=None, ip_allow=None,
                                 ip_restrict=True, prometheus_group="prometheus"):
    """The component specs of the catalogue entries of a host in ``group_names``."""
    try:
        return logic.components(entries, group_names, groups, base_url, secrets, list(ip_allow or []),
                                bool(ip_restrict), prometheus_group)
    except (logic.CatalogueError, KeyError, TypeError) as err:
        raise AnsibleFilterError("exporter_components: %s (give the output of exporter_catalogue)" % err) from None


def monstack_exporter_scrape_jobs(entries, groups):
    """Prometheus' inventory jobs of the catalogue entries that have hosts."""
    try:
        return logic.scrape_jobs(entries, groups)
    except (KeyError, TypeError) as err:
        raise AnsibleFilterError("exporter_scrape_jobs: %s (give the output of exporter_catalogue)" % err) from None


class FilterModule:
    """The exporter catalogue."""

    def filters(self):
        return {"exporter_catalogue": monstack_exporter_catalogue,
                "exporter_components": monstack_exporter_components,
                "exporter_scrape_jobs": monstack_exporter_scrape_jobs}
