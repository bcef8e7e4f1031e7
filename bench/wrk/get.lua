-- GET /api/v1/tasks/{id}: a random live task of a random seeded user, with that user's token.
local common = dofile("bench/wrk/common.lua")
local data, auth, n

function init(args)
   data = common.load(args)
   auth = {}
   for k, token in ipairs(data.tokens) do
      auth[k] = { Authorization = common.bearer(token) }
   end
   n = #auth
end

function request()
   local u = math.random(n)
   local ids = data.ids[u]
   return wrk.format("GET", "/api/v1/tasks/" .. ids[math.random(#ids)], auth[u])
end

setup = common.setup
done = common.done
