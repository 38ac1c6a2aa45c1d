"""Distributed mode under load: articles/s end to end with 1 and 2 embed replicas, consumer lag over time,
and where the model or the store becomes the limit.

Each run is a fresh deployment (its own tansu broker, index prefix and data directories) on one
noida-db Elasticsearch-API server, with ``sednaya-monitor index`` and N ``sednaya-monitor embed``
replicas as separate processes, each on its own data directory (the story state is mirrored to its
changelog topic; failover time and the state's cost per article: ``bench.distributed_state``). Once every
process has loaded its model and its consumer groups have settled (each member logged its partitions), a
burst of generated articles is published to the raw topic at once; the clock stops when the store holds
every one (asked every ``DONE_POLL_S``). Every second the lag gauges of each process's ``/metrics`` are
sampled. Per-record stage costs come from ``sednaya_stage_duration_seconds`` (the worker observes batch
time / batch size).

**Pipeline cost beside the model** (the target of issue #23: <= 3 ms per article): the CPU time per article
of our own processes (the embed replicas and the index stage) minus what the model alone costs on the same
texts, measured in this process before the runs (the same embedder, batch size and one BLAS thread as a
stage, process CPU time of ``embed`` on the articles' texts in ``batch_size`` slices).

A third run feeds the index stage alone (pre-clustered articles straight onto ``articles.clustered``)
to find the store's own ceiling. Usage: ``python -m bench.distributed_load [--articles 300]``.

**Workloads** (``--workload``): ``generated`` (the default) publishes the test factory's generated articles
(one language, few of them join a story with the shipped one-language margins, so nearly every article
opens a story and pays for the related-story lookup); ``syria`` publishes the real excerpts of
``bench.pipeline_cost``, READ IN PLACE from ../shared/datasets/multilingual-events/ (nothing copied):
the texts in the multilingual set's streaming order, pass after pass with new ids a day later (the copies
of a syndicated story), the same articles ``bench.pipeline_cost --repeat N`` runs through the embedded
pipeline, so the two modes' costs beside the model can be compared on one workload. Its section of
docs/benchmarks.md is ``distributed_load (syria texts)``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.proc_memory import memory_mb
from bench.report import write_section as write_doc_section
from sednaya_monitor.settings import Settings, load_settings
from sednaya_monitor.topology import GROUP_CLUSTER, GROUP_EMBED, GROUP_INDEX
from sednaya_monitor.wiring import make_embedder
from stream.article import Article
from stream.bus import H_SCHEMA
from stream.embed_text import embed_text
from tests.distributed_fixtures import Deployment, ElasticServer, StageProcess, generated_articles, new_deployment
from tests.ports import free_port

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
SECTION = "distributed_load"
SAMPLE_EVERY_S = 1.0  # lag sampling period
DONE_POLL_S = 0.2  # how often the store is asked whether it holds every article: the end-to-end figure's resolution
RUN_TIMEOUT_S = 900.0  # a run that has not indexed everything by then is reported as failed
SETTLE_TIMEOUT_S = 120.0  # replicas joining their groups
WORKLOADS = {
    "generated": "the test factory's generated articles",
    "syria": "real excerpts, pass after pass with new ids: bench.pipeline_cost's articles",
}
TOGETHER, APART = "together", "apart"
TOPOLOGIES = {  # where story assignment runs
    TOGETHER: "each embed replica embeds and stands by to assign (`sednaya-monitor embed`, the default): one "
    "replica assigns, in the process that holds the model",
    APART: "vector replicas (`embed --no-cluster`) and one story assigner in a process of its own "
    "(`embed --no-vectors`): each stage its own process",
}
VECTOR_DIMS = 512  # the default model (use-multilingual-v3), for the index-only run's synthetic vectors


def model_cpu_ms(settings: Settings, articles: list[Article], batch: int) -> float:
    """CPU milliseconds per article of the model alone on ``articles``' texts (what the embed stage gives it:
    ``embed_text``, ``batch`` texts per call), in this process, after a warm-up call that loads it."""
    embedder = make_embedder(settings)  # caps this process's BLAS threads at model_threads, as in a stage
    texts = [embed_text(a.title, a.text) for a in articles]
    embedder.embed(texts[:batch])
    start = time.process_time()
    for i in range(0, len(texts), batch):
        embedder.embed(texts[i : i + batch])
    return 1000 * (time.process_time() - start) / len(texts)


def ours_ms(run: dict[str, Any]) -> float:
    """CPU per article of our processes (embed replicas, the assigner when it runs apart, index)."""
    return float(
        sum(ms for name, ms in run["cpu_ms"].items() if name in ("index", "assign") or name.startswith("embed-"))
    )


def run_label(run: dict[str, Any]) -> str:
    """``1 embed replica(s)`` (each replica embeds and stands by to assign) or ``1 vector replica(s) + assigner``."""
    if run.get("topology", TOGETHER) == TOGETHER:
        return f"{run['replicas']} embed replica(s)"
    return f"{run['replicas']} vector replica(s) + assigner"


def pipeline_ms(run: dict[str, Any], model_ms: float | None = None) -> float:
    """CPU per article of our processes minus the model's own cost: by default the model's CPU counted inside
    the embed processes during the run (``sednaya_model_cpu_seconds_total``), else ``model_ms``."""
    return ours_ms(run) - (run["model_ms"] if model_ms is None else model_ms)


def _model_seconds(process: StageProcess) -> float:
    """The model's CPU seconds so far in an embed process (``stream.metered_embedder``)."""
    return process.sample("sednaya_model_cpu_seconds_total")


def _gauge(process: StageProcess, topic: str, group: str) -> float:
    return sum(
        v
        for (name, labels), v in process.metrics().items()
        if name == "sednaya_bus_consumer_lag_records" and ("topic", topic) in labels and ("group", group) in labels
    )


def _stage_cost(processes: list[StageProcess]) -> dict[str, float]:
    """Mean seconds per record of each stage label (mean of the per-batch means), over all processes."""
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    for process in processes:
        for (name, labels), v in process.metrics().items():
            stage = dict(labels).get("stage", "")
            if name == "sednaya_stage_duration_seconds_sum":
                sums[stage] = sums.get(stage, 0.0) + v
            elif name == "sednaya_stage_duration_seconds_count":
                counts[stage] = counts.get(stage, 0.0) + v
    return {stage: sums[stage] / counts[stage] for stage in sums if counts.get(stage)}


def peak_rss_mb(process: StageProcess) -> float:
    """The process's peak resident set size (``VmHWM`` of /proc/<pid>/status) in MB; 0 when unreadable."""
    return 0.0 if process.proc is None else memory_mb(process.proc.pid, "VmHWM")


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds so far of process ``pid`` and its live descendants (a launcher such as
    noida-db's runs the server as its child), from /proc; 0 when unreadable."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()
        children = [
            int(child)
            for task in Path(f"/proc/{pid}/task").iterdir()
            for child in (task / "children").read_text(encoding="ascii").split()
        ]
    except OSError:
        return 0.0
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return own + sum(cpu_seconds(child) for child in children)


def _pids(
    deployment: Deployment, index: StageProcess, embeds: list[StageProcess], assigners: list[StageProcess]
) -> dict[str, int | None]:
    """The processes whose CPU time the run charges to its articles (``assigners``: story assigners in
    processes of their own, none when the embed replicas assign)."""
    out: dict[str, int | None] = {"index": index.proc.pid if index.proc else None}
    for i, p in enumerate(embeds):
        out[f"embed-{i}"] = p.proc.pid if p.proc else None
    for p in assigners:
        out["assign"] = p.proc.pid if p.proc else None
    out["broker (tansu)"] = deployment.broker.proc.pid if deployment.broker.proc else None
    out["store (noida-db)"] = deployment.elastic.proc.pid if deployment.elastic.proc else None
    return out


def _assignment(process: StageProcess, group: str) -> list[int]:
    """The partitions the process's member of ``group`` was last assigned since its last start (its
    ``partitions assigned`` log line; [] before its first assignment)."""
    text = process.log_text()
    latest: list[int] = []
    for line in text[text.rfind("=== start ") :].splitlines():
        if '"partitions assigned"' not in line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("group") == group:
            latest = [int(p) for p in entry.get("partitions", [])]
    return latest


def _settled(processes: list[StageProcess], group: str, partitions: int) -> bool:
    """Every process of ``group`` holds partitions and together they hold each partition once: the group
    has joined and finished rebalancing. (The lag gauges are no sign of it: each process's lag exporter
    reports every group's lag from the broker before its own workers have loaded the model and joined.)"""
    held = [_assignment(p, group) for p in processes]
    return all(held) and sorted(x for h in held for x in h) == list(range(partitions))


def _count(deployment: Deployment) -> int:
    try:
        return deployment.store.count_articles()
    except Exception:  # noqa: BLE001  # the index may not exist yet
        return 0


def workload_articles(workload: str, n: int) -> list[Article]:
    """The ``n`` articles a pipeline run publishes (module docstring, "Workloads")."""
    if workload == "generated":
        return generated_articles(n, seed=101)
    from bench.multilingual_stories import DATA, load, stream
    from bench.pipeline_cost import articles_for

    records = stream(load(DATA))
    return articles_for(records, -(-n // len(records)))[:n]


def run_pipeline(
    es: ElasticServer,
    root: Path,
    replicas: int,
    articles: list[Article],
    extra: dict[str, str],
    *,
    topology: str = TOGETHER,
) -> dict[str, Any]:
    """One run (``topology``: see ``TOPOLOGIES``)."""
    n = len(articles)
    deployment = new_deployment(es, root / f"{topology}-{replicas}", **extra)
    try:
        index = deployment.stage("index")
        if topology == TOGETHER:  # each embed replica on its own data directory, each standing by to assign
            embeds = [deployment.stage("embed") for _ in range(replicas)]
            assigners = embeds
        else:
            embeds = [deployment.stage("embed", extra=["--no-cluster"]) for _ in range(replicas)]
            assigners = [deployment.stage("embed", extra=["--no-vectors"])]
        ours = [index, *embeds, *([] if assigners is embeds else assigners)]
        for process in ours:
            process.wait_serving()
        raw, embedded, clustered = (
            deployment.settings.topic_raw,
            deployment.settings.topic_embedded,
            deployment.settings.topic_clustered,
        )
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        partitions = deployment.settings.kafka_partitions
        while not (
            _settled(embeds, GROUP_EMBED, partitions)
            and _settled(assigners, GROUP_CLUSTER, partitions)
            and _settled([index], GROUP_INDEX, partitions)
        ):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{replicas} replicas did not all get raw partitions:\n{deployment.logs()}")
            time.sleep(0.5)
        load_before = os.getloadavg()[0]
        pids = _pids(deployment, index, embeds, [] if assigners is embeds else assigners)
        cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        model_before = sum(_model_seconds(p) for p in embeds)
        start = time.monotonic()
        deployment.publish(articles)
        published_s = time.monotonic() - start
        series: list[tuple[float, float, float, float, int]] = []
        done_at = None
        next_sample = 0.0
        while time.monotonic() - start < RUN_TIMEOUT_S:
            indexed = _count(deployment)
            at = time.monotonic() - start
            if at >= next_sample or indexed >= n:
                next_sample = at + SAMPLE_EVERY_S
                lag_raw = sum(_gauge(p, raw, GROUP_EMBED) for p in embeds)
                lag_cluster = sum(_gauge(p, embedded, GROUP_CLUSTER) for p in assigners)
                lag_index = _gauge(index, clustered, GROUP_INDEX)
                series.append((at, lag_raw, lag_cluster, lag_index, indexed))
                print(
                    f"  {replicas} replica(s) t={at:5.1f}s lag raw={lag_raw:4.0f} embedded={lag_cluster:4.0f} "
                    f"clustered={lag_index:4.0f} indexed={indexed}",
                    flush=True,
                )
            if indexed >= n:
                done_at = at
                break
            time.sleep(DONE_POLL_S)
        if done_at is None:
            raise RuntimeError(f"{replicas} replicas: not every article indexed in {RUN_TIMEOUT_S}s")
        cpu_ms = {name: 1000 * (cpu_seconds(pid) - cpu_before[name]) / n for name, pid in pids.items()}
        model_ms = 1000 * (sum(_model_seconds(p) for p in embeds) - model_before) / n
        embedded_by = [p.sample("sednaya_articles_total", stage="embed", status="embedded") for p in embeds]
        rss = {"index": peak_rss_mb(index), **{f"embed-{i}": peak_rss_mb(p) for i, p in enumerate(embeds)}}
        if assigners is not embeds:
            rss["assign"] = peak_rss_mb(assigners[0])
        return {
            "load": (load_before, os.getloadavg()[0]),
            "rss": rss,
            "replicas": replicas,
            "topology": topology,
            "articles": n,
            "seconds": done_at,
            "per_s": n / done_at,
            "publish_s": published_s,
            "series": series,
            "embedded_by": embedded_by,
            "cost": _stage_cost(ours),
            "cpu_ms": cpu_ms,
            "model_ms": model_ms,
        }
    finally:
        deployment.close()


def run_index_only(es: ElasticServer, root: Path, n: int, extra: dict[str, str]) -> dict[str, Any]:
    """The store's ceiling: clustered articles published straight to articles.clustered, index stage only."""
    deployment = new_deployment(es, root / "index-only", **extra)
    rng = random.Random(5)
    try:
        index = deployment.stage("index")
        index.wait_serving()
        clustered = deployment.settings.topic_clustered
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while not _settled([index], GROUP_INDEX, deployment.settings.kafka_partitions):
            if time.monotonic() > deadline:
                raise RuntimeError(f"index got no partitions:\n{deployment.logs()}")
            time.sleep(0.5)
        records: list[Article] = []
        for article in generated_articles(n, seed=202):
            vector = [rng.gauss(0.0, 1.0) for _ in range(VECTOR_DIMS)]
            norm = sum(x * x for x in vector) ** 0.5
            records.append(
                article.replace(
                    embedding=tuple(x / norm for x in vector),
                    story_id=article.id,
                    story_role="first",
                    duplicate_of=None,
                )
            )
        start = time.monotonic()
        for article in records:
            deployment.bus.publish(
                clustered, article.id, article.to_bytes(with_embedding=True), {H_SCHEMA: str(article.schema)}
            )
        deployment.bus.flush()
        done_at = None
        while time.monotonic() - start < RUN_TIMEOUT_S:
            if _count(deployment) >= n:
                done_at = time.monotonic() - start
                break
            time.sleep(DONE_POLL_S)
        if done_at is None:
            raise RuntimeError(f"index-only: not every article indexed in {RUN_TIMEOUT_S}s")
        return {
            "articles": n,
            "seconds": done_at,
            "per_s": n / done_at,
            "cost": _stage_cost([index]),
            "rss": {"index": peak_rss_mb(index)},
        }
    finally:
        deployment.close()


def _lag_lines(result: dict[str, Any]) -> list[str]:
    """The lag series thinned to about a dozen rows."""
    series = result["series"]
    step = max(1, len(series) // 12)
    rows = series[::step]
    if rows[-1] is not series[-1]:
        rows.append(series[-1])
    lines = [
        (
            "| t s | lag articles.raw (embed) | lag articles.embedded (cluster) "
            "| lag articles.clustered (index) | indexed |"
        )
    ]
    lines.append("|---|---|---|---|---|")
    for at, raw, cluster, index, indexed in rows:
        lines.append(f"| {at:.0f} | {raw:.0f} | {cluster:.0f} | {index:.0f} | {indexed} |")
    return lines


def write_section(
    runs: list[dict[str, Any]],
    index_only: dict[str, Any],
    n: int,
    extra: dict[str, str],
    model: str,
    model_ms: float,
    *,
    workload: str = "generated",
    write: bool = True,
) -> list[str]:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    what = (
        "a burst of generated articles"
        if workload == "generated"
        else f"a burst of {n} articles made of the multilingual set's real excerpts ({WORKLOADS[workload]})"
    )
    command = "" if workload == "generated" else f" --workload {workload}"
    tuned = ", ".join(f"`{k}={v}`" for k, v in sorted(extra.items())) or "the test deployment's"
    lines = [
        (
            f"Measured {when} by `python -m bench.distributed_load --articles {n}{command}`: a fresh tansu broker "
            "(memory engine, 3 partitions per topic) per run, one noida-db 0.2.2 Elasticsearch-API server, "
            "`sednaya-monitor index` and N `sednaya-monitor embed` replicas as separate processes on this 2-core "
            "machine "
            f"(default model `{model}` on CPU; settings {tuned}). Once every process has loaded its model and its "
            f"consumer groups have settled, {what} is published at once; end to end = publish "
            f"until the store holds every article (asked every {DONE_POLL_S} s). Stage cost = mean seconds per "
            "record of each worker (`sednaya_stage_duration_seconds`): `embed` is the vector worker (the model), "
            "`cluster` story assignment, `index` the bulk write to the store. Topologies: "
            + "; ".join(
                f"{name}: {what}"
                for name, what in TOPOLOGIES.items()
                if any(r.get("topology", TOGETHER) == name for r in runs)
            )
            + "."
        ),
        "",
        (
            "| run | articles | end to end s | articles/s | embedded per replica "
            "| embed ms/rec | cluster ms/rec | index ms/rec | machine load (1 min) start → end |"
        ),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        cost = r["cost"]
        lines.append(
            f"| {run_label(r)} | {r['articles']} | {r['seconds']:.1f} | {r['per_s']:.1f} | "
            f"{' / '.join(str(int(x)) for x in r['embedded_by'])} | {1000 * cost.get('embed', 0):.1f} | "
            f"{1000 * cost.get('cluster', 0):.1f} | {1000 * cost.get('index', 0):.1f} | "
            f"{r['load'][0]:.1f} → {r['load'][1]:.1f} |"
        )
    ic = index_only["cost"]
    lines.append(
        f"| index stage alone (pre-clustered) | {index_only['articles']} | {index_only['seconds']:.1f} | "
        f"{index_only['per_s']:.1f} | - | - | - | {1000 * ic.get('index', 0):.1f} | - |"
    )
    lines += [
        "",
        (
            "Peak resident memory per process (`VmHWM` of /proc/<pid>/status, read before the process stops; "
            "target ≤ 300 MB):"
        ),
        "",
        "| run | process | peak RSS MB |",
        "|---|---|---:|",
    ]
    for r in runs:
        for name, mb in r["rss"].items():
            lines.append(f"| {run_label(r)} | `{name}` | {mb:.0f} |")
    for name, mb in index_only["rss"].items():
        lines.append(f"| index stage alone | `{name}` | {mb:.0f} |")
    lines += [
        "",
        (
            "CPU time per article of each process from publish to the last article indexed (user + system, "
            "/proc/<pid>/stat; less sensitive to the machine's other jobs than the wall clock; the embed "
            "process holds the model, the story assigner and their Kafka clients):"
        ),
        "",
        "| run | process | CPU ms/article |",
        "|---|---|---:|",
    ]
    for r in runs:
        for name, ms in r["cpu_ms"].items():
            lines.append(f"| {run_label(r)} | `{name}` | {ms:.2f} |")
        lines.append(f"| {run_label(r)} | all | {sum(r['cpu_ms'].values()):.2f} |")
    lines += [
        "",
        (
            "**Pipeline cost beside the model** (target ≤ 3 ms per article): the CPU per article of our processes "
            "(embed replicas, the assigner when apart, index) minus the model's own CPU, counted inside the embed "
            "processes during the run (`sednaya_model_cpu_seconds_total`: the thread time of the model's `embed` "
            "calls, one BLAS thread). Beside it, the same with the model measured apart, in the bench process "
            "before the runs "
            f"({model_ms:.2f} ms per article on the same texts: same embedder, batch size and one BLAS thread as "
            "a stage; before session 11 the only figure, it moves with the load of that moment):"
        ),
        "",
        (
            "| run | our processes' CPU ms/article | model, in the embed processes ms/article "
            "| **pipeline beside the model ms/article** | model measured apart ms/article | beside it ms/article |"
        ),
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        lines.append(
            f"| {run_label(r)} | {ours_ms(r):.2f} | {r['model_ms']:.2f} | **{pipeline_ms(r):.2f}** "
            f"| {model_ms:.2f} | {pipeline_ms(r, model_ms):.2f} |"
        )
    for r in runs:
        lines += [
            "",
            f"Consumer lag over time, {run_label(r)} (records, from the `/metrics` gauges):",
            "",
        ]
        lines += _lag_lines(r)
    together = [r for r in runs if r.get("topology", TOGETHER) == TOGETHER]
    one = next((r for r in together if r["replicas"] == 1), None)
    two = next((r for r in together if r["replicas"] == 2), None)
    lines += ["", "Reading:", ""]
    if one is not None and two is not None:
        lines.append(
            f"- 2 replicas vs 1: {two['per_s'] / one['per_s']:.2f}x the end-to-end rate. Each replica's model runs "
            "one BLAS thread (`model_threads = 1`), but on 2 cores a second replica competes with the story "
            "assigner, the index stage, the broker and the store (and the machine's other jobs) for the same two "
            "cores; replicas pay off when they run on more cores or hosts."
        )
    if one is not None:
        embed_ms = 1000 * one["cost"].get("embed", 0)
        cluster_ms = 1000 * one["cost"].get("cluster", 0)
        index_ms = 1000 * ic.get("index", 0)
        limit = max(
            (embed_ms, "the model (embed)"), (cluster_ms, "story assignment (cluster)"), (index_ms, "the store (index)")
        )[1]
        lines.append(
            f"- The slowest stage with 1 replica is {limit}: the vector worker costs {embed_ms:.1f} ms per article, "
            f"story assignment {cluster_ms:.1f} ms (both in the embed process, sharing its interpreter), the index "
            f"stage {index_ms:.1f} ms per article when fed alone ({index_only['per_s']:.0f} articles/s ceiling of "
            "this store stand-in). Wall-clock stage costs include waiting for a core on this loaded machine; the "
            "lag table shows which topic carries the backlog."
        )
    for r in runs:
        if r.get("topology") != APART:
            continue
        same = next((t for t in together if t["replicas"] == r["replicas"]), None)
        if same is None:
            continue
        cheaper = "less" if pipeline_ms(r) < pipeline_ms(same) else "not less"
        faster = "more" if r["per_s"] > same["per_s"] else "not more"
        lines.append(
            f"- Story assignment in a process of its own ({run_label(r)}) against the same replicas assigning "
            f"beside the model, in this run (one run each, in alternating order): pipeline beside the model "
            f"{pipeline_ms(r):.2f} against {pipeline_ms(same):.2f} ms per article ({cheaper}), end to end "
            f"{r['per_s']:.1f} against {same['per_s']:.1f} articles/s ({faster}). Apart, the assigner runs its "
            "own interpreter (no GIL or caches shared with the model's encoding) and can take the other core; "
            "one run each on this shared machine, whose load moves: run the bench again to see the spread."
        )
    lines += [
        (
            "- What would scale it on a real cluster: more partitions of `articles.raw` and embed replicas on "
            "separate hosts (or a GPU, or a smaller/quantised model) for the vector work, which is stateless; "
            "`--no-cluster` replicas can run on any host. Story assignment stays one partition by design (it is "
            "sequential and cheap: milliseconds per article); past that it would be partitioned by a key that keeps "
            "a story's candidates together (e.g. language or region) with the state moved out of SQLite. The index "
            "stage scales with partitions of `articles.clustered` and Elasticsearch data nodes/shards; bulk size and "
            "refresh interval are the first knobs."
        ),
    ]
    if write:
        write_doc_section(SECTION if workload == "generated" else f"{SECTION} ({workload} texts)", lines, DOC)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--articles", type=int, default=300, help="articles per pipeline run")
    parser.add_argument("--index-articles", type=int, default=2000, help="articles of the index-only run")
    parser.add_argument("--replicas", default="1,2", help="comma-separated replica counts")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for every process (e.g. batch_size=64, kafka_linger_ms=20); repeatable",
    )
    parser.add_argument(
        "--workload",
        choices=sorted(WORKLOADS),
        default="generated",
        help="what the pipeline runs publish (module docstring); syria reads ../shared in place",
    )
    parser.add_argument(
        "--topologies",
        default=f"{TOGETHER},{APART}",
        help=f"comma-separated, where story assignment runs: {', '.join(TOPOLOGIES)} (module docstring)",
    )
    parser.add_argument("--no-write", action="store_true", help="print, do not rewrite docs/benchmarks.md")
    args = parser.parse_args()
    topologies = [t for t in args.topologies.split(",") if t]
    unknown = sorted(set(topologies) - set(TOPOLOGIES))
    if unknown:
        parser.error(f"--topologies: unknown {unknown}; known: {sorted(TOPOLOGIES)}")
    extra = dict(item.split("=", 1) for item in args.set)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory(prefix="dist-load-") as tmp:
        root = Path(tmp)
        es = ElasticServer(port=free_port(), data_dir=root / "es", log_path=root / "noida.log")
        es.start()
        try:
            settings = load_settings(environ={}, overrides={"data_dir": root / "model", **extra})
            batch = int(extra.get("batch_size", settings.batch_size))
            articles = workload_articles(args.workload, args.articles)
            model_ms = model_cpu_ms(settings, articles, batch)
            print(f"== the model alone: {model_ms:.2f} ms CPU per article (batches of {batch})", flush=True)
            runs = []
            counts = [int(x) for x in args.replicas.split(",")]
            # alternate which topology runs first, so neither always meets the machine after the other
            order = [(n, t) for k, n in enumerate(counts) for t in (topologies if k % 2 == 0 else topologies[::-1])]
            for replicas, topology in order:
                print(f"== {replicas} replica(s), {topology}, {len(articles)} articles ({args.workload})", flush=True)
                result = run_pipeline(es, root, replicas, articles, extra, topology=topology)
                print(f"   {result['per_s']:.1f} articles/s end to end ({result['seconds']:.1f} s)", flush=True)
                print(
                    f"   pipeline cost beside the model: {pipeline_ms(result):.2f} ms CPU per article (the model "
                    f"{result['model_ms']:.2f} ms in the embed processes; measured apart {model_ms:.2f} ms: "
                    f"{pipeline_ms(result, model_ms):.2f})",
                    flush=True,
                )
                runs.append(result)
            print(f"== index stage alone, {args.index_articles} articles", flush=True)
            index_only = run_index_only(es, root, args.index_articles, extra)
            print(f"   {index_only['per_s']:.1f} articles/s", flush=True)
        finally:
            es.stop()
    model = load_settings(environ={}).model_name
    for line in write_section(
        runs, index_only, len(articles), extra, model, model_ms, workload=args.workload, write=not args.no_write
    ):
        print(line)


if __name__ == "__main__":
    main()
