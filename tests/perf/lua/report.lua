-- Shared by the benchmark's wrk scripts (tests/perf/loadgen.py): per-status counts in the thread, an optional stop
-- after $MAX_RESPONSES answers (said on stderr, so the benchmark can end the run early), one JSON line from done().
statuses = {}
local threads = {}
local answered = 0
local max_responses = tonumber(os.getenv("MAX_RESPONSES") or "0")

function setup(thread)
  table.insert(threads, thread)
end

function count_status(status)
  statuses[status] = (statuses[status] or 0) + 1
  answered = answered + 1
  if max_responses > 0 and answered == max_responses then
    io.stderr:write("casebridge-bench: enough answers\n")
    io.stderr:flush()
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local counts = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses") or {}) do
      counts[status] = (counts[status] or 0) + n
    end
  end
  local parts = {}
  for status, n in pairs(counts) do
    table.insert(parts, string.format('"%d": %d', status, n))
  end
  local errors = summary.errors
  io.write(string.format(
    '{"wrk_report": 1, "requests": %d, "duration_us": %d, "bytes": %d, "statuses": {%s}, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"p50": %d, "p90": %d, "p99": %d, "max": %d, "mean": %.1f}}\n',
    summary.requests, summary.duration, summary.bytes, table.concat(parts, ", "),
    errors.connect, errors.read, errors.write, errors.status, errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
