-- GET /api/v2/tasks?assignee=me (first page): the tasks of the team's projects assigned to the
-- big member.
local common = dofile("bench/wrk/common.lua")

-- One fixed request: wrk builds it once from wrk.path and wrk.headers.
function init(args)
   local data = common.load(args)
   wrk.path = "/api/v2/tasks?assignee=me"
   wrk.headers["Authorization"] = common.bearer(data.team_token)
end

setup = common.setup
done = common.done
