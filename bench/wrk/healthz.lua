-- GET /healthz: the same server's cheapest route (no database), the trends read's reference.
local common = dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")
common.install()
wrk.method = "GET"
wrk.path = "/healthz"
