-- PATCH /api/v2/tasks/{id} with If-Match, always the task's current tag: the big member's
-- tasks in projects where they may edit.
--
-- As patch.lua: each thread patches its own slice of the tasks round-robin, so a task is
-- patched again only after every other task of the slice, and the tag of each answer
-- replaces the one sent; a 412 would show as non-2xx.
local common = dofile("bench/wrk/common.lua")
local mine, tags, auth, n, i
local body = '{"title":"Benchmark patch","priority":"urgent"}'

function init(args)
   local data = common.load(args)
   auth = common.bearer(data.team_token)
   mine, tags = {}, {}
   for k, task in ipairs(data.team_patch) do
      -- task = { task id, version }
      if (k - 1) % data.threads == (thread_number or 1) - 1 then
         mine[#mine + 1] = task[1]
         tags[task[1]] = '"' .. task[2] .. '"'
      end
   end
   n = #mine
   i = 0
end

function request()
   i = i % n + 1
   local id = mine[i]
   return wrk.format("PATCH", "/api/v2/tasks/" .. id, {
      Authorization = auth,
      ["Content-Type"] = "application/json",
      ["If-Match"] = tags[id],
   }, body)
end

function response(status, headers, body)
   if status == 200 then
      local id = tonumber(string.match(body, '^{"id":(%d+)'))
      local tag = headers["etag"] or headers["ETag"]
      if id ~= nil and tag ~= nil and tags[id] ~= nil then
         tags[id] = tag
      end
   end
end

setup = common.setup
done = common.done
