-- POST /api/v1/patients/{id}/observations/batch: 100 observations a request (an app or a
-- device syncing the last readings), spread over the patients, each with its own token.
-- A 200 whose body reports a "rejected" item counts as an error too.
local common = dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")
common.install('"rejected"')

local SIZE = tonumber(os.getenv("BENCH_BATCH") or "100")
local body, body_second = nil, -1

-- Rebuilt once a second: pain scores and lumbar flexion over the last SIZE minutes.
local function batch_body()
  local second = os.time()
  if second ~= body_second then
    local items = {}
    for k = 1, SIZE do
      local stamp = common.now(k * 60)
      if k % 4 == 0 then
        items[k] = string.format('{"instrument":"rom-lumbar-flexion","value":%d.5,"recorded_at":"%s"}',
          30 + k % 40, stamp)
      else
        items[k] = string.format('{"instrument":"pain-nrs","value":%d,"recorded_at":"%s"}',
          k % 11, stamp)
      end
    end
    body, body_second = '{"observations":[' .. table.concat(items, ",") .. ']}', second
  end
  return body
end

function request()
  local t = common.next_target()
  return wrk.format("POST", "/api/v1/patients/" .. t.id .. "/observations/batch",
    { ["Authorization"] = "Bearer " .. t.token, ["Content-Type"] = "application/json" },
    batch_body())
end
