-- POST /api/v1/patients/{id}/observations: one pain score recorded now, spread over the
-- patients (each with an active course, so the frequency policy runs), each with its own token.
local common = dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")
common.install()

function request()
  local t, n = common.next_target()
  local body = string.format('{"instrument":"pain-nrs","value":%d,"recorded_at":"%s"}',
    n % 11, common.now())
  return wrk.format("POST", "/api/v1/patients/" .. t.id .. "/observations",
    { ["Authorization"] = "Bearer " .. t.token, ["Content-Type"] = "application/json" }, body)
end
