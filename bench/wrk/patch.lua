-- PATCH /api/v1/tasks/{id} with If-Match, always the task's current tag.
--
-- Each thread patches its own slice of the tasks (disjoint by thread number), round-robin,
-- so a task is patched again only after every other task of the slice: with slices of
-- hundreds of tasks and 64 / THREADS requests in flight per thread, never while its previous
-- patch is still in flight. The tag of each answer (ETag header, task id from the body)
-- replaces the one sent, so no request carries a stale tag; a 412 would show as non-2xx.
local common = dofile("bench/wrk/common.lua")
local mine, tags, auth, n, i
local body = '{"title":"Benchmark patch","priority":"urgent"}'

function init(args)
   local data = common.load(args)
   local headers = {}
   for k, token in ipairs(data.tokens) do
      headers[k] = common.bearer(token)
   end
   mine, tags, auth = {}, {}, {}
   for k, task in ipairs(data.patch) do
      -- task = { user index, task id, version }
      if (k - 1) % data.threads == (thread_number or 1) - 1 then
         mine[#mine + 1] = task[2]
         tags[task[2]] = '"' .. task[3] .. '"'
         auth[task[2]] = headers[task[1]]
      end
   end
   n = #mine
   i = 0
end

function request()
   i = i % n + 1
   local id = mine[i]
   return wrk.format("PATCH", "/api/v1/tasks/" .. id, {
      Authorization = auth[id],
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
