-- Shared by the benchmark's wrk scripts (loaded with dofile; wrk runs one Lua state per
-- thread plus one for setup/done).
--
-- BENCH_TARGETS names a file of "patient_id token" lines: each request goes to the next
-- patient of its thread, with that patient's own bearer token, so requests are spread over
-- every patient and every token (the service caches each token for a second per process).
local M = {}

local threads = {}
local thread_count = 0

function M.load_targets()
  local path = os.getenv("BENCH_TARGETS")
  local targets = {}
  if path == nil then return targets end
  for line in io.lines(path) do
    local id, token = line:match("^(%S+)%s+(%S+)$")
    if id then targets[#targets + 1] = { id = id, token = token } end
  end
  return targets
end

-- Each thread walks the targets from its own offset, stepping by the thread count, so the
-- threads together visit every patient evenly.
local targets, position, stride = {}, 1, 1

-- The next (patient, token) of this thread, and how many requests the thread has made.
function M.next_target()
  local t = targets[(position - 1) % #targets + 1]
  position = position + stride
  return t, position
end

-- The current UTC second as RFC 3339, recomputed once a second.
local last_second, last_stamp = -1, nil
function M.now(offset_seconds)
  local t = os.time() - (offset_seconds or 0)
  if offset_seconds then return os.date("!%Y-%m-%dT%H:%M:%SZ", t) end
  if t ~= last_second then
    last_second, last_stamp = t, os.date("!%Y-%m-%dT%H:%M:%SZ", t)
  end
  return last_stamp
end

-- Installs setup/init/response/done globals: the targets of each thread, per-thread counters of non-2xx responses and
-- of bodies matching `bad_body` (a plain substring; e.g. a rejected batch item), and a JSON
-- summary on stdout at the end.
function M.install(bad_body)
  function setup(thread)
    thread_count = thread_count + 1
    thread:set("thread_index", thread_count)
    threads[#threads + 1] = thread
  end

  function init(args)
    targets = M.load_targets()
    position = thread_index or 1
    stride = tonumber(os.getenv("BENCH_THREADS") or "1")
  end

  function response(status, headers, body)
    if status < 200 or status > 299 then
      non2xx = (non2xx or 0) + 1
      if first_error == nil then first_error = tostring(status) .. " " .. (body or ""):sub(1, 300) end
    elseif bad_body and body and body:find(bad_body, 1, true) then
      bad_bodies = (bad_bodies or 0) + 1
      if first_error == nil then first_error = "200 " .. body:sub(1, 300) end
    end
  end

  function done(summary, latency, requests)
    local non, bad, first = 0, 0, ""
    for _, thread in ipairs(threads) do
      non = non + (thread:get("non2xx") or 0)
      bad = bad + (thread:get("bad_bodies") or 0)
      if first == "" then first = thread:get("first_error") or "" end
    end
    local e = summary.errors
    io.write(string.format(
      '\nBENCH_JSON {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
      '"p50_us": %d, "p90_us": %d, "p99_us": %d, "mean_us": %.1f, "max_us": %d, ' ..
      '"connect_errors": %d, "read_errors": %d, "write_errors": %d, "timeouts": %d, ' ..
      '"status_errors": %d, "non2xx": %d, "bad_bodies": %d, "first_error": %q}\n',
      summary.requests, summary.duration, summary.bytes,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean,
      latency.max, e.connect, e.read, e.write, e.timeout, e.status, non, bad, first))
  end
end

return M
