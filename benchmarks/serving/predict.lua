-- wrk script for the serving benchmark: POSTs TF Serving REST predict bodies, rotating through
-- the file given after `--` (one JSON body per line), checks every response and prints one
-- machine-readable line at the end:
--   RESULT requests=<n> ok=<n> bad=<n> duration_us=<n> p50_us=<n> p90_us=<n> p99_us=<n> ...
-- Usage: wrk -t1 -c32 -d10s --latency -s predict.lua http://127.0.0.1:8501/v1/models/taxi:predict -- bodies.jsonl

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  bodies = {}
  for line in io.lines(args[1]) do
    if #line > 0 then bodies[#bodies + 1] = line end
  end
  if #bodies == 0 then error("no request bodies in " .. tostring(args[1])) end
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  index = 0
  ok = 0
  bad = 0
  first_bad = ""
end

function request()
  index = index % #bodies + 1
  return wrk.format(nil, nil, nil, bodies[index])
end

function response(status, headers, body)
  if status == 200 and string.find(body, '"predictions"', 1, true) then
    ok = ok + 1
  else
    bad = bad + 1
    if first_bad == "" then first_bad = tostring(status) .. " " .. string.sub(body or "", 1, 200) end
  end
end

function done(summary, latency, requests)
  local total_ok, total_bad, sample = 0, 0, ""
  for _, thread in ipairs(threads) do
    total_ok = total_ok + thread:get("ok")
    total_bad = total_bad + thread:get("bad")
    if sample == "" then sample = thread:get("first_bad") end
  end
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d ok=%d bad=%d duration_us=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d mean_us=%.1f " ..
    "connect_errors=%d read_errors=%d write_errors=%d status_errors=%d timeouts=%d\n",
    summary.requests, total_ok, total_bad, summary.duration,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean,
    e.connect, e.read, e.write, e.status, e.timeout))
  sample = string.gsub(sample, "\n", " ")
  io.write("FIRST_BAD " .. sample .. "\n")
end
