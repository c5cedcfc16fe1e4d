"""The lake on an object store is configuration: what Spark and delta-rs are told for each kind of
lake URI, and that every Hadoop key we emit is one the installed connector jars define."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from lake import storage
from learntrack.settings import Settings

ACCOUNT = "acct.dfs.core.windows.net"


def _settings(**kw) -> Settings:
    return Settings(**kw)


def test_a_local_lake_needs_no_connector_conf_or_options(tmp_path):
    for root in (str(tmp_path / "lake"), f"file://{tmp_path}/lake"):
        s = _settings(lake_root=root, s3_endpoint="http://127.0.0.1:1", s3_access_key="k", s3_secret_key="x")
        assert storage.spark_conf(s) == {} and storage.delta_rs_options(s) == {}
        assert storage.connector_jars(s) == [] and storage.scheme(root) == "file"
        assert storage.local_path(root) == str(tmp_path / "lake")


def test_an_s3_compatible_store_gets_endpoint_path_style_and_keys():
    s = _settings(lake_root="s3a://bucket/lake", s3_endpoint="http://127.0.0.1:18333", s3_access_key="learntrack",
                  s3_secret_key="shh")
    h = "spark.hadoop.fs.s3a."
    assert storage.spark_conf(s) == {
        h + "endpoint.region": "us-east-1", h + "endpoint": "http://127.0.0.1:18333",
        h + "path.style.access": "true", h + "connection.ssl.enabled": "false",
        h + "aws.credentials.provider": "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
        h + "access.key": "learntrack", h + "secret.key": "shh"}
    assert storage.delta_rs_options(s) == {
        "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": "http://127.0.0.1:18333",
        "AWS_VIRTUAL_HOSTED_STYLE_REQUEST": "false", "AWS_ALLOW_HTTP": "true",
        "AWS_ACCESS_KEY_ID": "learntrack", "AWS_SECRET_ACCESS_KEY": "shh"}
    assert storage.local_path(s.lake_uri) is None and storage.delta_rs_readable(s.lake_uri)


def test_aws_itself_leaves_endpoint_and_credentials_to_the_default_chain():
    s = _settings(lake_root="s3a://bucket/lake", s3_region="eu-west-1")
    assert storage.spark_conf(s) == {"spark.hadoop.fs.s3a.endpoint.region": "eu-west-1"}
    assert storage.delta_rs_options(s) == {"AWS_REGION": "eu-west-1"}


def test_adls_gen2_with_an_account_key_or_a_service_principal():
    root = f"abfss://lake@{ACCOUNT}/learntrack"
    key = _settings(lake_root=root, azure_storage_key="a2V5")
    h = "spark.hadoop.fs.azure.account."
    assert storage.spark_conf(key) == {h + f"auth.type.{ACCOUNT}": "SharedKey", h + f"key.{ACCOUNT}": "a2V5"}
    assert storage.delta_rs_options(key) == {"AZURE_STORAGE_ACCOUNT_NAME": "acct", "AZURE_STORAGE_ACCOUNT_KEY": "a2V5"}
    sp = _settings(lake_root=root, azure_client_id="app", azure_client_secret="pw", azure_tenant_id="tenant")
    assert storage.spark_conf(sp) == {
        h + f"auth.type.{ACCOUNT}": "OAuth",
        h + f"oauth.provider.type.{ACCOUNT}": "org.apache.hadoop.fs.azurebfs.oauth2.ClientCredsTokenProvider",
        h + f"oauth2.client.id.{ACCOUNT}": "app", h + f"oauth2.client.secret.{ACCOUNT}": "pw",
        h + f"oauth2.client.endpoint.{ACCOUNT}": "https://login.microsoftonline.com/tenant/oauth2/token"}
    assert storage.delta_rs_options(sp) == {"AZURE_STORAGE_ACCOUNT_NAME": "acct", "AZURE_CLIENT_ID": "app",
                                            "AZURE_CLIENT_SECRET": "pw", "AZURE_TENANT_ID": "tenant"}


def test_secrets_stay_out_of_the_settings_repr():
    s = _settings(s3_secret_key="s3-secret", azure_storage_key="az-key", azure_client_secret="sp-secret",
                  cassandra_password="cql-pw", neo4j_password="bolt-pw")
    assert not any(secret in repr(s) for secret in ("s3-secret", "az-key", "sp-secret", "cql-pw", "bolt-pw"))


def test_a_lake_whose_connector_is_not_installed_says_how_to_install_it(tmp_path):
    s = _settings(lake_root="s3a://bucket/lake", spark_jars_dir=str(tmp_path))
    with pytest.raises(RuntimeError, match=r"s3a connector jars in .*learntrack stack install"):
        storage.connector_jars(s)


def _class_strings(jars: list[str], class_file: str) -> bytes:
    for jar in jars:
        with zipfile.ZipFile(jar) as z:
            if class_file in z.namelist():
                return z.read(class_file)
    raise AssertionError(f"{class_file} is in none of the connector jars")


@pytest.mark.parametrize("lake_root, settings, class_file", [
    ("s3a://b/l", dict(s3_endpoint="http://h:1", s3_access_key="k", s3_secret_key="s"),
     "org/apache/hadoop/fs/s3a/Constants.class"),
    (f"abfss://c@{ACCOUNT}/l", dict(azure_storage_key="k"),
     "org/apache/hadoop/fs/azurebfs/constants/ConfigurationKeys.class"),
    (f"abfss://c@{ACCOUNT}/l", dict(azure_client_id="i", azure_client_secret="s", azure_tenant_id="t"),
     "org/apache/hadoop/fs/azurebfs/constants/ConfigurationKeys.class"),
])
def test_every_key_and_class_we_configure_exists_in_the_installed_connector(base_settings, lake_root, settings,
                                                                             class_file):
    """Offline proof of "the exact settings": each Hadoop key (without its account suffix) is a
    constant of the connector's own key class, and each class named as a value is in its jars."""
    s = _settings(lake_root=lake_root, spark_jars_dir=str(base_settings.jars_dir), **settings)
    jars = storage.connector_jars(s)
    constants = _class_strings(jars, class_file)
    for key, value in storage.spark_conf(s).items():
        name = key.removeprefix("spark.hadoop.").removesuffix("." + ACCOUNT)
        # a CONSTANT_Utf8 entry: its 2-byte length, then exactly these bytes (not a longer key's prefix)
        assert len(name).to_bytes(2, "big") + name.encode() in constants, f"{name} is not a key of {Path(class_file).stem}"
        if value.startswith("org.apache.hadoop."):
            _class_strings(jars, value.replace(".", "/") + ".class")


def test_an_s3_scheme_lake_is_served_by_s3a_with_the_same_settings():
    """``s3://`` (what AWS tools write) is mapped to S3A: Hadoop has no s3:// file system of its own.
    The S3A settings and connector are the ``s3a://`` lake's, and delta-rs reads and commits it alike."""
    from lake.delta_rs import write_options

    s = _settings(lake_root="s3://bucket/lake", s3_region="eu-west-1")
    assert storage.spark_conf(s) == {"spark.hadoop.fs.s3.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
                                     "spark.hadoop.fs.s3a.endpoint.region": "eu-west-1"}
    assert storage.delta_rs_options(s) == {"AWS_REGION": "eu-west-1"}
    assert write_options(s) == {"AWS_REGION": "eu-west-1", "AWS_CONDITIONAL_PUT": "etag"}
    assert storage.CONNECTORS["s3"] == "s3a" and storage.delta_rs_readable(s.lake_uri)
    assert storage.local_path(s.lake_uri) is None
