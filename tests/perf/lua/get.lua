-- GET the paths listed in $PATHS_FILE (one a line) round-robin, with a bearer token when $TOKEN is set.
dofile(os.getenv("REPORT_LUA"))

local token = os.getenv("TOKEN") or ""
local paths = {}
for line in io.lines(os.getenv("PATHS_FILE")) do
  if line ~= "" then table.insert(paths, line) end
end
local headers = token ~= "" and { ["Authorization"] = "Bearer " .. token } or {}
local next_path = 0

function request()
  next_path = next_path % #paths + 1
  return wrk.format("GET", paths[next_path], headers)
end

function response(status, headers, body)
  count_status(status)
end
