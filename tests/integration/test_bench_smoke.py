"""The benchmarks, tiny, so that they cannot rot (the real runs are by hand: RESULTS.md)."""

from __future__ import annotations

from pathlib import Path

import orjson

from tests.conftest import Broker, run_bench


async def run_tiny_pipeline(
    script: str, broker: Broker, tmp_path: Path, *args: str, timeout: float
) -> tuple[int, str, str, Path]:
    """soak.py or latency.py on a tiny pipeline (a few sources, subscribers and receivers),
    writing its JSON report: exit code, stdout, stderr and the report's path."""
    report = tmp_path / "report.json"
    tiny = [
        "--rate", "15",
        "--sources", "6",
        "--subscribers", "20",
        "--firehose", "0.1",
        "--views", "4",
        "--receivers", "2",
        "--client-procs", "1",
        "--poll-interval", "0.5",
        "--drain", "60",
        "--bootstrap", broker.bootstrap,
        "--idempotence", "off",
        "--workdir", str(tmp_path / "work"),
        "--check",
        "--json", str(report),
    ]  # fmt: skip
    return (*await run_bench(script, *args, *tiny, timeout=timeout), report)


async def test_fanout_benchmark_runs_every_server(broker: Broker) -> None:
    code, out, err = await run_bench(
        "fanout.py",
        "--subscribers", "20",
        "--runs", "1",
        "--deliveries", "400",
        "--latency-deliveries", "400",
        "--latency-seconds", "0.5",
        "--bootstrap", broker.bootstrap,
        "--no-pin",
        timeout=150,
    )  # fmt: skip
    assert code == 0, err[-3000:]
    rows = [orjson.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert [r["server"] for r in rows] == ["floor", "floor_batch", "naive", "telex"]
    for row in rows:
        assert row["complete"] and row["lost"] == 0 and row["duplicates_seen"] == 0, row
        assert row["deliveries_per_s"] > 0 and row["p99_ms"] >= row["p50_ms"] > 0, row
    assert "| 20 | telex |" in out


async def test_soak_benchmark_checks_the_whole_pipeline(broker: Broker, tmp_path: Path) -> None:
    """bench/soak.py, tiny: every process started, load through, every check run, JSON out."""
    code, stdout, err, out = await run_tiny_pipeline(
        "soak.py", broker, tmp_path, "--duration", "8", "--progress", "4", timeout=150
    )
    assert code == 0, (stdout + err)[-4000:]
    assert "problems: none" in stdout
    report = orjson.loads(out.read_bytes())
    subs, hooks = report["subscribers"], report["receivers"]
    assert report["published"] >= 60 and report["drained_s"] is not None
    assert subs["count"] == 20 and subs["firehose"] == 2
    assert subs["received"] == subs["expected"] >= report["published"] * 2
    assert subs["lost"] == subs["duplicates"] == subs["unexpected"] == subs["resyncs"] == 0
    assert hooks["deliveries"] == hooks["expected"] > 0
    assert hooks["lost"] == hooks["duplicates"] == 0
    latency = subs["latency_detected_ms"]["all"]
    assert latency["count"] == subs["received"] and 0 <= latency["p50"] <= latency["p99"]
    assert hooks["latency_detected_ms"]["all"]["count"] == hooks["expected"]
    processes = report["processes"]
    for name in ("poller", "processor", "gateway", "notifier", "sources", "subscribers0"):
        assert processes[name]["rss_mb_max"] > 0, name
    assert report["services"]["dead_letters"] == 0
    assert all(code == 0 for code in report["exit_codes"].values()), report["exit_codes"]


async def test_latency_benchmark_measures_telex_and_the_floor(
    broker: Broker, tmp_path: Path
) -> None:
    """bench/latency.py, tiny: both phases on the same broker, hops and loop lag read back."""
    code, stdout, err, out = await run_tiny_pipeline(
        "latency.py", broker, tmp_path, "--runs", "1", "--duration", "6", "--progress", "3",
        timeout=180,
    )  # fmt: skip
    assert code == 0, (stdout + err)[-4000:]
    (run,) = orjson.loads(out.read_bytes())["runs"]
    telex, floor = run["telex"], run["floor"]
    assert telex["problems"] == [] and floor["lost"] == floor["duplicates"] == 0
    assert floor["published"] >= 60 and floor["deliveries"] >= floor["published"] * 2
    for side in (telex["ws"], telex["webhooks"], floor["ws"]):
        assert side["count"] > 0 and 0 <= side["p50"] <= side["p99"], side
    hops = telex["hops"]
    for hop in ("poller", "raw_topic", "processor", "wire_gateway", "fanout", "wire_notifier"):
        assert hops[hop]["count"] >= telex["published"], (hop, hops[hop])
    assert {"poller", "processor", "gateway", "notifier"} <= set(telex["loop_lag"])
    assert run["ratio_p99"] == round(telex["ws"]["p99"] / floor["ws"]["p99"], 2)
