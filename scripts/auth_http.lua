-- auth_http.lua: ask an identity service whether a client may connect.
--
--   [[plugin]]
--   name = "idp"
--   script = "scripts/auth_http.lua"
--   timeout = "3s"           # covers every attempt: beyond it, `fail` decides
--   fail = "closed"          # service down: refuse (or "open": let clients in)
--   cache_ttl = "1m"
--   [plugin.settings]
--   url = "https://id.example.com/mqtt/auth"
--   attempt_timeout = 1      # seconds per HTTP attempt
--   retries = 2              # more attempts after a 5xx or a network error
--   token = "..."            # optional: sent as "Authorization: Bearer <token>"
--
-- The service receives a POST with a JSON body
--   {"client_id": "...", "username": "...", "password": "..." or null,
--    "remote_addr": "...", "listener": "...", "protocol": 5}
-- and answers:
--   200 (optionally {"attrs": {...}, "username": "..."}): allowed; attrs are
--       attached to the client (client.attrs in the other hooks) and
--       username replaces the one the client sent;
--   401 or 403: refused;
--   anything else, or no answer: tried again, then the plugin's fail policy.

local http = require("http")
local json = require("json")

local headers = {["Content-Type"] = "application/json"}

function init()
  if type(config.url) ~= "string" or config.url == "" then
    error("settings.url is required: the identity service's URL")
  end
  if config.token then
    headers["Authorization"] = "Bearer " .. config.token
  end
end

function on_connect(client)
  local body = json.encode({
    client_id = client.id,
    username = client.username,
    password = client.password or json.null,
    remote_addr = client.remote_addr,
    listener = client.listener,
    protocol = client.protocol,
  })
  local attempts = 1 + (config.retries or 2)
  local last
  for _ = 1, attempts do
    local resp, err = http.post(config.url, body, {headers = headers, timeout = config.attempt_timeout or 1})
    if resp and resp.status == 200 then
      local answer = json.decode(resp.body)
      local result = {allow = true}
      if type(answer) == "table" then
        if type(answer.attrs) == "table" then
          result.attrs = answer.attrs
        end
        if type(answer.username) == "string" then
          result.username = answer.username
        end
      end
      return result
    elseif resp and (resp.status == 401 or resp.status == 403) then
      return false, "refused by the identity service"
    end
    last = resp and ("status " .. resp.status) or err
  end
  -- An error (not a refusal) applies the plugin's fail policy, and is
  -- counted and logged by the broker.
  error("identity service unavailable after " .. attempts .. " attempts: " .. tostring(last))
end
