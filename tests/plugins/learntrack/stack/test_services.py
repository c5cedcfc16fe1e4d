"""The commands the stack starts its servers with, built from settings."""

from learntrack.settings import Settings
from learntrack.stack.services import _neo4j_command


def memory_flags(command: list[str]) -> list[str]:
    return [a for a in command if a.startswith(("-Xm", "-XX:TieredStopAtLevel", "-Dlearntrack.neo4j"))]


def test_neo4j_starts_small_with_the_quick_jit_by_default(tmp_path):
    command = _neo4j_command(Settings.from_env({"LEARNTRACK_HOME": str(tmp_path)}), tmp_path)
    assert memory_flags(command) == ["-Xms256m", "-Xmx512m", "-Dlearntrack.neo4j.pagecache_mb=128",
                                     "-XX:TieredStopAtLevel=1"]
    assert command[-2:] == [str(tmp_path / "data"), "127.0.0.1:7687"]


def test_neo4j_memory_and_jit_follow_the_settings(tmp_path):
    settings = Settings.from_env({"LEARNTRACK_HOME": str(tmp_path), "LEARNTRACK_NEO4J_HEAP_MB": "2048",
                                  "LEARNTRACK_NEO4J_PAGECACHE_MB": "1024", "LEARNTRACK_NEO4J_C1_ONLY": "false"})
    assert memory_flags(_neo4j_command(settings, tmp_path)) == [
        "-Xms256m", "-Xmx2048m", "-Dlearntrack.neo4j.pagecache_mb=1024"]
