-- Shared by room_temperature.lua and room_temperature_sql.lua: given each
-- room's 5- and 10-minute average temperature, fire or resolve the alert
-- "high-temperature-{room}".
--
-- A room's alert fires when both averages are above config.threshold (the
-- heat has lasted, it is not one warm reading) and the 5-minute window holds
-- at least config.min_samples readings. It is resolved when the 5-minute
-- average is back below config.clear_below (default: the threshold), or when
-- the room has sent nothing for 10 minutes (a dead sensor should not leave
-- an alert firing forever).
local alert = require("alert")

local M = {}

M.prefix = "high-temperature-"

-- room returns the {room} of "home/{room}/temperature" (or the topic).
function M.room(topic)
  return topic:match("^home/([^/]+)/temperature$") or topic
end

-- judge takes readings = {[room] = {avg_5m = n, avg_10m = n, count_5m = n, topic = "..."}}.
function M.judge(readings)
  local threshold = tonumber(config.threshold) or 28
  local clear_below = tonumber(config.clear_below) or threshold
  local min_samples = tonumber(config.min_samples) or 3
  local fired, resolved = 0, 0
  for room, r in pairs(readings) do
    local name = M.prefix .. room
    if r.avg_5m and r.avg_10m and r.count_5m >= min_samples and r.avg_5m > threshold and r.avg_10m > threshold then
      local notified = alert.fire{
        name = name,
        severity = config.severity or "warning",
        message = string.format("%s: %.1f °C over 5 minutes, %.1f °C over 10 minutes (threshold %.1f °C)",
          room, r.avg_5m, r.avg_10m, threshold),
        labels = {room = room, topic = r.topic, avg_5m = string.format("%.1f", r.avg_5m),
          avg_10m = string.format("%.1f", r.avg_10m)},
        ["repeat"] = config["repeat"],
      }
      if notified then fired = fired + 1 end
    elseif r.avg_5m and r.avg_5m < clear_below then
      if alert.resolve(name, string.format("%s: back to %.1f °C over 5 minutes", room, r.avg_5m)) then
        resolved = resolved + 1
      end
    end
  end
  -- Rooms whose alert fires but that sent nothing for 10 minutes.
  for _, a in ipairs(alert.list()) do
    local room = a.name:sub(#M.prefix + 1)
    if a.name:sub(1, #M.prefix) == M.prefix and readings[room] == nil then
      alert.resolve(a.name, room .. ": no reading for 10 minutes")
      resolved = resolved + 1
    end
  end
  return fired, resolved
end

return M
