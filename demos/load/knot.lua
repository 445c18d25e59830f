-- wrk script for the Knot benchmarks: python -m demos.load.wrk runs it.
--
--   wrk -s demos/load/knot.lua URL -- PATHS_FILE REQUESTS_PER_CONNECTION
--
-- Requests walk the list of paths written by demos.load.tree, each wrk thread from its own
-- offset, so every server sees the same mix. Every Nth request of a thread carries
-- "Connection: close": the server answers and closes, and wrk reconnects. Connections thus
-- make N requests on average (wrk has no per-connection hook to make it exact), and accepting
-- new connections stays part of the load, which is what Knot's C and A policies differ in.
-- At the end one JSON line (prefixed "KNOT-RESULT ") reports totals and errors.

local threads = {}
local requests = {}
local n = 0
local counter = 0

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  local per_conn = tonumber(args[2] or "10")
  local i = 0
  for path in io.lines(args[1]) do
    i = i + 1
    if i % per_conn == 0 then
      requests[i] = wrk.format("GET", path, { ["Connection"] = "close" })
    else
      requests[i] = wrk.format("GET", path)
    end
  end
  n = i
  counter = (id or 0) * 7919 -- a prime stride apart, so threads do not move in lockstep
end

function request()
  counter = counter + 1
  return requests[counter % n + 1]
end

function done(summary, latency, _)
  local e = summary.errors
  io.write(string.format(
    'KNOT-RESULT {"requests": %d, "bytes": %d, "duration_us": %d, "connect": %d, "read": %d, '
      .. '"write": %d, "status": %d, "timeout": %d, "p50_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.bytes, summary.duration, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(99), latency.max))
end
