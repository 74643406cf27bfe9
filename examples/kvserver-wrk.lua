-- kvserver-wrk.lua — a wrk script for sochdb-kvserver: each thread PUTs
-- keys of its own (t<THREAD>-<N>, a 100-byte value) and, every other request,
-- GETs one of the keys it wrote before its last 32 PUTs (whose answers may
-- still be in flight on the thread's other connections), so a GET hits.
--   wrk -t2 -c16 -d10s -s examples/kvserver-wrk.lua http://127.0.0.1:PORT
-- done() prints the per-status counts as "status CODE COUNT" lines.
local threads = {}
local counter = 1

function setup(thread)
  thread:set("id", counter)
  table.insert(threads, thread)
  counter = counter + 1
end

function init(args)
  written = 0
  n = 0
  codes = {}
  body = string.rep("v", 100)
end

function request()
  n = n + 1
  if n % 2 == 0 and written > 64 then
    return wrk.format("GET", "/kv/t" .. id .. "-" .. math.random(0, written - 33))
  end
  local key = "/kv/t" .. id .. "-" .. written
  written = written + 1
  return wrk.format("PUT", key, { ["Content-Length"] = #body }, body)
end

function response(status, headers, b)
  codes[status] = (codes[status] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    local c = t:get("codes")
    for code, count in pairs(c) do total[code] = (total[code] or 0) + count end
  end
  for code, count in pairs(total) do io.write(string.format("status %d %d\n", code, count)) end
  io.write(string.format("p50_ms %.3f p99_ms %.3f\n", latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
