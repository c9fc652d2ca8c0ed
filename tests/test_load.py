"""load(): real concurrent HTTP with no hidden caps, records, errors counted, pictures."""

from __future__ import annotations

import math
import threading
from collections import Counter

import pytest

from helpers import LoadResult, load, serve
from helpers._threads import describe_threads, thread_order
from helpers.plots import Picture
from tests import apps


@pytest.fixture(scope="module")
def server():
    with serve(apps.app, name="load-target") as running:
        load(running, "/")
        yield running


def test_concurrent_sleeps_overlap(server):
    result = load(server, "/sleep?seconds=0.5", n=50)
    assert result.ok == 50 and result.errors == 0
    # 50 requests that each wait 0.5 s, all at once: close to 0.5 s, far from 25 s
    assert 0.5 <= result.wall_s < 0.5 * 1.6
    assert result.served_by == {"event loop": 50}


def test_no_hidden_connection_cap(server):
    # a stock httpx client caps connections at 100: the second hundred would wait for the first
    result = load(server, "/sleep?seconds=1.0", n=200)
    assert result.ok == 200
    assert max(in_flight(result)) == 200


def test_concurrency_limits_requests_in_flight(server):
    result = load(server, "/sleep?seconds=0.3", n=6, concurrency=2)
    assert result.ok == 6
    assert 0.9 <= result.wall_s < 0.9 * 1.5  # three waves of two
    assert max(in_flight(result)) == 2


def test_connection_limit_imitates_a_capped_client(server):
    result = load(server, "/sleep?seconds=0.3", n=4, connection_limit=2)
    assert result.wall_s >= 0.6  # two waves: the cap made half of them wait
    # the waiting shows up in the client-side latency, as it would with a capped client
    assert sum(latency >= 0.6 for latency in result.latencies_s) == 2


def in_flight(result: LoadResult) -> list[int]:
    starts = [(r.start_s, 1) for r in result.records]
    ends = [(r.end_s, -1) for r in result.records]
    events = sorted(starts + ends, key=lambda e: (e[0], e[1]))
    counts, now = [], 0
    for _, step in events:
        now += step
        counts.append(now)
    return counts


def test_def_endpoints_run_on_worker_threads(server):
    result = load(server, "/def-sleep?seconds=0.2", n=8)
    assert result.ok == 8
    assert "event loop" not in result.served_by
    assert len(result.served_by) == 8  # eight requests at once need eight threads


def test_records_and_statistics(server):
    result = load(server, "/", n=20, concurrency=5)
    assert len(result.records) == result.n == 20
    assert sorted(r.index for r in result.records) == list(range(20))
    assert all(r.end_s >= r.start_s and r.status == 200 for r in result.records)
    assert result.p50 <= result.p95 <= result.p99 <= result.max_s
    assert result.percentile(0) == min(result.latencies_s)
    assert result.rps == pytest.approx(20 / result.wall_s)
    assert '{"ok":true}' in result.records[0].body
    with pytest.raises(ValueError, match="percentile"):
        result.percentile(101)


def test_mixed_paths_and_stagger(server):
    result = load(server, ["/sleep?seconds=0.4"] + ["/"] * 4, stagger_s=0.05)
    probes = result.for_path("/")
    assert probes.n == 4 and result.for_path("/sleep?seconds=0.4").n == 1
    # request i is sent no earlier than i × 50 ms after the first (a busy client may be later)
    first = min(r.start_s for r in result.records)
    assert all(r.start_s - first >= r.index * 0.05 - 0.002 for r in result.records)
    with pytest.raises(KeyError, match="no requests went to"):
        result.for_path("/nope")


def test_http_errors_are_counted_not_raised(server):
    result = load(server, "/status/503", n=3)
    assert result.ok == 0 and result.errors == 3
    assert result.error_messages == {"HTTP 503": 3}


def test_timeouts_are_counted(server):
    result = load(server, "/forever", n=3, timeout_s=0.3)
    assert result.errors == 3
    assert result.error_messages == {"timed out after 0.3 s": 3}
    assert all(0.25 < r.latency_s < 1.0 for r in result.records)


def test_refused_connections_are_counted():
    import socket

    with socket.socket() as s:  # a port that was free a moment ago and has no listener
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = load(f"http://127.0.0.1:{port}", "/", n=2)
    assert result.errors == 2
    (message,) = result.error_messages
    assert message.startswith("could not connect")


def test_loop_blocks_fall_inside_the_run(server):
    server.clear_loop_blocks()
    blocked = load(server, "/blocking-sleep")
    calm = load(server, "/sleep?seconds=0.1")
    def by_code(blocks):  # a garbage-collection pause may land in either run
        return [b for b in blocks if not b.is_garbage_collection]

    assert len(by_code(blocked.loop_blocks)) == 1
    assert by_code(calm.loop_blocks) == []


def test_summary_and_versus(server):
    result = load(server, "/sleep?seconds=0.2", n=4)
    text = str(result)
    assert "4 requests" in text and "4 ok" in text and "event loop: 4" in text
    assert result.versus(0.2).startswith(f"measured {result.wall_s:.2f} s, ideal 0.20 s")


def test_pictures_render(server):
    result = load(server, ["/blocking-sleep", "/", "/def-sleep?seconds=0"], stagger_s=0.05)
    for picture in (result.plot_timeline(), result.plot_latency()):
        assert isinstance(picture, Picture)
        png = picture._repr_png_()
        assert png.startswith(b"\x89PNG") and len(png) > 5000
        assert "picture:" in repr(picture)
    timeline_axes = result.plot_timeline().figure.axes[0]
    assert len(timeline_axes.patches) >= 3  # one bar per request, plus the blocked span


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        ({"target": "not a url"}, ValueError, "needs a URL like"),
        ({"target": "ftp://127.0.0.1/"}, ValueError, "needs a URL like"),
        ({"target": "http://127.0.0.1:99999"}, ValueError, "port"),
        ({"target": 3}, TypeError, "needs a Server or a URL"),
        ({"n": 0}, ValueError, "n must be a positive whole number"),
        ({"n": -5}, ValueError, "n must be a positive whole number"),
        ({"n": 2.5}, ValueError, "n must be a positive whole number"),
        ({"concurrency": 0}, ValueError, "concurrency must be"),
        ({"path": "no-slash"}, ValueError, "starting with '/'"),
        ({"path": []}, ValueError, "empty list"),
        ({"timeout_s": 0}, ValueError, "timeout_s must be positive"),
    ],
)
def test_bad_input_gets_one_clear_error(server, kwargs, error, pattern):
    arguments = {"target": server, "path": "/", "n": 1} | kwargs
    threads_before = threading.active_count()
    with pytest.raises(error, match=pattern):
        load(arguments.pop("target"), arguments.pop("path"), **arguments)
    assert threading.active_count() == threads_before


def test_stopped_server_is_refused_with_advice():
    server = serve(apps.app, name="gone")
    server.stop()
    with pytest.raises(RuntimeError, match="serve\\(\\) it again"):
        load(server, "/")


def test_threads_are_listed_loop_first_then_workers_by_number():
    names = ["worker 10", "worker 2", "event loop", "kernel"]
    assert sorted(names, key=thread_order) == ["event loop", "kernel", "worker 2", "worker 10"]
    summary = describe_threads(Counter({"worker 2": 1, "event loop": 3}))
    assert summary == "event loop: 3, worker 2: 1"


def test_many_threads_are_summarised_by_spread():
    counts = Counter({f"worker {i}": i for i in range(1, 9)} | {"event loop": 5})
    assert describe_threads(counts) == "event loop: 5, 8 worker threads (1–8 requests each)"
    # many threads, none of them workers: nothing to summarise, so list them all
    assert describe_threads(Counter({f"t{i}": 1 for i in range(8)})).count(": 1") == 8


def test_empty_percentile_is_nan():
    assert math.isnan(LoadResult([], 0.0, 0.0, []).percentile(50))


def test_task_timeline_draws_one_bar_per_task():
    from helpers.plots import task_timeline

    log = [(10.0, "A", "start"), (10.0, "B", "start"), (10.3, "B", "end"), (10.6, "A", "end")]
    picture = task_timeline({"together": (log, 10.0), "alone": (log[:1] + log[3:], 10.0)})
    top, bottom = picture.figure.axes
    assert [round(p.get_width(), 2) for p in top.patches] == [0.6, 0.3]
    assert len(bottom.patches) == 1
    assert picture._repr_png_().startswith(b"\x89PNG")


def test_mixed_runs_label_rows_by_path(server):
    result = load(server, ["/sleep?seconds=0.1", "/", "/"], stagger_s=0.02)
    labels = [t.get_text() for t in result.plot_timeline().figure.axes[0].get_yticklabels()]
    assert labels == ["/sleep?seconds=0.1", "/", "/"]


def test_monitor_probes_while_traffic_runs(server):
    from helpers import load_with_monitor
    from helpers.plots import probe_latency

    server.clear_loop_blocks()
    traffic, monitor = load_with_monitor(
        server, "/blocking-sleep", 1, ["/"] * 8, every_s=0.05
    )
    assert traffic.ok == 1 and monitor.ok == 8
    # the monitor ran during the traffic: its worst probe waited for the blocking sleep
    assert monitor.max_s >= 0.48 * 0.6
    picture = probe_latency("probes", [("during the sleep", monitor, "/")], busy=traffic)
    assert "worst" in repr(picture) and picture._repr_png_().startswith(b"\x89PNG")


def test_the_monitor_probes_before_the_traffic_starts(server):
    """The probes go out through this process, whose GIL a loop computing here holds: the
    traffic waits for the first probe, so a probe always catches the block from its start."""
    from helpers import load_with_monitor

    for _ in range(3):
        traffic, monitor = load_with_monitor(server, "/cpu", 1, ["/"] * 20, every_s=0.025)
        assert monitor.started_s <= traffic.started_s, (monitor.started_s, traffic.started_s)
        # /cpu holds the loop for 0.3 s; a probe sent within 25 ms of its start waits the rest
        assert monitor.max_s >= 0.3 - 0.025, monitor.max_s


def test_during_keeps_only_the_requests_sent_while_the_other_run_went_on(server):
    from helpers import load_with_monitor

    job, probes = load_with_monitor(server, "/sleep?seconds=0.3", 1, ["/"] * 24, every_s=0.025)
    overlapping = probes.during(job)
    assert 0 < overlapping.n < probes.n  # the probes went on for 0.6 s, the job for 0.3 s
    assert all(job.started_s <= r.start_s <= job.ended_s for r in overlapping.records)
    assert overlapping.n == sum(job.started_s <= r.start_s <= job.ended_s for r in probes.records)
    later = load(server, "/", n=2)
    with pytest.raises(ValueError, match="none of these 2 requests was sent while"):
        later.during(job)


def test_a_run_starts_after_a_full_collection_not_during_one(server):
    import gc
    import time as clock

    full_collections: list[float] = []

    def note(phase: str, info: dict) -> None:
        if phase == "stop" and info["generation"] == 2:
            full_collections.append(clock.perf_counter())

    gc.callbacks.append(note)
    try:
        result = load(server, "/", n=3, collect_garbage=True)
        before = len(full_collections)
        load(server, "/", n=3)  # off by default
    finally:
        gc.callbacks.remove(note)
    assert full_collections and full_collections[0] < result.started_s, full_collections
    assert before >= 1 and len(full_collections) == before  # none asked for the second run


def test_a_run_served_by_many_threads_gets_a_legend_that_says_what_colours_mean(server):
    server.clear_loop_blocks()
    result = load(server, "/def-sleep?seconds=0.2", n=20)
    assert len(result.served_by) > 8  # more threads than a legend lists one by one
    picture = result.plot_timeline()
    legend = picture.figure.axes[0].get_legend()
    assert legend is not None
    labels = [text.get_text() for text in legend.get_texts()]
    assert labels[0] == f"{len(result.served_by)} worker threads (colours repeat)", labels
