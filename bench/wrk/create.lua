-- POST /api/v1/tasks (no Idempotency-Key), rotating over the seeded users' tokens.
local common = dofile("bench/wrk/common.lua")
local next_request

function init(args)
   local data = common.load(args)
   local body = '{"title":"Benchmark task","description":"Created by make bench",' ..
      '"priority":"high","due_at":"2030-01-01T09:00:00Z"}'
   local requests = {}
   for k, token in ipairs(data.tokens) do
      requests[k] = wrk.format("POST", "/api/v1/tasks",
         { Authorization = common.bearer(token), ["Content-Type"] = "application/json" }, body)
   end
   next_request = common.rotation(requests)
end

function request()
   return next_request()
end

setup = common.setup
done = common.done
