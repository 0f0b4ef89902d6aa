-- transform.lua: move a legacy topic prefix to a new one, and stamp JSON
-- object payloads with the time the broker received them.
--
--   [[plugin]]
--   name = "transform"
--   script = "scripts/transform.lua"
--   [plugin.settings]
--   from = "legacy/"            # topics starting with this...
--   to = "v2/"                  # ...are republished under this instead
--   timestamp_field = "received_at"   # milliseconds since 1970; "" turns it off
--
-- A payload that is not a JSON object, or that already has the field, is
-- left as it is. A rewrite is an answer: plugins configured after this one
-- do not see the message, so put access control and rate limits before it.

local json = require("json")

local from = config.from or "legacy/"
local to = config.to or "v2/"
local field = config.timestamp_field
if field == nil then
  field = "received_at"
end

function on_publish(client, msg)
  local topic, payload = msg.topic, msg.payload
  local changed = false
  if from ~= "" and topic:sub(1, #from) == from then
    topic = to .. topic:sub(#from + 1)
    changed = true
  end
  -- A cheap look at the first character spares decoding what is no object.
  if field ~= "" and payload:find("^%s*{") then
    local doc = json.decode(payload)
    if type(doc) == "table" and doc[field] == nil then
      doc[field] = math.floor(msg.time * 1000)
      payload = json.encode(doc)
      changed = true
    end
  end
  if changed then
    return {topic = topic, payload = payload}
  end
  return nil
end
