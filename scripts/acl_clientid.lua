-- acl_clientid.lua: a client may publish and subscribe only under
-- devices/{client_id}/ (the prefix is settings.prefix).
--
--   [[plugin]]
--   name = "acl"
--   script = "scripts/acl_clientid.lua"
--   [plugin.settings]
--   prefix = "devices/"
--
-- Allowed requests get no answer (nil) rather than true, so that the
-- plugins after this one (a rate limit, a transform) still run; refused
-- ones are denied: MQTT 5 publishers get PUBACK 0x87, subscribers SUBACK
-- 0x87. Client ids containing / + or # are refused at CONNECT: "a/b" would
-- otherwise own part of client "a"'s tree.

local prefix = config.prefix or "devices/"

function on_connect(client)
  if client.id:find("[/+#]") then
    return false, "client ids may not contain / + or #"
  end
  return nil
end

-- The subtree of each client id seen by this VM, so that a decision costs a
-- table look-up instead of a string concatenation (the hooks run on every
-- PUBLISH). Bounded: started over after 10000 ids.
local subtree, count = {}, 0

local function owns(client, name)
  local own = subtree[client.id]
  if own == nil then
    if count >= 10000 then
      subtree, count = {}, 0
    end
    own = prefix .. client.id .. "/"
    subtree[client.id], count = own, count + 1
  end
  return name:sub(1, #own) == own
end

function on_subscribe(client, sub)
  -- $share/{group}/{filter}: the filter that matters is the inner one.
  local filter = sub.filter:match("^%$share/[^/]+/(.*)$") or sub.filter
  if owns(client, filter) then
    return nil
  end
  return false, "subscriptions are allowed only under " .. prefix .. client.id .. "/"
end

function on_publish(client, msg)
  if owns(client, msg.topic) then
    return nil
  end
  return false, "publishing is allowed only under " .. prefix .. client.id .. "/"
end
