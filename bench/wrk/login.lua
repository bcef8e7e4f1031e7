-- POST /api/v1/auth/token (OAuth2 password grant, form-encoded), rotating over seeded users.
local common = dofile("bench/wrk/common.lua")
local requests, n, i

function init(args)
   local data = common.load(args)
   requests = {}
   for k, form in ipairs(data.login_forms) do
      requests[k] = wrk.format("POST", "/api/v1/auth/token",
         { ["Content-Type"] = "application/x-www-form-urlencoded" }, form)
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
