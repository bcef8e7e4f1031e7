-- POST /api/v1/auth/token (OAuth2 password grant, form-encoded), rotating over seeded users.
local common = dofile("bench/wrk/common.lua")
local next_request

function init(args)
   local data = common.load(args)
   local requests = {}
   for k, form in ipairs(data.login_forms) do
      requests[k] = wrk.format("POST", "/api/v1/auth/token",
         { ["Content-Type"] = "application/x-www-form-urlencoded" }, form)
   end
   next_request = common.rotation(requests)
end

function request()
   return next_request()
end

setup = common.setup
done = common.done
