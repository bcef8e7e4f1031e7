-- GET /api/v2/tasks?limit=100 (first page, 100 tasks): the big member's tasks across the
-- team's projects; the page the change feed's 1,000 events are measured against.
local common = dofile("bench/wrk/common.lua")

-- One fixed request: wrk builds it once from wrk.path and wrk.headers.
function init(args)
   local data = common.load(args)
   wrk.path = "/api/v2/tasks?limit=100"
   wrk.headers["Authorization"] = common.bearer(data.team_token)
end

setup = common.setup
done = common.done
