-- GET /api/v2/tasks/{id}: a random live task of the team's projects, with the big member's
-- token.
local common = dofile("bench/wrk/common.lua")
local ids, auth

function init(args)
   local data = common.load(args)
   ids = data.team_ids
   auth = { Authorization = common.bearer(data.team_token) }
end

function request()
   return wrk.format("GET", "/api/v2/tasks/" .. ids[math.random(#ids)], auth)
end

setup = common.setup
done = common.done
