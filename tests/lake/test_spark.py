"""The SparkSession is configured from settings alone: the driver JVM's options included."""

import pytest

pytestmark = [pytest.mark.spark]


def test_the_driver_jvm_runs_with_the_configured_options(spark, base_settings):
    """ADR 41: the driver's collector is the parallel one by default (LEARNTRACK_SPARK_DRIVER_JAVA_OPTIONS),
    next to the options LearnTrack sets itself, which must survive the addition."""
    jvm = spark.sparkContext._jvm
    args = list(jvm.java.lang.management.ManagementFactory.getRuntimeMXBean().getInputArguments())
    collectors = [b.getName() for b in jvm.java.lang.management.ManagementFactory.getGarbageCollectorMXBeans()]
    assert base_settings.spark_driver_java_options == "-XX:+UseParallelGC"
    assert "-XX:+UseParallelGC" in args
    assert any(a.startswith("-Dlog4j2.configurationFile=") for a in args)
    assert any(a.startswith("-Dderby.system.home=") for a in args)
    assert sorted(collectors) == ["PS MarkSweep", "PS Scavenge"]  # the parallel collector's two
