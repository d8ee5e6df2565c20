-- POST /api/transactions with a unique transactionId per request.
-- args: run prefix, gateway type, API key, amount, currency
local counter = 0
local prefix, body_head, body_tail, headers

function init(args)
  prefix = args[1] .. "-" .. tid .. "-"
  local gateway, key, amount, currency = args[2], args[3], args[4], args[5]
  headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. key}
  body_head = '{"transactionId":"'
  body_tail = '","amount":"' .. amount .. '","currency":"' .. currency .. '","date":"2026-11-21",' ..
    '"paymentGatewayType":"' .. gateway .. '","completePayRedirectUrl":"https://shop.example/done",' ..
    '"cancelPayRedirectUrl":"https://shop.example/cancel","onlineScenario":true,' ..
    '"customerIdentifier":"buyer@example.com","description":"10 GB storage pack"}'
end

function request()
  counter = counter + 1
  wrk.thread:set("sent", counter)
  return wrk.format("POST", "/api/transactions", headers, body_head .. prefix .. counter .. body_tail)
end

done = report
