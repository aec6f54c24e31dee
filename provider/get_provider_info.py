"""Provider metadata for Airflow's providers manager.

Airflow finds this function through the ``apache_airflow_provider`` entry point declared in
``pyproject.toml``. It must stay cheap: no Airflow, pydicom or core import happens here.

Examples
--------
>>> info = get_provider_info()
>>> info["package-name"], info["connection-types"][0]["connection-type"]
('dicomscrub', 'dicomscrub')
>>> info["connection-types"][0]["conn-fields"]["secret"]["schema"]["format"]
'password'
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

#: Connection type registered by the provider.
CONNECTION_TYPE = "dicomscrub"

#: Hook class that implements :data:`CONNECTION_TYPE`.
HOOK_CLASS = "dicomscrub.provider.hooks.DicomScrubHook"


def _package_version() -> str:
    try:
        return version("dicomscrub")
    except PackageNotFoundError:  # pragma: no cover - only when running from a bare checkout
        return "0.0.0"


def get_provider_info() -> dict[str, Any]:
    """Describe the dicomscrub provider to Airflow's providers manager.

    Returns
    -------
    dict
        Provider info following Airflow's ``provider_info.schema.json``: name, description,
        package name, versions, integrations, operators, hooks and the ``dicomscrub``
        connection type, whose ``secret`` field is declared through ``conn-fields`` with
        ``format: password`` (the Airflow 3.2+ replacement for form-widget methods).

    Examples
    --------
    >>> info = get_provider_info()
    >>> info["name"]
    'dicomscrub'
    >>> [op for entry in info["operators"] for op in entry["python-modules"]]
    ['dicomscrub.provider.operators']
    """
    integration = "dicomscrub"
    return {
        "package-name": "dicomscrub",
        "name": "dicomscrub",
        "description": (
            "De-identify DICOM studies: header, free text and burned-in pixel PHI, "
            "with a Parquet audit."
        ),
        "versions": [_package_version()],
        "integrations": [
            {
                "integration-name": integration,
                "external-doc-url": "https://github.com/dicomscrub/dicomscrub",
                "tags": ["software"],
            }
        ],
        "operators": [
            {
                "integration-name": integration,
                "python-modules": ["dicomscrub.provider.operators"],
            }
        ],
        "hooks": [
            {
                "integration-name": integration,
                "python-modules": ["dicomscrub.provider.hooks"],
            }
        ],
        "connection-types": [
            {
                "connection-type": CONNECTION_TYPE,
                "hook-class-name": HOOK_CLASS,
                "hook-name": "dicomscrub (pseudonymization secret)",
                "conn-fields": {
                    "secret": {
                        "label": "Pseudonymization secret",
                        "description": (
                            "Key of the HMAC that derives every pseudonym. Use the same value "
                            "on every worker and run so that pseudonyms stay consistent."
                        ),
                        "schema": {"type": ["string", "null"], "format": "password"},
                    },
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["host", "port", "login", "schema", "password", "extra"],
                    "relabeling": {},
                    "placeholders": {},
                },
            }
        ],
    }
