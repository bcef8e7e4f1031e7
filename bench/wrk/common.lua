-- Shared by the bench scripts. Every script is run as
--   wrk ... -s bench/wrk/NAME.lua URL -- DATA_FILE THREADS
-- from the repository root. DATA_FILE is a Lua file that bench/run.py writes (tokens, task
-- ids, cursors); done() prints one line of JSON that bench/run.py reads.
local M = {}

local threads_started = 0

-- Runs in wrk's main Lua state, once per thread: gives each thread a number (1..THREADS),
-- so that scripts can seed their randomness apart and take disjoint slices of the data.
function M.setup(thread)
   threads_started = threads_started + 1
   thread:set("thread_number", threads_started)
end

-- Runs in each thread's own Lua state.
function M.load(args)
   local data = dofile(args[1])
   data.threads = tonumber(args[2]) or 1
   math.randomseed(os.time() * 100 + (thread_number or 0))
   return data
end

-- A request() that cycles through prebuilt requests, each thread from a random start.
function M.rotation(requests)
   local n = #requests
   local i = math.random(n)
   return function()
      i = i % n + 1
      return requests[i]
   end
end

function M.bearer(token)
   return "Bearer " .. token
end

function M.done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'BENCH_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,"errors_connect":%d,' ..
      '"errors_read":%d,"errors_write":%d,"errors_status":%d,"errors_timeout":%d,' ..
      '"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"mean_us":%.1f,"max_us":%d}\n',
      summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
      e.status, e.timeout, latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency:percentile(99.9), latency.mean, latency.max))
end

return M
