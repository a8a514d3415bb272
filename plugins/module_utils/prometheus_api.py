# -*- coding: utf-8 -*-
# Copyright: monstack contributors
# SPDX-License-Identifier: Apache-2.0
"""How the deployment modules reach the Prometheus API of their host (monstack).

ARGUMENT_SPEC: the connection options (documented in the doc fragment
monstack.stack.prometheus_api); get_json(): one GET, its decoded JSON answer or
a short account of what went wrong, never the answer's own text.
"""
from __future__ import annotations

import json

from ansible.module_utils.common.text.converters import to_text
from ansible.module_utils.urls import open_url
from ansible.module_utils.six.moves.urllib.error import HTTPError

ARGUMENT_SPEC = dict(
    url=dict(type="str", required=True),
    user=dict(type="str", default=""),
    password=dict(type="str", default="", no_log=True),
    validate_certs=dict(type="bool", default=False),
    ca_path=dict(type="path"),
    request_timeout=dict(type="int", default=10),
)


def get_json(params, path):
    """GET ``path`` (with its query) of Prometheus at params["url"] -> (JSON answer or None, problem or None)."""
    url = params["url"].rstrip("/") + path
    try:
        answer = open_url(url, url_username=params["user"] or None, url_password=params["password"] or None,
                          force_basic_auth=bool(params["user"]), validate_certs=params["validate_certs"],
                          ca_path=params.get("ca_path") or None, timeout=params["request_timeout"])
        return json.loads(to_text(answer.read(), errors="surrogate_or_strict")), None
    except HTTPError as exc:
        return None, "%s %s" % (exc.code, exc.reason)
    except ValueError:
        return None, "200 not a JSON answer"
    except Exception as exc:  # pylint: disable=broad-except  # a connection error of any kind
        return None, "- %s" % to_text(getattr(exc, "reason", None) or exc)[:200]
