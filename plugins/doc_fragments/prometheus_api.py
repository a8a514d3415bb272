# -*- coding: utf-8 -*-
# Copyright: monstack contributors
# SPDX-License-Identifier: Apache-2.0
"""The options with which the deployment modules reach Prometheus on their host (monstack)."""
from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  url:
    description: Prometheus' base URL on this host (scheme, address, port and route prefix), without C(/api/v1/...).
    type: str
    required: true
  user:
    description: Basic auth user (empty for none).
    type: str
    default: ""
  password:
    description: Basic auth password.
    type: str
    default: ""
  validate_certs:
    description: Verify Prometheus' TLS certificate (against O(ca_path) when given).
    type: bool
    default: false
  ca_path:
    description: A CA certificate (PEM) to verify Prometheus' certificate with; only with an C(https) O(url).
    type: path
  request_timeout:
    description: Seconds one request to Prometheus may take.
    type: int
    default: 10
"""
