"""SparkSession with Delta Lake, configured only from settings.

Local runs use ``local[2]`` and the Delta jars Maven put in ``<home>/tools/spark-jars``; a cluster
is a matter of LEARNTRACK_SPARK_MASTER, an object-store lake of LEARNTRACK_LAKE_ROOT and its
credentials (``lake.storage`` adds the connector's jars and conf), anything else LEARNTRACK_SPARK_CONF.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

from lake import storage
from learntrack.settings import Settings


def spark_session(settings: Settings, app_name: str = "learntrack"):
    from pyspark.sql import SparkSession

    jars = sorted(glob.glob(str(settings.jars_dir / "*.jar")))
    if not jars:
        raise RuntimeError(f"no Delta jars in {settings.jars_dir}; run `learntrack stack install`")
    jars += storage.connector_jars(settings)
    os.environ.setdefault("PYSPARK_PYTHON", os.sys.executable)
    if settings.spark_master.startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # a local driver needs no routable address
    log4j = Path(__file__).with_name("log4j2.properties")
    builder = (
        SparkSession.builder.appName(app_name)
        .master(settings.spark_master)
        .config("spark.jars", ",".join(jars))
        .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
        .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.driver.memory", settings.spark_driver_memory)
        .config("spark.sql.shuffle.partitions", str(settings.spark_shuffle_partitions))
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        # Delta rebuilds table state with this many tasks (default 50): far too many for small
        # local tables; a cluster raises it through LEARNTRACK_SPARK_CONF.
        .config("spark.databricks.delta.snapshotPartitions", "2")
        # Frames handed to Python (the gates' small frames, toPandas) cross as Arrow batches.
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.warehouse.dir", str(settings.home_path / "spark-warehouse"))
        .config("spark.driver.extraJavaOptions",
                f"-Dderby.system.home={settings.home_path / 'derby'} -Dlog4j2.configurationFile=file:{log4j} "
                f"{settings.spark_driver_java_options}".strip())
        # Delta: keep small local tables small and make MERGE/replaceWhere deterministic.
        .config("spark.databricks.delta.schema.autoMerge.enabled", "false")
        .config("spark.databricks.delta.optimizeWrite.enabled", "true")
    )
    for key, value in {**storage.spark_conf(settings), **settings.spark_conf_map}.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark
