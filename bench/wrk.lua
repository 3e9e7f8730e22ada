-- wrk script of bench/run.sh: request shape from the environment, exact figures at the end.
--
--   KYROS_WRK_METHOD   GET (default) or POST
--   KYROS_WRK_BODY     request body (sent as application/json)
--   KYROS_WRK_HEADER1..KYROS_WRK_HEADER4   "Name: value" (Authorization: Bearer …, X-API-Key: …,
--                      Cookie: kyros_session=…)
--   KYROS_WRK_COUNT_EMPTY=1   count 204 answers (a claim that found the queue empty) as `empty=`
--
-- done() prints one line `KYROS requests=… duration_us=… p50_us=… p99_us=… …` that run.sh
-- parses (wrk's own --latency report is kept in the log for humans).

local method = os.getenv("KYROS_WRK_METHOD")
if method and method ~= "" then
  wrk.method = method
end
local body = os.getenv("KYROS_WRK_BODY")
if body and body ~= "" then
  wrk.body = body
  wrk.headers["Content-Type"] = "application/json"
end
for i = 1, 4 do
  local h = os.getenv("KYROS_WRK_HEADER" .. i)
  if h and h ~= "" then
    local name, value = h:match("^([^:]+):%s*(.*)$")
    if name then
      wrk.headers[name] = value
    end
  end
end

local threads = {}
function setup(thread)
  table.insert(threads, thread)
end

-- Only when asked: a response() callback makes wrk hand every response to Lua.
if os.getenv("KYROS_WRK_COUNT_EMPTY") == "1" then
  empty = 0
  function response(status, headers, body)
    if status == 204 then
      empty = empty + 1
    end
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  local empty = 0
  for _, thread in ipairs(threads) do
    empty = empty + (thread:get("empty") or 0)
  end
  io.write(string.format(
    "KYROS requests=%d duration_us=%d p50_us=%.0f p99_us=%.0f max_us=%.0f status_errors=%d socket_errors=%d empty=%d\n",
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), latency.max,
    e.status, e.connect + e.read + e.write + e.timeout, empty))
end
