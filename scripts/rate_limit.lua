-- rate_limit.lua: at most settings.max publishes per client per second.
--
--   [[plugin]]
--   name = "rate"
--   script = "scripts/rate_limit.lua"
--   fail = "open"          # if the counter store is full, let messages through
--   [plugin.settings]
--   max = 10               # per client and second
--   action = "deny"        # "deny" (MQTT 5 publishers get PUBACK 0x87) or "drop" (silently)
--
-- Each client has a counter in the shared kv store that expires one second
-- after its first publish (a fixed window: a burst straddling two windows
-- may pass 2 x max in a second). The counters are shared by every VM, so the
-- limit holds whatever the pool size.

local kv = require("kv")

local max = config.max or 10
local action = config.action or "deny"
if action ~= "deny" and action ~= "drop" then
  error("settings.action must be \"deny\" or \"drop\", not " .. tostring(action))
end

-- on_publish takes only the client: the runtime then does not build the
-- message table at all.
function on_publish(client)
  local n = assert(kv.incr("rate_limit:" .. client.id, 1, 1))
  if n > max then
    if action == "drop" then
      return "drop"
    end
    return false, "rate limit: at most " .. max .. " messages per second"
  end
  return nil
end
