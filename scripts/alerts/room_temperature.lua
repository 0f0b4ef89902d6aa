-- Room temperature alert, from the broker's live windows (no database).
--
-- Sensors publish their temperature in °C on home/{room}/temperature, the
-- payload being the number itself ("21.5"). For JSON payloads such as
-- {"temp": 21.5}, set value = "temp" in the [[aggregate]]: this script does
-- not change. It needs an aggregate with 5m and 10m windows over the topics:
--
--   [[aggregate]]
--   name = "temperature"
--   topics = ["home/+/temperature"]
--   windows = ["1m", "5m", "10m"]
--
--   [[job]]
--   name = "room-temperature"
--   script = "scripts/alerts/room_temperature.lua"
--   every = "1m"
--   [job.settings]
--   threshold = 30.0      # °C; fires above it (both averages)
--   clear_below = 29.0    # °C; resolves below it (default: threshold)
--   min_samples = 3       # readings needed in 5 minutes to judge a room
--   repeat = "30m"        # re-notify while firing (default: once)
--   topics = "home/+/temperature"
--
-- Alerts are published on tide/alerts/high-temperature-{room} and POSTed to
-- the [[alert.webhook]]s.
local window = require("window")
local log = require("log")
local rooms = require("room_alerts")

local filter = config.topics or "home/+/temperature"

function run(ctx)
  local short = window.stats(filter, "5m", {aggregate = config.aggregate})
  local long = window.stats(filter, "10m", {aggregate = config.aggregate})
  local readings, n = {}, 0
  for topic, s10 in pairs(long) do
    n = n + 1
    local s5 = short[topic]
    readings[rooms.room(topic)] = {
      topic = topic,
      avg_5m = s5 and s5.avg,
      count_5m = s5 and s5.count or 0,
      avg_10m = s10.avg,
    }
  end
  local fired, resolved = rooms.judge(readings)
  log.debug("rooms checked", {rooms = n, fired = fired, resolved = resolved})
end
