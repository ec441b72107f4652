-- GET /api/v1/patients/{id}/trends, spread over the patients, each with its own token.
local common = dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")
common.install()

function request()
  local t = common.next_target()
  return wrk.format("GET", "/api/v1/patients/" .. t.id .. "/trends",
    { ["Authorization"] = "Bearer " .. t.token })
end
