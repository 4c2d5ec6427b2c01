-- wrk script: POST one XML-RPC body over and over and check every answer.
--
--   wrk -t1 -c16 -d5s --latency -s bench/post.lua URL -- BODY_FILE [AUTHORIZATION]
--
-- An answer counts as good when it is HTTP 200 and holds <int>42</int> (the upstream's canned
-- answer); anything else (a fault, an HTML error page, a 401) counts as bad. done() prints one
-- machine-readable line, "BENCH key=value ...", that bench/load.py parses.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local file = assert(io.open(args[1], "rb"))
  wrk.method = "POST"
  wrk.body = file:read("*a")
  file:close()
  wrk.headers["Content-Type"] = "text/xml"
  if args[2] then
    wrk.headers["Authorization"] = args[2]
  end
  good, bad = 0, 0
end

function response(status, headers, body)
  if status == 200 and string.find(body, "<int>42</int>", 1, true) then
    good = good + 1
  else
    bad = bad + 1
  end
end

function done(summary, latency, requests)
  local good_total, bad_total = 0, 0
  for _, thread in ipairs(threads) do
    good_total = good_total + thread:get("good")
    bad_total = bad_total + thread:get("bad")
  end
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d good=%d bad=%d "
      .. "connect=%d read=%d write=%d status=%d timeout=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, good_total, bad_total,
    e.connect, e.read, e.write, e.status, e.timeout))
end
