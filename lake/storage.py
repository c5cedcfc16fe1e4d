"""Where the lake lives: a local folder, S3 (``s3a://``) or ADLS Gen2 (``abfss://``), from settings only.

Two readers, one set of settings:
- **Spark** reaches an object store through Hadoop's own connectors (hadoop-aws, hadoop-azure 3.4.2,
  the Hadoop pyspark 4.1.1 bundles), installed by `learntrack stack install` in sub-folders of the
  Spark jars folder and put on the class path only when the lake needs them (``connector_jars``),
  configured by ``spark_conf``.
- **delta-rs** (``learntrack sql`` through DuckDB, ``learntrack tables``, the report) opens the same
  tables with ``delta_rs_options``: object_store's names for the same endpoint and credentials.

Credentials come from the environment (``LEARNTRACK_S3_*``, ``LEARNTRACK_AZURE_*``); left empty,
each library falls back to its own default chain (AWS env/profile/instance role; for ADLS, set
them). Delta's log store follows the scheme: S3 is safe for one writing Spark driver per table at a
time (``S3SingleDriverLogStore``), ADLS for many (atomic rename). docs/object-storage.md, ADR 29.
"""

from __future__ import annotations

from pathlib import Path

#: URI schemes delta-rs reads with the options below (and Spark with the connectors).
S3_SCHEMES = ("s3a", "s3")
AZURE_SCHEMES = ("abfss", "abfs")
#: Sub-folder of the Spark jars folder holding each connector (stack/resources/spark/install.sh).
CONNECTORS = {"s3a": "s3a", "s3": "s3a", "abfss": "abfs", "abfs": "abfs"}


def scheme(uri: str) -> str:
    """``s3a``, ``abfss`` ...; ``file`` for a local path or ``file://`` URI."""
    return uri.split("://", 1)[0].lower() if "://" in uri else "file"


def local_path(uri: str) -> str | None:
    """The folder of a local lake (a path or ``file://`` URI); None for an object store."""
    if "://" not in uri:
        return uri
    return uri[len("file://"):] if uri.startswith("file://") else None


def connector_jars(settings) -> list[str]:
    """The Hadoop connector jars the lake's scheme needs (none for a local lake)."""
    folder = CONNECTORS.get(scheme(settings.lake_uri))
    if folder is None:
        return []
    jars = sorted(str(p) for p in (settings.jars_dir / folder).glob("*.jar"))
    if not jars:
        raise RuntimeError(f"the lake {settings.lake_uri} needs the {folder} connector jars in "
                           f"{settings.jars_dir / folder}; run `learntrack stack install`")
    return jars


def _azure_account(uri: str) -> str:
    """``container@account.dfs.core.windows.net/...`` -> ``account.dfs.core.windows.net``."""
    host = uri.split("://", 1)[1].split("/", 1)[0]
    return host.split("@", 1)[1] if "@" in host else host


def spark_conf(settings) -> dict[str, str]:
    """Hadoop connector settings for the lake's object store, as Spark conf (``spark.hadoop.*``).

    Only what the settings say is emitted; LEARNTRACK_SPARK_CONF entries are applied after these
    and win (any other fs.s3a.* / fs.azure.* key goes there)."""
    kind = scheme(settings.lake_uri)
    conf: dict[str, str] = {}
    h = "spark.hadoop."
    if kind in S3_SCHEMES:
        if kind == "s3":  # Hadoop has no s3:// file system of its own; S3A serves it
            conf[h + "fs.s3.impl"] = "org.apache.hadoop.fs.s3a.S3AFileSystem"
        conf[h + "fs.s3a.endpoint.region"] = settings.s3_region
        if settings.s3_endpoint:
            # An S3-compatible store (s3proxy, MinIO, Ceph): bucket in the path, not the host name.
            conf[h + "fs.s3a.endpoint"] = settings.s3_endpoint
            conf[h + "fs.s3a.path.style.access"] = "true"
            conf[h + "fs.s3a.connection.ssl.enabled"] = str(settings.s3_endpoint.startswith("https")).lower()
        if settings.s3_access_key:
            conf[h + "fs.s3a.aws.credentials.provider"] = "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider"
            conf[h + "fs.s3a.access.key"] = settings.s3_access_key
            conf[h + "fs.s3a.secret.key"] = settings.s3_secret_key
    elif kind in AZURE_SCHEMES:
        account = _azure_account(settings.lake_uri)
        if settings.azure_storage_key:
            conf[h + f"fs.azure.account.auth.type.{account}"] = "SharedKey"
            conf[h + f"fs.azure.account.key.{account}"] = settings.azure_storage_key
        elif settings.azure_client_id:
            conf[h + f"fs.azure.account.auth.type.{account}"] = "OAuth"
            conf[h + f"fs.azure.account.oauth.provider.type.{account}"] = \
                "org.apache.hadoop.fs.azurebfs.oauth2.ClientCredsTokenProvider"
            conf[h + f"fs.azure.account.oauth2.client.id.{account}"] = settings.azure_client_id
            conf[h + f"fs.azure.account.oauth2.client.secret.{account}"] = settings.azure_client_secret
            conf[h + f"fs.azure.account.oauth2.client.endpoint.{account}"] = \
                f"https://login.microsoftonline.com/{settings.azure_tenant_id}/oauth2/token"
    return conf


def delta_rs_options(settings) -> dict[str, str]:
    """delta-rs (object_store) storage options for the lake: the same store and credentials as
    ``spark_conf``. Empty for a local lake."""
    kind = scheme(settings.lake_uri)
    if kind in S3_SCHEMES:
        opts = {"AWS_REGION": settings.s3_region}
        if settings.s3_endpoint:
            opts.update(AWS_ENDPOINT_URL=settings.s3_endpoint, AWS_VIRTUAL_HOSTED_STYLE_REQUEST="false")
            if settings.s3_endpoint.startswith("http://"):
                opts["AWS_ALLOW_HTTP"] = "true"
        if settings.s3_access_key:
            opts.update(AWS_ACCESS_KEY_ID=settings.s3_access_key, AWS_SECRET_ACCESS_KEY=settings.s3_secret_key)
        return opts
    if kind in AZURE_SCHEMES:
        opts = {"AZURE_STORAGE_ACCOUNT_NAME": _azure_account(settings.lake_uri).split(".", 1)[0]}
        if settings.azure_storage_key:
            opts["AZURE_STORAGE_ACCOUNT_KEY"] = settings.azure_storage_key
        elif settings.azure_client_id:
            opts.update(AZURE_CLIENT_ID=settings.azure_client_id, AZURE_CLIENT_SECRET=settings.azure_client_secret,
                        AZURE_TENANT_ID=settings.azure_tenant_id)
        return opts
    return {}


def delta_rs_readable(lake_uri: str) -> bool:
    """Whether delta-rs (and so DuckDB) reads this lake with ``delta_rs_options``."""
    return scheme(lake_uri) in ("file", *S3_SCHEMES, *AZURE_SCHEMES)


def open_delta(settings, path: str, **kwargs):
    """A delta-rs ``DeltaTable`` at ``path`` (a table under the lake), wherever the lake lives."""
    from deltalake import DeltaTable

    local = local_path(path)
    return DeltaTable(local if local is not None else path, storage_options=delta_rs_options(settings) or None,
                      **kwargs)


def is_delta_table(settings, path: str) -> bool:
    """Whether a Delta table has been written at ``path``, without Spark."""
    local = local_path(path)
    if local is not None:
        return (Path(local) / "_delta_log").is_dir()
    from deltalake.exceptions import TableNotFoundError

    try:
        open_delta(settings, path)
    except TableNotFoundError:
        return False
    return True
