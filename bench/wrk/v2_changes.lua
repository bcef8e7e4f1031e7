-- GET /api/v2/changes?limit=1000&cursor=... : the big member's change feed, a page of events
-- (1,000 by default) from a cursor deep in the log, each event with its task as it is now.
local common = dofile("bench/wrk/common.lua")

-- One fixed request: wrk builds it once from wrk.path and wrk.headers.
function init(args)
   local data = common.load(args)
   wrk.path = "/api/v2/changes?limit=" .. data.feed_limit .. "&cursor=" .. data.team_feed_cursor
   wrk.headers["Authorization"] = common.bearer(data.team_token)
end

setup = common.setup
done = common.done
