"""Provider metadata Airflow reads through the `apache_airflow_provider` entry point.

A literal, importing nothing: Airflow calls it in every process that discovers providers, so it must
not pull in the core (or Ray). tests/airflow/test_provider.py checks the version against the package's.
"""

from __future__ import annotations

from typing import Any

VERSION = "0.1.0"  # the `raydog` distribution's version (pyproject.toml)


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "raydog",
        "name": "RayDog",
        "description": "Ray clusters on YellowDog (or on one machine) for exactly as long as a DAG run needs one.",
        "versions": [VERSION],
        "integrations": [{"integration-name": "RayDog", "tags": ["software"]}],
        "hooks": [{"integration-name": "RayDog", "python-modules": ["raydog_airflow.hooks.raydog"]}],
        "operators": [
            {
                "integration-name": "RayDog",
                "python-modules": ["raydog_airflow.operators.cluster", "raydog_airflow.operators.job"],
            }
        ],
        "triggers": [{"integration-name": "RayDog", "python-modules": ["raydog_airflow.triggers.raydog"]}],
        "extra-links": [
            "raydog_airflow.links.raydog.RayDashboardLink",
            "raydog_airflow.links.raydog.PostMortemLink",
        ],
        "connection-types": [
            {
                "connection-type": "raydog",
                "hook-class-name": "raydog_airflow.hooks.raydog.RayDogHook",
                "hook-name": "RayDog",
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port"],
                    "relabeling": {
                        "host": "YellowDog API URL",
                        "login": "YellowDog application key ID",
                        "password": "YellowDog application key secret",
                    },
                    "placeholders": {
                        "host": "https://api.yellowdog.ai (YellowDog backend only)",
                        "login": "empty for the local backend",
                    },
                },
                "conn-fields": {
                    "backend": {
                        "label": "Backend",
                        "description": "local: nodes are processes on the Airflow worker; yellowdog: YellowDog platform",
                        "schema": {"type": ["string", "null"], "enum": ["local", "yellowdog", None]},
                    },
                    "namespace": {
                        "label": "Namespace",
                        "description": "YellowDog namespace of clusters whose spec names none",
                        "schema": {"type": ["string", "null"]},
                    },
                    "ssh_user": {
                        "label": "SSH user",
                        "description": "user on the head node, to reach its dashboard through an SSH tunnel",
                        "schema": {"type": ["string", "null"]},
                    },
                    "ssh_private_key": {
                        "label": "SSH private key",
                        "schema": {"type": ["string", "null"], "format": "password"},
                    },
                    "ssh_private_key_file": {
                        "label": "SSH private key file",
                        "schema": {"type": ["string", "null"]},
                    },
                    "ssh_port": {"label": "SSH port", "schema": {"type": ["integer", "null"]}},
                    "ssh_host_key_fingerprint": {
                        "label": "SSH host key fingerprint",
                        "description": "SHA256:... of the head's host key (or give a known_hosts file)",
                        "schema": {"type": ["string", "null"]},
                    },
                    "ssh_known_hosts_file": {
                        "label": "SSH known_hosts file",
                        "schema": {"type": ["string", "null"]},
                    },
                    "ssh_skip_host_key_check": {
                        "label": "Skip the SSH host key check (insecure)",
                        "schema": {"type": ["boolean", "null"]},
                    },
                },
            }
        ],
    }
