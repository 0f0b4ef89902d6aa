-- auth_challenge.lua: MQTT 5 enhanced authentication by challenge and
-- response, so that no password crosses the wire.
--
--   [[plugin]]
--   name = "challenge"
--   script = "scripts/auth_challenge.lua"
--   [plugin.settings]
--   method = "TIDE-HMAC-SHA256"          # the authentication method clients name
--   [plugin.settings.secrets]            # user name = shared secret
--   sensor-17 = "a long random secret"
--
-- The exchange (MQTT 5 section 4.12):
--   client  CONNECT  authentication method TIDE-HMAC-SHA256, data = its user name
--   broker  AUTH     0x18, data = a fresh random nonce (hex)
--   client  AUTH     0x18, data = hex(HMAC-SHA256(secret, nonce))
--   broker  CONNACK  0x00 (the user name is the client's from then on), or
--           CONNACK  0x86 bad user name or password
-- A connected client may re-authenticate (AUTH 0x19 with the same method):
-- the same exchange, ending in AUTH 0x00 or DISCONNECT 0x86.
-- Clients that name no method are not this script's: on_connect, the
-- built-in users and allow_anonymous decide for them as usual.

local crypto = require("crypto")

local METHOD = config.method or "TIDE-HMAC-SHA256"
local secrets = config.secrets or {}

-- A user name nobody has still gets a challenge, and is refused only with
-- its answer: the exchange does not reveal which user names exist.
local decoy = crypto.hex_encode(crypto.random(32))

function on_auth(client, auth)
  if auth.method ~= METHOD then
    return nil -- another plugin's method, or none's (0x8C)
  end
  if auth.step == 1 then
    local user = auth.data or ""
    local nonce = crypto.hex_encode(crypto.random(16))
    return {continue = true, data = nonce, state = {user = user, nonce = nonce}}
  end
  local st = auth.state
  local secret = secrets[st.user]
  local want = crypto.hmac_sha256(secret or decoy, st.nonce)
  if secret and auth.step == 2 and crypto.constant_time_eq(auth.data or "", want) then
    return {allow = true, username = st.user, attrs = {auth_method = METHOD}}
  end
  return {allow = false, code = 0x86, reason = "bad user name or password"}
end
