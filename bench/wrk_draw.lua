-- wrk script: POST /draw with a unique Idempotency-Key and user id per request.
-- Environment (optional): WRK_KEY_PREFIX (default "t"; give each wrk run against the same
-- store its own, e.g. two wrk processes at once), WRK_ACTIVITY (default "bench"),
-- WRK_ACTIVITIES=N > 1 to spread draws over WRK_ACTIVITY-0 .. WRK_ACTIVITY-(N-1).
local prefix = os.getenv("WRK_KEY_PREFIX") or "t"
local activity = os.getenv("WRK_ACTIVITY") or "bench"
local activities = tonumber(os.getenv("WRK_ACTIVITIES") or "1") or 1
local counter = 0
local thread_id = 0
setup = function(thread) thread:set("tid", thread_id); thread_id = thread_id + 1 end
request = function()
  counter = counter + 1
  local key = string.format("%s%d-%d", prefix, tid or 0, counter)
  local act = activity
  if activities > 1 then act = string.format("%s-%d", activity, counter % activities) end
  local body = string.format('{"activity_id":"%s","user_id":"u%s%d-%d"}', act, prefix, tid or 0, counter)
  return wrk.format("POST", "/draw", {["Content-Type"]="application/json", ["Idempotency-Key"]=key}, body)
end
