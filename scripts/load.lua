-- wrk script for scripts/load.sh. Every request comes from a random one of
-- the seeded users, with that user's token. Environment:
--   LOAD_SCENARIO  list | get | create | update | mixed | scoped | auth401 | health
--   LOAD_TOKENS    file with one token per line, line N for user "N"
--   LOAD_PER_USER  seeded tasks per user (user u owns ids (u-1)*P+1 .. u*P)
--   LOAD_LIST      the list path (default /api/tasks)
local scenario = os.getenv("LOAD_SCENARIO")
local perUser = tonumber(os.getenv("LOAD_PER_USER"))
local tokens = {}
for line in io.lines(os.getenv("LOAD_TOKENS")) do
  tokens[#tokens + 1] = "Bearer " .. line
end
local users = #tokens
local body = '{"title":"load","description":"load","completed":true}'
local forged = "Bearer " .. tokens[1]:sub(8, -5) .. "AAAA"

local created = {}   -- ids this thread created, for mixed's deletes

function setup(thread)
  thread:set("seed", math.random(1, 1000000))
end

local function pick()
  local u = math.random(users)
  return u, tokens[u]
end

local function seededID(u)
  return (u - 1) * perUser + math.random(perUser)
end

local listPath = os.getenv("LOAD_LIST") or "/api/tasks"

local function list(u, auth)
  return wrk.format("GET", listPath, { Authorization = auth })
end

local function get(u, auth)
  return wrk.format("GET", "/api/tasks/" .. seededID(u), { Authorization = auth })
end

local function create(u, auth)
  return wrk.format("POST", "/api/tasks", { Authorization = auth, ["Content-Type"] = "application/json" }, body)
end

local function update(u, auth)
  return wrk.format("PUT", "/api/tasks/" .. seededID(u), { Authorization = auth, ["Content-Type"] = "application/json" }, body)
end

local function complete(u, auth)
  return wrk.format("PATCH", "/api/tasks/" .. seededID(u) .. "/complete",
    { Authorization = auth, ["Content-Type"] = "application/json" }, '{"completed":true}')
end

-- toggle: PATCH with no body flips completed (path-scoped, as the hackathon
-- frontends call it; user u's id is "u").
local function toggle(u, auth)
  return wrk.format("PATCH", "/api/" .. u .. "/tasks/" .. seededID(u) .. "/complete", { Authorization = auth })
end

-- listByTitle: the path-scoped list in title order.
local function listByTitle(u, auth)
  return wrk.format("GET", "/api/" .. u .. "/tasks?sort=title", { Authorization = auth })
end

-- A delete takes a task this thread created, and its owner's token; with
-- none yet, it is a read instead.
local function delete()
  local n = #created
  if n == 0 then
    local u, auth = pick()
    return get(u, auth)
  end
  local entry = table.remove(created, math.random(n))
  return wrk.format("DELETE", "/api/tasks/" .. entry.id, { Authorization = entry.auth })
end

-- mixed: 70% reads (list 20, get 50), 20% writes (create 10, update 5,
-- complete 5), 10% deletes, all in the common contract (a PEER serves it
-- too); scripts/pgbench weighs its scripts the same.
local function mixed()
  local r = math.random(100)
  local u, auth = pick()
  if r <= 20 then return list(u, auth)
  elseif r <= 70 then return get(u, auth)
  elseif r <= 80 then return create(u, auth)
  elseif r <= 85 then return update(u, auth)
  elseif r <= 90 then return complete(u, auth)
  else return delete() end
end

-- scoped: the hackathon frontends' shape, this server only: 40% lists by
-- title and 40% gets at /api/{user_id}/tasks, 20% empty-body toggles.
local function scoped(u, auth)
  local r = math.random(100)
  if r <= 40 then return listByTitle(u, auth)
  elseif r <= 80 then
    return wrk.format("GET", "/api/" .. u .. "/tasks/" .. seededID(u), { Authorization = auth })
  else return toggle(u, auth) end
end

-- health: no token, no database; what net/http, the middleware and wrk
-- cost on their own, the floor under every other scenario.
local function health()
  return wrk.format("GET", "/healthz")
end

local builders = { list = list, get = get, create = create, update = update, health = health, scoped = scoped }

-- Requests are drawn in init, a random user each, and replayed in turn:
-- building one with wrk.format per request costs wrk (which shares the
-- machine with the server and PostgreSQL) more CPU than the server spends.
local pool, nextRequest = {}, 0
local poolSize = 20000

function init(args)
  math.randomseed(seed or os.time())
  if scenario == "mixed" then return end
  for i = 1, poolSize do
    if scenario == "auth401" then
      pool[i] = wrk.format("GET", "/api/tasks", { Authorization = forged })
    else
      local u, auth = pick()
      pool[i] = builders[scenario](u, auth)
    end
  end
end

request = function()
  if scenario == "mixed" then return mixed() end
  nextRequest = nextRequest % poolSize + 1
  return pool[nextRequest]
end

if scenario == "mixed" then
  -- Responses come back across connections in any order, so a created
  -- task's owner is read from its body (users are named "1", "2", ...).
  response = function(status, headers, body)
    if status == 201 then
      local id = (headers["Location"] or ""):match("(%d+)$")
      local owner = tonumber(body:match('"user_id":"(%d+)"'))
      if id and owner and tokens[owner] then
        created[#created + 1] = { id = id, auth = tokens[owner] }
      end
    end
  end
end

done = function(summary, latency, _)
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests":%d,"duration_us":%d,"non2xx":%d,"socket_errors":%d,"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
