-- GET /api/v1/tasks (first page, default limit 20), rotating over the seeded users' tokens.
local common = dofile("bench/wrk/common.lua")
local next_request

function init(args)
   local data = common.load(args)
   local requests = {}
   for k, token in ipairs(data.tokens) do
      requests[k] = wrk.format("GET", "/api/v1/tasks", { Authorization = common.bearer(token) })
   end
   next_request = common.rotation(requests)
end

function request()
   return next_request()
end

setup = common.setup
done = common.done
