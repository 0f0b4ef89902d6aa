-- auth_postgres.lua: authenticate clients against a PostgreSQL table.
--
--   [[plugin]]
--   name = "pg-users"
--   script = "scripts/auth_postgres.lua"
--   timeout = "1s"
--   cache_ttl = "1m"
--   [plugin.settings]
--   dsn = "postgres://tide@db.example.com/mqtt?sslmode=require"
--
-- The table (the query can be changed with settings.query; it takes the
-- user name as $1 and returns password_hash and, optionally, attrs):
--
--   CREATE TABLE mqtt_users (
--     username      text PRIMARY KEY,
--     password_hash text NOT NULL,          -- bcrypt
--     attrs         jsonb,                  -- becomes client.attrs
--     enabled       boolean NOT NULL DEFAULT true
--   );
--
-- A database that cannot be reached is an error: the plugin's fail policy
-- decides, and the broker counts and logs it.

local sql = require("sql")
local crypto = require("crypto")

local query = config.query or
  "SELECT password_hash, attrs FROM mqtt_users WHERE username = $1 AND enabled"
local db

function init()
  if type(config.dsn) ~= "string" or config.dsn == "" then
    error("settings.dsn is required: the PostgreSQL connection string")
  end
  -- open does not connect: every VM of this plugin shares one pool, which
  -- connects on first use.
  db = assert(sql.open(config.dsn, {max_conns = config.max_conns}))
end

function on_connect(client)
  if client.username == "" then
    return nil
  end
  -- The user name is a bound parameter ($1), never part of the SQL text.
  local rows, err = db:query(query, client.username)
  if not rows then
    error("user lookup failed: " .. err)
  end
  local row = rows[1]
  if not row or not client.password or not crypto.bcrypt_verify(row.password_hash, client.password) then
    return false, "bad user name or password"
  end
  if type(row.attrs) == "table" then
    return {allow = true, attrs = row.attrs}
  end
  return true
end
