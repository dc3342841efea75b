-- POST the JSON body in $BODY_FILE with a bearer token and a fresh Idempotency-Key per request ($KEY_PREFIX and a
-- counter), so each request is a new referral.
dofile(os.getenv("REPORT_LUA"))

local token = os.getenv("TOKEN") or ""
local f = assert(io.open(os.getenv("BODY_FILE"), "r"))
local body = f:read("*a")
f:close()
local prefix = assert(os.getenv("KEY_PREFIX"), "KEY_PREFIX: one per run, or the keys would repeat")
local sent = 0

function request()
  sent = sent + 1
  return wrk.format("POST", nil, {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. token,
    ["Idempotency-Key"] = prefix .. "-" .. sent,
  }, body)
end

function response(status, headers, body)
  count_status(status)
end
