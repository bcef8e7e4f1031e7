-- POST /api/v2/tasks (no Idempotency-Key, no assignees or labels) in the projects where the
-- big member may create, in turn.
local common = dofile("bench/wrk/common.lua")
local next_request

function init(args)
   local data = common.load(args)
   local headers = {
      Authorization = common.bearer(data.team_token),
      ["Content-Type"] = "application/json",
   }
   local requests = {}
   for k, project_id in ipairs(data.team_projects) do
      local body = '{"project_id":' .. project_id .. ',"title":"Benchmark task",' ..
         '"description":"Created by make bench","priority":"high",' ..
         '"due_at":"2030-01-01T09:00:00Z"}'
      requests[k] = wrk.format("POST", "/api/v2/tasks", headers, body)
   end
   next_request = common.rotation(requests)
end

function request()
   return next_request()
end

setup = common.setup
done = common.done
