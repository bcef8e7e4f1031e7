-- GET /api/v1/tasks?q=TERM: text search for a selective term in the big user's tasks.
local common = dofile("bench/wrk/common.lua")

-- One fixed request: wrk builds it once from wrk.path and wrk.headers.
function init(args)
   local data = common.load(args)
   wrk.path = "/api/v1/tasks?q=" .. data.search_query
   wrk.headers["Authorization"] = common.bearer(data.big_token)
end

setup = common.setup
done = common.done
