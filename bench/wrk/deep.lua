-- GET /api/v1/tasks?cursor=... : the page that starts 100,000 tasks into the big user's list.
local common = dofile("bench/wrk/common.lua")

-- One fixed request: wrk builds it once from wrk.path and wrk.headers.
function init(args)
   local data = common.load(args)
   wrk.path = "/api/v1/tasks?cursor=" .. data.deep_cursor
   wrk.headers["Authorization"] = common.bearer(data.big_token)
end

setup = common.setup
done = common.done
