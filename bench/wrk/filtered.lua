-- GET /api/v1/tasks?status=...&priority=... on the big user's tasks (first page).
local common = dofile("bench/wrk/common.lua")

-- One fixed request: wrk builds it once from wrk.path and wrk.headers.
function init(args)
   local data = common.load(args)
   wrk.path = "/api/v1/tasks?" .. data.filter_query
   wrk.headers["Authorization"] = common.bearer(data.big_token)
end

setup = common.setup
done = common.done
