-- GET /api/v1/tasks (first page, default limit 20), rotating over the seeded users' tokens.
local common = dofile("bench/wrk/common.lua")
local requests, n, i

function init(args)
   local data = common.load(args)
   requests = {}
   for k, token in ipairs(data.tokens) do
      requests[k] = wrk.format("GET", "/api/v1/tasks", { Authorization = common.bearer(token) })
   end
   n = #requests
   i = math.random(n)
end

function request()
   i = i % n + 1
   return requests[i]
end

setup = common.setup
done = common.done
