-- GET /api/v1/patients/{id}/trends, spread over the patients, each with its own token.
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
  i = i + stride
  return wrk.format("GET", "/api/v1/patients/" .. t.id .. "/trends",
    { ["Authorization"] = "Bearer " .. t.token })
end
