-- Replay pre-built raw HTTP requests (webhooks), each once: a file of "<length>\n<raw request>".
-- args: file, first index (1-based), thread count. Thread t sends entries first+t-1, first+t-1+T, …
-- Past the end it starts over (counted in "wrapped": those are duplicates, flagged by the harness).
local reqs = {}
local i, step, sent, wrapped

function init(args)
  local f = assert(io.open(args[1], "rb"))
  local data = f:read("*a")
  f:close()
  local pos = 1
  while pos <= #data do
    local nl = string.find(data, "\n", pos, true)
    local len = tonumber(string.sub(data, pos, nl - 1))
    table.insert(reqs, string.sub(data, nl + 1, nl + len))
    pos = nl + 1 + len
  end
  step = tonumber(args[3])
  i = tonumber(args[2]) + tid - 1 - step
  sent, wrapped = 0, 0
end

function request()
  i = i + step
  if i > #reqs then
    i = ((i - 1) % #reqs) + 1
    wrapped = wrapped + 1
    wrk.thread:set("wrapped", wrapped)
  end
  sent = sent + 1
  wrk.thread:set("sent", sent)
  return reqs[i]
end

done = report
