import pytest

from learntrack.settings import Settings


def test_env_overrides_defaults_and_coerces_types():
    s = Settings.from_env({"LEARNTRACK_MONGO_PORT": "27999", "LEARNTRACK_LAKE_ROOT": "s3a://bucket/lake",
                           "LEARNTRACK_ENGAGEMENT_DECAY_PER_DAY": "0.25"})
    assert s.mongo_port == 27999
    assert s.lake_uri == "s3a://bucket/lake"
    assert s.engagement_decay_per_day == 0.25


def test_defaults_are_local_and_derived_paths_follow_home():
    s = Settings.from_env({"LEARNTRACK_HOME": "/tmp/lt-home"})
    assert s.lake_uri == "/tmp/lt-home/lake"
    assert str(s.airflow_home_path) == "/tmp/lt-home/airflow"
    assert s.mongo_uri.startswith("mongodb://127.0.0.1")


def test_bad_number_names_the_variable():
    with pytest.raises(ValueError, match="LEARNTRACK_REDIS_PORT"):
        Settings.from_env({"LEARNTRACK_REDIS_PORT": "six"})


@pytest.mark.parametrize("raw,flag", [("false", False), ("0", False), ("No", False), ("true", True), ("1", True)])
def test_a_flag_is_read_as_a_boolean_not_as_a_string(raw, flag):
    assert Settings.from_env({"LEARNTRACK_NEO4J_C1_ONLY": raw}).neo4j_c1_only is flag


def test_a_bad_flag_names_the_variable():
    with pytest.raises(ValueError, match="LEARNTRACK_NEO4J_C1_ONLY"):
        Settings.from_env({"LEARNTRACK_NEO4J_C1_ONLY": "maybe"})


def test_json_settings_parse():
    s = Settings.from_env({"LEARNTRACK_SPARK_CONF": '{"spark.executor.memory": "4g"}'})
    assert s.spark_conf_map == {"spark.executor.memory": "4g"}
    assert s.engagement_weight_map["video_complete"] == 5.0


def test_to_env_round_trips():
    s = Settings.from_env({}, mongo_db="x", cassandra_port=9999, engagement_decay_per_day=0.5)
    assert Settings.from_env(s.to_env()) == s


def documented_variables(doc: str) -> set[str]:
    """The variables named, spelled out in full, in the first column of the settings table."""
    import re

    names = set()
    for line in doc.splitlines():
        cells = line.split("|")
        if line.startswith("|") and len(cells) > 2:
            names |= set(re.findall(r"`(LEARNTRACK_[A-Z0-9_]+)`", cells[1]))
    return names


def test_every_setting_is_documented():
    """Each field's variable, by its exact name, in the table's first column, and no other."""
    from dataclasses import fields
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[3] / "docs" / "configuration.md").read_text()
    documented = documented_variables(doc)
    variables = {f"LEARNTRACK_{f.name.upper()}" for f in fields(Settings)}
    assert not variables - documented, f"undocumented settings: {sorted(variables - documented)}"
    assert not documented - variables, f"documented variables that are no setting: {sorted(documented - variables)}"
    # the check itself: a name is not documented by another that merely ends like it
    assert documented_variables("| `LEARNTRACK_STACK_START_TIMEOUT_S`, `_REDIS_PORT` | 1 | x |\n"
                                "`LEARNTRACK_OTHER` outside the table\n") == {"LEARNTRACK_STACK_START_TIMEOUT_S"}


def test_store_addresses_follow_the_local_stack_ports_unless_given():
    s = Settings.from_env({"LEARNTRACK_MONGO_PORT": "28017", "LEARNTRACK_NEO4J_BOLT_PORT": "7787"})
    assert s.mongo_uri == "mongodb://127.0.0.1:28017/" and s.neo4j_uri == "bolt://127.0.0.1:7787"
    s = Settings.from_env({"LEARNTRACK_MONGO_URI": "mongodb://m1,m2/?replicaSet=rs0"})
    assert s.mongo_uri == "mongodb://m1,m2/?replicaSet=rs0"
