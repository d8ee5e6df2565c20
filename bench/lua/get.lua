-- GET <prefix><line>, cycling over the lines of a file: payment ids after /api/transactions/, or
-- listing queries after /api/transactions? (a first page with its filters, or a page further on
-- by its next_page_token).
-- args: the file, API key, the prefix
local lines = {}
local i = 0
local headers
local prefix

function init(args)
  for line in io.lines(args[1]) do
    if #line > 0 then table.insert(lines, line) end
  end
  headers = {["Authorization"] = "Bearer " .. args[2]}
  prefix = args[3]
  i = tid - 1
end

function request()
  i = i + 1
  return wrk.format("GET", prefix .. lines[(i % #lines) + 1], headers)
end

done = report
