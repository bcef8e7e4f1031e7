-- GET /api/v2/tasks (first page, default limit 20): the big member's tasks across the team's
-- projects.
local common = dofile("bench/wrk/common.lua")

-- One fixed request: wrk builds it once from wrk.path and wrk.headers.
function init(args)
   local data = common.load(args)
   wrk.path = "/api/v2/tasks"
   wrk.headers["Authorization"] = common.bearer(data.team_token)
end

setup = common.setup
done = common.done
