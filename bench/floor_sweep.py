"""The expiry sweep's floor: per due Alipay payment, the least payrelay's sweeper has to do.

One Lua call claims it (bench/floor_lua/claim.lua: its due entry moved to the end of a lease), the
same gateway calls payrelay makes (service/payments.py ``Payments.close``: ``alipay.trade.query``,
then ``alipay.trade.close`` of a trade still waiting; each a signed GET whose signed answer is
verified), one Lua call marks it closed and queues its notification (bench/floor_lua/mark.lua),
and the notification goes out as payrelay's does: one signed POST to the notify URL (the storage
app is told of every close), its paymentUrl signed again (``bench.floor.Alipay``). As many in
flight per process as payrelay's sweeper (``service.workers.Worker.concurrency``), on one aiohttp
session (keep-alive) and uvloop. Exits once a pass over every bucket finds nothing due and every
notification is sent, printing one JSON line: {"closed", "errors"}.

Run: ``python -m bench.floor_sweep`` with the emulators' ``PAYRELAY_*`` variables and
``FLOOR_REDIS_URL`` set.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
from typing import Any

import redis.asyncio as aioredis

from bench.floor import (
    LUA,
    Alipay,
    der_key,
    floor_delivery,
    floor_outbox,
    notify,
    rsa2_verify,
    send,
    session,
)
from service import keys
from service.expiry import LEASE_MS
from service.workers import Worker

CALLS = ("alipay.trade.query", "alipay.trade.close")


class FloorSweeper:
    def __init__(self, env: dict[str, str]) -> None:
        self.redis = aioredis.from_url(env["FLOOR_REDIS_URL"], decode_responses=True)
        self.claim = self.redis.register_script((LUA / "claim.lua").read_text())
        self.mark = self.redis.register_script((LUA / "mark.lua").read_text())
        self.alipay = Alipay(env)
        self.alipay_public = der_key(env["PAYRELAY_ALIPAY_PUBLIC_KEY"], private=False)
        self.notify_url = env["FLOOR_NOTIFY_URL"]
        self.notify_secret = env["FLOOR_NOTIFY_SECRET"]
        self.sending: set[asyncio.Task[None]] = set()
        self.closed = 0
        self.errors = 0

    async def call(self, http: Any, method: str, payment_id: str) -> dict[str, Any]:
        """One signed GET of the gateway; its answer once Alipay's signature over it verifies."""
        async with http.get(self.alipay.signed(method, {"out_trade_no": payment_id})) as answer:
            raw = await answer.text()
        key = '{"' + method.replace(".", "_") + '_response":'
        end = raw.rfind(',"sign":"')
        content = raw[len(key):end]
        rsa2_verify(self.alipay_public, content.encode(), raw[end + len(',"sign":"'):-2])
        return dict(json.loads(content))

    async def lane(self, http: Any, first_bucket: int) -> None:
        """Claims and closes until a whole pass over the buckets finds nothing due."""
        bucket, idle = first_bucket, 0
        while idle < keys.BUCKETS:
            now = int(time.time() * 1000)
            payment_id = await self.claim(keys=[keys.due(bucket)], args=[now, now + LEASE_MS])
            if not payment_id:
                bucket, idle = (bucket + 1) % keys.BUCKETS, idle + 1
                continue
            idle = 0
            try:
                if (await self.call(http, CALLS[0], payment_id)).get("trade_status") == "WAIT_BUYER_PAY":
                    await self.call(http, CALLS[1], payment_id)
            except Exception:  # a floor has no retries: counted, left to its lease
                self.errors += 1
                continue
            delivery_id = "dlv_" + secrets.token_hex(12)
            found = await self.mark(keys=[keys.payment(bucket, payment_id), keys.due(bucket), floor_outbox(bucket),
                                          floor_delivery(bucket, delivery_id)],
                                    args=[int(time.time() * 1000), payment_id, delivery_id])
            record = dict(zip(found[::2], found[1::2], strict=True))
            send(self.sending, notify(http, self.notify_url, self.notify_secret, delivery_id, "transaction.closed",
                                      self.alipay.shown(record)))
            self.closed += 1

    async def run(self) -> None:
        async with session() as http:
            lanes = Worker.concurrency
            await asyncio.gather(*(self.lane(http, i * keys.BUCKETS // lanes) for i in range(lanes)))
            while self.sending:
                await asyncio.wait(self.sending)
        await self.redis.aclose()


def main() -> None:
    sweeper = FloorSweeper(dict(os.environ))
    try:
        import uvloop
    except ImportError:
        asyncio.run(sweeper.run())
    else:
        uvloop.run(sweeper.run())
    print(json.dumps({"closed": sweeper.closed, "errors": sweeper.errors}), flush=True)


if __name__ == "__main__":
    main()
