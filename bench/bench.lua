-- wrk script for the Visitors benchmark.
-- BENCH_MODE: show | show304 | show_stale | create | create_idem | update | upsert | mix | list |
-- feed.
-- BENCH_IDS: ids 1..N exist (at version 1). BENCH_TOKEN: bearer token.
-- BENCH_CURSOR: for list, the page[after] cursor; for feed, the change feed's cursor (none: the
-- first page).
local mode = os.getenv("BENCH_MODE") or "show"
local ids = tonumber(os.getenv("BENCH_IDS") or "10000")
local token = os.getenv("BENCH_TOKEN")

wrk.headers["Content-Type"] = "application/json"
if token then wrk.headers["Authorization"] = "Bearer " .. token end

local create_body = '{"name":"Visitor","email":"visitor@example.com","phone":"+65 12345678","notes":"This visitor is really cool."}'

local cursor = os.getenv("BENCH_CURSOR") or ""
local key_prefix = ""
local key_count = 0

function init(args)
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 100000)
  key_prefix = "bench-" .. os.time() .. "-" .. math.random(1, 1000000000) .. "-"
end

-- One headers table per extra header, filled once and reused: the load generator shares the
-- cores with the service, so a request costs it no more than a plain one does.
local function headers_with(name)
  local headers = {}
  for key, value in pairs(wrk.headers) do headers[key] = value end
  headers[name] = ""
  return headers
end
local conditional = headers_with("If-None-Match")
local idempotent = headers_with("Idempotency-Key")

-- Show with If-None-Match: the visitor's current tag (answered 304), or for show_stale a tag
-- no visitor ever has (version 0: answered 200 with the body), so the two modes cost wrk the
-- same and differ only in the answer.
local function conditional_show(version)
  local id = math.random(1, ids)
  conditional["If-None-Match"] = '"' .. id .. '.' .. version .. '"'
  return wrk.format("GET", "/api/v2/chat/visitors/" .. id, conditional, "")
end

local function create_idem()
  key_count = key_count + 1
  idempotent["Idempotency-Key"] = key_prefix .. key_count
  return wrk.format("POST", "/api/v2/chat/visitors", idempotent, create_body)
end

local list_path = "/api/v2/chat/visitors?page[size]=100"
if cursor ~= "" then list_path = list_path .. "&page[after]=" .. cursor end
local feed_path = "/api/v2/chat/incremental/visitors?per_page=1000&start_time=0"
if cursor ~= "" then feed_path = "/api/v2/chat/incremental/visitors?per_page=1000&cursor=" .. cursor end

local function show()
  return wrk.format("GET", "/api/v2/chat/visitors/" .. math.random(1, ids), nil, "")
end

local function update()
  local body = '{"name":"Name ' .. math.random(1, 1000000) .. '"}'
  return wrk.format("PUT", "/api/v2/chat/visitors/" .. math.random(1, ids), nil, body)
end

-- The same change as update, found by external_id: the seeded visitor n has `ext-n`.
local function upsert()
  local body = '{"external_id":"ext-' .. math.random(1, ids) .. '","name":"Name ' .. math.random(1, 1000000) .. '"}'
  return wrk.format("POST", "/api/v2/chat/visitors/create_or_update", nil, body)
end

function request()
  if mode == "show" then return show() end
  if mode == "show304" then return conditional_show(1) end
  if mode == "show_stale" then return conditional_show(0) end
  if mode == "create_idem" then return create_idem() end
  if mode == "list" then return wrk.format("GET", list_path, nil, "") end
  if mode == "feed" then return wrk.format("GET", feed_path, nil, "") end
  if mode == "update" then return update() end
  if mode == "upsert" then return upsert() end
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
