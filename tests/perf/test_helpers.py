"""The benchmark's pure helpers: reading wrk's report, /proc/<pid>/stat, and the budget ratios."""

from __future__ import annotations

import pytest

from tests.perf.bench import ratios
from tests.perf.loadgen import WrkError, parse_report
from tests.perf.processes import parse_stat

WRK_OUTPUT = """Running 5s test @ http://127.0.0.1:8000/api/v1/referrals
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   425.77ms  150.10ms   1.93s    80.00%
  169 requests in 5.00s, 400.10KB read
Requests/sec:     33.80
{"wrk_report": 1, "requests": 169, "duration_us": 5001234, "bytes": 409700, "statuses": {"201": 168, "503": 1}, \
"errors": {"connect": 0, "read": 0, "write": 0, "status": 1, "timeout": 2}, \
"latency_us": {"p50": 425770, "p90": 927270, "p99": 1736230, "max": 1934100, "mean": 475210.5}}
"""


def test_the_report_line_gives_counts_statuses_and_latencies_in_milliseconds() -> None:
    report = parse_report(WRK_OUTPUT)

    assert report.requests == 169
    assert report.duration_s == pytest.approx(5.001234)
    assert report.statuses == {201: 168, 503: 1}
    assert report.ok(201) == 168
    assert report.socket_errors == {"connect": 0, "read": 0, "write": 0, "timeout": 2}
    assert report.latency_ms == {"p50": 425.77, "p90": 927.27, "p99": 1736.23, "max": 1934.1, "mean": 475.21}


def test_output_without_a_report_line_is_an_error_that_shows_it() -> None:
    with pytest.raises(WrkError, match="unable to connect"):
        parse_report("unable to connect to 127.0.0.1:8000 Connection refused\n")


def test_a_stat_line_is_read_after_the_command_name_whatever_it_holds() -> None:
    fields = " ".join(str(n) for n in range(4, 53))  # ppid is field 4, utime 14, stime 15, cutime 16, cstime 17
    stat = parse_stat(f"4242 (casebridge (serve) x) S {fields}")

    assert (stat.pid, stat.ppid) == (4242, 4)
    assert (stat.utime, stat.stime, stat.cutime, stat.cstime) == (14, 15, 16, 17)
    assert stat.ticks == 14 + 15 + 16 + 17


def test_ratios_reach_one_where_a_figure_meets_its_target_in_either_direction() -> None:
    budget = {"referrals_per_s": 500, "send_p99_ms": 50, "list_p50_ms_at_1M": 20, "cli_start_ms": 500}
    measured = {
        "referrals_per_s": 250.0,
        "send_p99_ms": 25.0,
        "list_p50_ms": {"10k": 1.0, "1M": 40.0},
        "cli_start_ms": {"help": 250.0, "tenant_create": 1000.0},
    }

    assert ratios(measured, budget) == {
        "referrals_per_s": 0.5,
        "send_p99_ms": 2.0,
        "list_p50_ms_at_1M": 0.5,
        "cli_start_ms": 0.5,
    }


def test_a_figure_not_measured_has_no_ratio() -> None:
    assert ratios({"referrals_per_s": None}, {"referrals_per_s": 500}) == {"referrals_per_s": None}
