-- GET /api/transactions/{id}, cycling over the ids in a file (one a line).
-- args: ids file, API key
local ids = {}
local i = 0
local headers

function init(args)
  for line in io.lines(args[1]) do
    if #line > 0 then table.insert(ids, line) end
  end
  headers = {["Authorization"] = "Bearer " .. args[2]}
  i = tid - 1
end

function request()
  i = i + 1
  return wrk.format("GET", "/api/transactions/" .. ids[(i % #ids) + 1], headers)
end

done = report
