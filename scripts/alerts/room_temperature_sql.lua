-- Room temperature alert, from the history stored in PostgreSQL.
--
-- The same rule as room_temperature.lua (see room_alerts.lua), with the
-- averages computed by PostgreSQL from a [[sink]] of type "postgres" that
-- the topics are routed to. It reads the sink's default table,
-- mqtt_messages; payloads may be a number ("21.5") or JSON with a temp
-- field ({"temp": 21.5}).
--
--   [[sink]]
--   name = "archive"
--   type = "postgres"
--   dsn = "postgres://tide:change-me@localhost:5432/tide"
--
--   [[route]]
--   topics = ["home/+/temperature"]
--   sinks = ["archive"]
--
--   [[job]]
--   name = "room-temperature-sql"
--   script = "scripts/alerts/room_temperature_sql.lua"
--   cron = "* * * * *"
--   [job.settings]
--   sink = "archive"
--   threshold = 30.0
--
-- The query binds its parameters ($1, $2, $3): never build SQL text from
-- message data. The window ends at the run's due time (ctx.scheduled).
local store = require("store")
local rooms = require("room_alerts")

local QUERY = [[
SELECT topic,
       avg(v) FILTER (WHERE time > to_timestamp($2)) AS avg_5m,
       count(*) FILTER (WHERE time > to_timestamp($2)) AS count_5m,
       avg(v) AS avg_10m
FROM (SELECT topic, time, (COALESCE(payload_json -> 'temp', payload_json))::float8 AS v
      FROM mqtt_messages
      WHERE topic LIKE $3
        AND time > to_timestamp($1)
        AND jsonb_typeof(COALESCE(payload_json -> 'temp', payload_json)) = 'number') AS readings
GROUP BY topic]]

function run(ctx)
  local now = ctx.scheduled
  local rows = assert(store.query(config.sink or "archive", QUERY, now - 600, now - 300, config.topics_like or "home/%/temperature"))
  local readings = {}
  for _, r in ipairs(rows) do
    readings[rooms.room(r.topic)] = {topic = r.topic, avg_5m = r.avg_5m, count_5m = r.count_5m, avg_10m = r.avg_10m}
  end
  rooms.judge(readings)
end
