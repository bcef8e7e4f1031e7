-- GET /api/v2/tasks?cursor=... : the page that starts 100,000 tasks into the big member's list
-- across the team's projects.
local common = dofile("bench/wrk/common.lua")

-- One fixed request: wrk builds it once from wrk.path and wrk.headers.
function init(args)
   local data = common.load(args)
   wrk.path = "/api/v2/tasks?cursor=" .. data.team_deep_cursor
   wrk.headers["Authorization"] = common.bearer(data.team_token)
end

setup = common.setup
done = common.done
