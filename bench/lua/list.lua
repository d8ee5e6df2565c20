-- GET /api/transactions?<query>, cycling over the queries in a file (one a line: a first page with
-- its filters, or a page further on by its next_page_token).
-- args: queries file, API key
local queries = {}
local i = 0
local headers

function init(args)
  for line in io.lines(args[1]) do
    if #line > 0 then table.insert(queries, line) end
  end
  headers = {["Authorization"] = "Bearer " .. args[2]}
  i = tid - 1
end

function request()
  i = i + 1
  return wrk.format("GET", "/api/transactions?" .. queries[(i % #queries) + 1], headers)
end

done = report
