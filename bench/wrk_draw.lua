-- wrk script: POST /draw with a unique Idempotency-Key and user id per request.
local counter = 0
local thread_id = 0
setup = function(thread) thread:set("tid", thread_id); thread_id = thread_id + 1 end
request = function()
  counter = counter + 1
  local key = string.format("t%d-%d", tid or 0, counter)
  local body = string.format('{"activity_id":"bench","user_id":"u%d-%d"}', tid or 0, counter)
  return wrk.format("POST", "/draw", {["Content-Type"]="application/json", ["Idempotency-Key"]=key}, body)
end
