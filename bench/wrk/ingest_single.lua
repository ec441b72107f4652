-- POST /api/v1/patients/{id}/observations: one pain score recorded now, spread over the
-- patients (each with an active course, so the frequency policy runs), each with its own token.
local common = dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")
common.install()

local targets, i, stride

function init(args)
  targets = common.load_targets()
  i = thread_index or 1
  stride = tonumber(os.getenv("BENCH_THREADS") or "1")
end

function request()
  local t = targets[(i - 1) % #targets + 1]
  local body = string.format('{"instrument":"pain-nrs","value":%d,"recorded_at":"%s"}',
    i % 11, common.now())
  i = i + stride
  return wrk.format("POST", "/api/v1/patients/" .. t.id .. "/observations",
    { ["Authorization"] = "Bearer " .. t.token, ["Content-Type"] = "application/json" }, body)
end
