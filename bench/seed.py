"""Fast seeding: many payments cloned from one real one, straight into Redis (bench/lua/seed_clone.lua),
plus their gateway-side objects in the emulators (bench/gateways.py /seed)."""

from __future__ import annotations

import secrets
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import redis

from service import keys

CHUNK = 2000
SCRIPT = (Path(__file__).resolve().parent / "lua" / "seed_clone.lua").read_text()


def new_ids(client: str, prefix: str, count: int, start: int = 0) -> Iterator[tuple[str, str, int]]:
    """(paymentId, transactionId, bucket) as payrelay would make them."""
    for i in range(start, start + count):
        txid = f"{prefix}-{i}"
        bucket = zlib.crc32(f"{client}\n{txid}".encode()) % keys.BUCKETS
        yield f"pr_{bucket:02x}{secrets.token_hex(12)}", txid, bucket


class Seeder:
    def __init__(self, client: redis.Redis, template: dict[str, str]) -> None:
        self.redis = client
        self.template = template
        self.clone = client.register_script(SCRIPT)

    def seed(self, count: int, *, prefix: str, expires_ms: int, due: bool = True,
             refs: list[str] | None = None, overrides: dict[str, str] | None = None,
             ids: list[tuple[str, str, int]] | None = None) -> list[str]:
        """Write ``count`` payments; answer their paymentIds. ``refs``: gatewayReference per payment."""
        template = {**self.template, **(overrides or {})}
        pairs = [x for item in template.items() for x in item]
        head = [len(pairs), self.template["paymentId"], "due" if due else "final", *pairs]
        client = self.template["client"]
        made = ids if ids is not None else list(new_ids(client, prefix, count))
        payment_ids: list[str] = []
        pipe = self.redis.pipeline(transaction=False)
        queued = 0
        for start in range(0, len(made), CHUNK):
            args: list[Any] = list(head)
            for offset, (pid, txid, bucket) in enumerate(made[start:start + CHUNK]):
                ref = refs[start + offset] if refs else ""
                args += [pid, keys.tag(bucket), txid, ref or "", expires_ms]
                payment_ids.append(pid)
            self.clone(keys=[], args=args, client=pipe)
            queued += 1
            if queued == 10:
                pipe.execute()
                queued = 0
        if queued:
            pipe.execute()
        return payment_ids


def seed_gateway(control: str, gateway: str, items: list[tuple[str, int]], template_id: str = "") -> list[Any]:
    """Gateway-side objects for these (paymentId, amount minor); answers their references."""
    refs: list[Any] = []
    with httpx.Client(timeout=600) as http:
        for start in range(0, len(items), 5000):
            answer = http.post(f"{control}/seed/{gateway}",
                               json={"items": items[start:start + 5000], "template": template_id})
            answer.raise_for_status()
            refs += answer.json()["refs"]
    return refs


def due_count(client: redis.Redis) -> int:
    pipe = client.pipeline(transaction=False)
    for bucket in range(keys.BUCKETS):
        pipe.zcard(keys.due(bucket))
    return sum(pipe.execute())
