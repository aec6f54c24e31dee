"""dicomscrub.provider: the Airflow 3 provider for dicomscrub.

Modules:

* :mod:`~dicomscrub.provider.get_provider_info`: provider metadata (entry point
  ``apache_airflow_provider``), including the ``dicomscrub`` connection type.
* :mod:`~dicomscrub.provider.hooks`: :class:`DicomScrubHook`, which reads the
  pseudonymization secret from a connection.
* :mod:`~dicomscrub.provider.operators`: :class:`DicomManifestOperator` (build or read a
  manifest, return its partition keys) and :class:`DicomRedactOperator` (de-identify one
  partition; map it with ``.partial(...).expand(partition=...)``).

Importing this package imports nothing from Airflow: the providers manager loads
``get_provider_info`` without paying for the operators.
"""
