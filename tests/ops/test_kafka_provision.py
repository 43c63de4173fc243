"""Provisioning of Apache Kafka for the suite's cluster: the pinned broker and its logging from
Maven Central, cached so a second run needs neither Maven nor the network."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.conftest import ROOT
from tests.kafka_cluster import PROVISION, kafka_lib, kafka_version

# What the script needs when the cache is complete: no java, no mvn.
SHELL_TOOLS = ("bash", "sed", "sha256sum", "cut", "cat", "dirname")


def test_cache_holds_the_pinned_broker_and_log4j() -> None:
    lib = kafka_lib()
    assert lib.is_relative_to(ROOT / ".cache" / "kafka")
    jars = {p.name for p in lib.glob("*.jar")}
    assert f"kafka_2.13-{kafka_version()}.jar" in jars
    assert f"kafka-server-{kafka_version()}.jar" in jars
    assert any(j.startswith("log4j-slf4j2-impl-") for j in jars)
    assert any(j.startswith("log4j-core-") for j in jars)
    # log4j-slf4j2-impl binds SLF4J 2 only: an older slf4j-api would leave the broker silent.
    assert [j for j in jars if j.startswith("slf4j-api-")] == ["slf4j-api-2.0.17.jar"]
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", str(lib)], cwd=ROOT, check=False
    ).returncode
    assert ignored == 0, ".cache/kafka must be ignored by git"


def test_second_run_is_a_no_op_without_maven_or_java(tmp_path: Path) -> None:
    kafka_lib()  # the first run, if this checkout has not had one
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in SHELL_TOOLS:
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    done = subprocess.run(
        [str(PROVISION), "--print"],
        env={"PATH": str(bin_dir)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(kafka_lib())
    assert "provisioning" not in done.stdout + done.stderr
