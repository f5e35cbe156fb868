-- wrk script for the Visitors benchmark. BENCH_MODE: show | create | update | mix.
-- BENCH_IDS: ids 1..N exist. BENCH_TOKEN: bearer token.
local mode = os.getenv("BENCH_MODE") or "show"
local ids = tonumber(os.getenv("BENCH_IDS") or "10000")
local token = os.getenv("BENCH_TOKEN")

wrk.headers["Content-Type"] = "application/json"
if token then wrk.headers["Authorization"] = "Bearer " .. token end

local create_body = '{"name":"Visitor","email":"visitor@example.com","phone":"+65 12345678","notes":"This visitor is really cool."}'

function init(args)
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 100000)
end

local function show()
  return wrk.format("GET", "/api/v2/chat/visitors/" .. math.random(1, ids), nil, "")
end

local function update()
  local body = '{"name":"Name ' .. math.random(1, 1000000) .. '"}'
  return wrk.format("PUT", "/api/v2/chat/visitors/" .. math.random(1, ids), nil, body)
end

function request()
  if mode == "show" then return show() end
  if mode == "update" then return update() end
  if mode == "mix" then
    if math.random(1, 100) <= 80 then return show() end
    return update()
  end
  return wrk.format("POST", "/api/v2/chat/visitors", nil, create_body)
end

function done(summary, latency, requests)
  io.write(string.format(
    'BENCH {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"errors_status":%d,"errors_connect":%d,"errors_read":%d,"errors_write":%d,"errors_timeout":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    summary.errors.status, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.timeout))
end
