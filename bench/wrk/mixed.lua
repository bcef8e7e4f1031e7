-- The mixed, sustained load: a third POST /api/v1/tasks, two thirds GET /api/v1/tasks (first
-- page, default limit 20), each request for a random one of the seeded users, with that
-- user's token.
--
-- Clients do not send their requests in lock step, so each request is drawn at random
-- from a table of one create and two lists per user (a third creates on average, and no
-- fixed pattern that could line every connection up on the same kind of request at once).
-- The requests are built once, in init(), so that wrk spends no more CPU per request here
-- than in list.lua or create.lua.
local common = dofile("bench/wrk/common.lua")
local requests, n

function init(args)
   local data = common.load(args)
   local body = '{"title":"Benchmark task","description":"Created by make bench (mixed)",' ..
      '"priority":"high","due_at":"2030-01-01T09:00:00Z"}'
   requests = {}
   for _, token in ipairs(data.tokens) do
      local auth = common.bearer(token)
      requests[#requests + 1] = wrk.format("POST", "/api/v1/tasks",
         { Authorization = auth, ["Content-Type"] = "application/json" }, body)
      requests[#requests + 1] = wrk.format("GET", "/api/v1/tasks", { Authorization = auth })
      requests[#requests + 1] = wrk.format("GET", "/api/v1/tasks", { Authorization = auth })
   end
   n = #requests
end

function request()
   return requests[math.random(n)]
end

setup = common.setup
done = common.done
