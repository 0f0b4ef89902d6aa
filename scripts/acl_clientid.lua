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

local function owns(client, name)
  local own = prefix .. client.id .. "/"
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
