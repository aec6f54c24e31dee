"""The dicomscrub connection: where a task finds its pseudonymization secret.

A ``dicomscrub`` connection holds one value, the secret that keys every HMAC (pseudonyms,
UIDs, date shifts). It lives in the connection's ``secret`` field (declared with
``format: password`` in the provider info, stored in the connection's extra), so the UI
hides it and Airflow's secrets masker redacts it from task logs. For a connection URI the
password part works too. Define it in the UI, with the CLI, or as an environment variable::

    airflow connections add dicomscrub_default --conn-type dicomscrub \\
        --conn-extra '{"secret": "..."}'
    export AIRFLOW_CONN_DICOMSCRUB_DEFAULT='{"conn_type": "dicomscrub", "extra": {"secret": "..."}}'
    export AIRFLOW_CONN_DICOMSCRUB_DEFAULT='dicomscrub://:...@'
"""

from __future__ import annotations

from typing import Any, ClassVar

from airflow.sdk import BaseHook
from airflow.sdk.log import mask_secret

from dicomscrub.core.errors import ConfigurationError

from .get_provider_info import CONNECTION_TYPE

#: The name of the secret field in the connection's extra.
SECRET_FIELD = "secret"


class DicomScrubHook(BaseHook):
    """Read the pseudonymization secret from a ``dicomscrub`` connection.

    Nothing is read in ``__init__``; :meth:`get_secret` fetches the connection when a task
    runs, registers the value with Airflow's secrets masker and returns it. The value is
    never logged, returned as XCom or put into a template.

    Parameters
    ----------
    dicomscrub_conn_id
        The connection id (default ``dicomscrub_default``).

    Examples
    --------
    >>> import os
    >>> os.environ["AIRFLOW_CONN_DOCTEST_SCRUB"] = (
    ...     '{"conn_type": "dicomscrub", "extra": {"secret": "s3cr3t-doctest-value"}}')
    >>> hook = DicomScrubHook("doctest_scrub")
    >>> hook.get_secret() == "s3cr3t-doctest-value"
    True
    >>> del os.environ["AIRFLOW_CONN_DOCTEST_SCRUB"]
    """

    conn_name_attr: ClassVar[str] = "dicomscrub_conn_id"
    default_conn_name: ClassVar[str] = "dicomscrub_default"
    conn_type: ClassVar[str] = CONNECTION_TYPE
    hook_name: ClassVar[str] = "dicomscrub (pseudonymization secret)"

    def __init__(self, dicomscrub_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dicomscrub_conn_id = dicomscrub_conn_id

    def get_conn(self) -> str:
        """Return the secret (the hook's "connection" is the key itself)."""
        return self.get_secret()

    def get_secret(self) -> str:
        """Fetch the secret from the connection.

        Looks at the extra field ``secret`` (also under its prefixed form
        ``extra__dicomscrub__secret``), then at the connection password.

        Returns
        -------
        str
            The secret, already registered with the secrets masker.

        Raises
        ------
        ConfigurationError
            When the connection holds no secret. The message names the connection, never a
            value.
        """
        conn = self.get_connection(self.dicomscrub_conn_id)
        extra = conn.extra_dejson
        secret = (
            extra.get(SECRET_FIELD)
            or extra.get(f"extra__{CONNECTION_TYPE}__{SECRET_FIELD}")
            or conn.password
        )
        if not isinstance(secret, str) or not secret.strip():
            raise ConfigurationError(
                f"connection {self.dicomscrub_conn_id!r} has no secret: set its "
                f"{SECRET_FIELD!r} field (extra) or its password"
            )
        mask_secret(secret)
        return secret

    def test_connection(self) -> tuple[bool, str]:
        """Check that the connection holds a secret (the UI's *Test* button).

        Returns
        -------
        tuple of (bool, str)
            Success and a message without the secret.
        """
        try:
            self.get_secret()
        except ConfigurationError as exc:
            return False, str(exc)
        return True, "the connection holds a pseudonymization secret"
