-- auth_users.lua: authenticate clients against a file of bcrypt hashes.
--
--   [[plugin]]
--   name = "users"
--   script = "scripts/auth_users.lua"
--   timeout = "1s"          # bcrypt is slow on purpose: leave it room
--   cache_ttl = "5m"        # and do not pay it on every reconnect
--   [plugin.settings]
--   users_file = "users.txt"   # in this script's folder: lines "user:$2a$10$..."
--
-- Blank lines and lines starting with # are ignored. Make a hash with
-- `htpasswd -nbBC 10 user password` (Apache) or any bcrypt tool.
-- Clients without a user name get no answer here: the listener's
-- allow_anonymous decides. The file is read when the plugin loads: reload
-- the broker (SIGHUP) after editing it.

local crypto = require("crypto")
local log = require("log")

local users = {}
-- Checking an unknown user against a real hash keeps the time of a refusal
-- the same for unknown users and wrong passwords: the answer's timing does
-- not reveal which user names exist.
local any_hash

function init()
  local path = config.users_file or "users.txt"
  local text, err = readfile(path)
  if not text then
    error("cannot read users_file: " .. err)
  end
  local n = 0
  local lineno = 0
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    lineno = lineno + 1
    line = line:match("^%s*(.-)%s*$")
    if line ~= "" and line:sub(1, 1) ~= "#" then
      local user, hash = line:match("^([^:]+):(%$2[aby]?%$.+)$")
      if not user then
        error(path .. ":" .. lineno .. ": want user:bcrypt-hash")
      end
      users[user] = hash
      any_hash = any_hash or hash
      n = n + 1
    end
  end
  log.info("users loaded", {file = path, users = n})
end

-- 0x86 is MQTT 5's "bad user name or password"; MQTT 3.1.1 clients get
-- its equivalent, CONNACK return code 4.
local refused = {allow = false, code = 0x86, reason = "bad user name or password"}

function on_connect(client)
  if client.username == "" then
    return nil
  end
  local hash = users[client.username]
  local password = client.password or ""
  if not hash then
    if any_hash then
      crypto.bcrypt_verify(any_hash, password)
    end
    return refused
  end
  if client.password and crypto.bcrypt_verify(hash, password) then
    return true
  end
  return refused
end
