"""The cases of the fault matrix.  Each takes the chaos stack and a work directory,
injects its faults while events flow, and returns a :class:`Result`: how many events
were sent (and how many of them were duplicates), the faults, how long the pipeline took
to be exact again after the last fault ended, and whether it was exact.

"Exact" is always the same check: every record committed, the stored total of every
(subject, meter) equal to the total computed from the generated events (duplicates
excluded), and one raw-event row per unique event.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson
from chaos_kit import (
    ApiSender,
    ChaosError,
    ChaosStack,
    Pipeline,
    SdkSender,
    _batch_body,
    merge,
    wait_for,
)
from confluent_kafka import Consumer, Producer

from ingest.telemetry import Telemetry, generate

SUBJECTS = ["acme", "globex", "initech", "umbrella-eu", "umbrella-us"]
RECOVER_TIMEOUT_S = 300.0


@dataclass
class Result:
    case: str
    sent: int
    duplicates: int
    faults: str
    recover_s: float
    """From the end of the last fault until the check held."""
    exact: bool
    difference: Decimal = Decimal(0)
    notes: dict[str, Any] = field(default_factory=dict)
    settle_s: float = 0.0
    """From the last event acknowledged until the check held."""

    def line(self) -> str:
        verdict = "exact" if self.exact else f"NOT EXACT (|diff| {self.difference})"
        extra = "; ".join(f"{k} {v}" for k, v in self.notes.items())
        return (
            f"{self.case:<22} sent {self.sent:>6} ({self.duplicates} dup)  {self.faults:<44} "
            f"recovered in {self.recover_s:6.1f}s (exact {self.settle_s:4.1f}s after the last send)"
            f"  {verdict}" + (f"  [{extra}]" if extra else "")
        )


def telemetry(count_per_subject: int, seed: int, prefix: str) -> Telemetry:
    now = datetime.now(UTC)
    return generate(
        SUBJECTS,
        now - timedelta(hours=1),
        timedelta(hours=1),
        count_per_subject,
        seed=seed,
        id_prefix=prefix,
    )


def finish(
    name: str,
    pipe: Pipeline,
    data: Telemetry,
    faults: str,
    fault_ended: float,
    **notes: Any,
) -> Result:
    """Wait until exact (or the deadline) and build the result; call it once every
    sender has finished."""
    last_send = time.monotonic()
    try:
        pipe.wait_exact(data.truth, data.unique, RECOVER_TIMEOUT_S)
        exact, difference = True, Decimal(0)
    except ChaosError:
        exact, difference = False, pipe.difference(data.truth)
    restarts = {k: int(v) for i in range(len(pipe.workers)) for k, v in pipe.restarts(i).items()}
    if restarts:
        notes["restarts"] = restarts
    return Result(
        name,
        len(data.events),
        data.duplicates,
        faults,
        time.monotonic() - fault_ended,
        exact,
        difference,
        notes,
        time.monotonic() - last_send,
    )


def join(*senders: Any) -> None:
    for sender in senders:
        sender.join(900)
        if sender.is_alive():
            raise ChaosError(f"{sender.name} did not finish")
        if sender.error is not None:
            raise ChaosError(f"{sender.name} failed: {sender.error!r}")


def broker_kill(stack: ChaosStack, work: Path) -> Result:
    """The broker SIGKILLed for 30 s while the SDK and the API are sending."""
    pipe = Pipeline.create(stack, work)
    try:
        pipe.start_worker()
        pipe.start_api()
        by_sdk = telemetry(1600, 1, "sdk-")
        by_api = telemetry(400, 2, "api-")
        sdk = SdkSender(pipe.settings, by_sdk.events, rate=200)
        api = ApiSender(pipe.api_url, by_api.events, rate=60)
        sdk.start()
        api.start()
        time.sleep(10)
        stack.kill("kafka")
        time.sleep(30)
        stack.up()
        back = time.monotonic()
        join(sdk, api)
        return finish(
            "broker_kill",
            pipe,
            merge(by_sdk, by_api),
            "broker SIGKILL, down 30 s (SDK + API sending)",
            back,
            sdk_resent=sdk.sent.retried,
            api_answers=dict(sorted(api.sent.requests.items())),
        )
    finally:
        pipe.close()


def clickhouse_kill(stack: ChaosStack, work: Path) -> Result:
    """ClickHouse SIGKILLed for 60 s while events flow."""
    pipe = Pipeline.create(stack, work)
    try:
        pipe.start_worker()
        data = telemetry(1500, 3, "ch-")
        sdk = SdkSender(pipe.settings, data.events, rate=150)
        sdk.start()
        time.sleep(10)
        stack.kill("clickhouse")
        time.sleep(60)
        stack.up()
        back = time.monotonic()
        join(sdk)
        return finish("clickhouse_kill", pipe, data, "ClickHouse SIGKILL, down 60 s", back)
    finally:
        pipe.close()


def clickhouse_disk_full(stack: ChaosStack, work: Path) -> Result:
    """ClickHouse's disk full for 60 s while events flow: every insert is refused."""
    pipe = Pipeline.create(stack, work)
    try:
        pipe.start_worker()
        data = telemetry(1500, 4, "df-")
        sdk = SdkSender(pipe.settings, data.events, rate=150)
        sdk.start()
        time.sleep(10)
        stack.disk_full(True)
        time.sleep(60)
        stack.disk_full(False)
        back = time.monotonic()
        join(sdk)
        return finish("clickhouse_disk_full", pipe, data, "ClickHouse disk full 60 s", back)
    finally:
        stack.disk_full(False)
        pipe.close()


def worker_kill_three(stack: ChaosStack, work: Path) -> Result:
    """The worker child SIGKILLed three times in a row, each time its replacement has
    taken over; the time to replace each is recorded."""
    pipe = Pipeline.create(stack, work)
    try:
        pipe.start_worker()
        data = telemetry(2000, 5, "wk-")
        sdk = SdkSender(pipe.settings, data.events, rate=200)
        sdk.start()
        replaced = []
        for _ in range(3):
            time.sleep(5)
            old = pipe.health()["child_pid"]
            os.kill(old, signal.SIGKILL)
            killed = time.monotonic()

            def replaced_child(old: int = old) -> bool:
                return pipe.health().get("child_pid") not in (None, old)

            wait_for(replaced_child, 30, "replacement")
            replaced.append(round(time.monotonic() - killed, 1))
            wait_for(lambda: pipe.health().get("ready"), 120, "the replacement to be ready")
        last = time.monotonic()
        join(sdk)
        return finish(
            "worker_kill_x3",
            pipe,
            data,
            "worker child SIGKILL x3",
            last,
            replaced_in_s=replaced,
        )
    finally:
        pipe.close()


def two_workers_one_killed(stack: ChaosStack, work: Path) -> Result:
    """Two supervised workers share the partitions; one is lost whole (supervisor and
    child SIGKILLed, as a machine would be) under load; the other takes over."""
    pipe = Pipeline.create(stack, work)
    try:
        pipe.start_worker()
        pipe.start_worker()
        data = telemetry(2000, 6, "rb-")
        sdk = SdkSender(pipe.settings, data.events, rate=200)
        sdk.start()
        time.sleep(10)
        os.killpg(pipe.workers[0].pid, signal.SIGKILL)
        pipe.workers[0].wait(10)
        killed = time.monotonic()
        wait_for(
            lambda: len(pipe.health(1).get("assigned") or []) == 4,
            120,
            "the survivor to own every partition",
        )
        took_over = round(time.monotonic() - killed, 1)
        join(sdk)
        return finish(
            "two_workers_one_lost",
            pipe,
            data,
            "1 of 2 workers SIGKILLed (process group)",
            killed,
            took_over_in_s=took_over,
        )
    finally:
        pipe.close()


POISON: dict[str, bytes] = {
    "bad_json": b'{"specversion": "1.0", "id": "p1", "source": "chaos", ',
    "wrong_types": orjson.dumps(
        {
            "specversion": "1.0",
            "id": 7,
            "source": ["chaos"],
            "type": "api.request",
            "subject": {"a": 1},
            "time": "yesterday",
        }
    ),
    "huge_number": (
        b'{"specversion":"1.0","id":"p3","source":"chaos","type":"llm.completion",'
        b'"subject":"acme","time":"2026-11-30T00:00:00Z","data":{"tokens":1' + b"0" * 400 + b"}}"
    ),
    "huge_exponent": (
        b'{"specversion":"1.0","id":"p4","source":"chaos","type":"llm.completion",'
        b'"subject":"acme","time":"2026-11-30T00:00:00Z","data":{"tokens":1e400}}'
    ),
    "lone_surrogate": (
        b'{"specversion":"1.0","id":"p5","source":"chaos","type":"api.request",'
        b'"subject":"\\ud800","time":"2026-11-30T00:00:00Z","data":{}}'
    ),
    "invalid_utf8": b'{"specversion":"1.0","id":"p6","source":"chaos","subject":"\xff\xfe"}',
    "record_10mb": (
        b'{"specversion":"1.0","id":"p7","source":"chaos","type":"api.request","subject":"'
        + b"x" * (10 * 1024 * 1024)
        + b'","time":"2026-11-30T00:00:00Z","data":{}}'
    ),
}


def poison_records(stack: ChaosStack, work: Path) -> Result:
    """A poison record of every kind between valid events: each goes to the dead-letter
    topic with its reason, the valid events are exact, and the worker never restarts."""
    pipe = Pipeline.create(stack, work)
    try:
        pipe.start_worker()
        data = telemetry(600, 7, "ok-")
        half = len(data.events) // 2
        first = SdkSender(pipe.settings, data.events[:half], rate=400)
        first.start()
        first.join()
        raw = Producer(
            {"bootstrap.servers": pipe.settings.kafka_bootstrap, "message.max.bytes": 20_000_000}
        )
        for kind, body in POISON.items():
            raw.produce(pipe.settings.events_topic, key=kind.encode(), value=body)
        if raw.flush(60):
            raise ChaosError("poison records not acknowledged")
        injected = time.monotonic()
        second = SdkSender(pipe.settings, data.events[half:], rate=400)
        second.start()
        join(second)
        result = finish(
            "poison_records",
            pipe,
            data,
            f"{len(POISON)} poison records (incl. 10 MB)",
            injected,
        )
        letters = _dead_letters(pipe, len(POISON))
        missing = sorted(set(POISON) - set(letters))
        result.notes["dead_letters"] = dict(sorted(letters.items()))
        if missing:
            result.exact = False
            result.notes["not_dead_lettered"] = missing
        if pipe.restarts():
            result.exact = False
        return result
    finally:
        pipe.close()


def _dead_letters(pipe: Pipeline, want: int) -> dict[str, str]:
    """Poison kind (the record key) → dead-letter reason."""
    consumer = Consumer(
        {
            "bootstrap.servers": pipe.settings.kafka_bootstrap,
            "group.id": f"chaos-dlq-{time.monotonic_ns()}",
            "auto.offset.reset": "earliest",
            "fetch.message.max.bytes": 20_000_000,
        }
    )
    consumer.subscribe([pipe.settings.dead_letter_topic])
    found: dict[str, str] = {}
    deadline = time.monotonic() + 60
    while len(found) < want and time.monotonic() < deadline:
        msg = consumer.poll(1.0)
        if msg is None or msg.error():
            continue
        headers = dict(msg.headers() or [])
        found[(msg.key() or b"").decode()] = headers["meterline.reason"].decode()
    consumer.close()
    return found


def api_flood(stack: ChaosStack, work: Path) -> Result:
    """128 clients post batches as fast as they can for 20 s.  The API sheds what it
    cannot take (429/503 with Retry-After) and its memory stays bounded; every batch it
    answered 204 is metered exactly, and a batch answered 503 is retried until 204."""
    pipe = Pipeline.create(stack, work)
    try:
        pipe.start_worker()
        pipe.start_api()
        api = pipe.api
        assert api is not None
        data = telemetry(6000, 8, "flood-")
        batches = [data.events[i : i + 100] for i in range(0, len(data.events), 100)]
        rss: list[int] = []
        stop = asyncio.Event()
        answers: dict[int, int] = {}
        accepted: list[int] = []
        shed: list[int] = []

        async def sample() -> None:
            while not stop.is_set():
                rss.append(_rss_kib(api.pid))
                await asyncio.sleep(0.25)

        async def client(http: httpx.AsyncClient, queue: asyncio.Queue[int]) -> None:
            from api.server import demo_tokens

            headers = {
                "Authorization": f"Bearer {demo_tokens()['admin']}",
                "content-type": "application/cloudevents-batch+json",
            }
            while not queue.empty():
                index = queue.get_nowait()
                body = _batch_body(batches[index])
                while True:
                    try:
                        answer = await http.post("/api/v1/events", content=body, headers=headers)
                        code = answer.status_code
                    except httpx.HTTPError:
                        code = 0
                    answers[code] = answers.get(code, 0) + 1
                    if code == 204:
                        accepted.append(index)
                        break
                    if code == 429:
                        shed.append(index)  # nothing of it was accepted: not retried
                        break
                    await asyncio.sleep(0.1)  # 503 or no answer: it may have landed; retry

        async def flood() -> float:
            queue: asyncio.Queue[int] = asyncio.Queue()
            for index in range(len(batches)):
                queue.put_nowait(index)
            limits = httpx.Limits(max_connections=128, max_keepalive_connections=128)
            async with httpx.AsyncClient(base_url=pipe.api_url, timeout=60, limits=limits) as http:
                sampler = asyncio.ensure_future(sample())
                started = time.monotonic()
                await asyncio.gather(*(client(http, queue) for _ in range(128)))
                took = time.monotonic() - started
                stop.set()
                await sampler
            return took

        took = asyncio.run(flood())
        ended = time.monotonic()
        kept = sorted(set(accepted))
        truth = _truth_of([e for i in kept for e in batches[i]])
        result = finish(
            "api_flood",
            pipe,
            truth,
            f"128 clients, {len(batches)} batches of 100 in {took:.0f}s",
            ended,
            answers=dict(sorted(answers.items())),
            shed_batches=len(set(shed)),
            api_rss_mib=f"{rss[0] // 1024}→max {max(rss) // 1024}",
        )
        result.sent = len(data.events)
        result.duplicates = data.duplicates
        return result
    finally:
        pipe.close()


def _truth_of(events: list[Any]) -> Telemetry:
    """The truth of the events the API accepted: recomputed from their content."""
    out = Telemetry(events=events)
    seen = set()
    for event in events:
        key = (event.source, event.id)
        if key in seen:
            out.duplicates += 1
            continue
        seen.add(key)
        out.unique += 1
        data = event.data or {}
        if event.type == "api.request":
            out.add_truth(event.subject, "api_calls", Decimal(1))
        elif event.type == "llm.completion":
            out.add_truth(event.subject, "llm_tokens", Decimal(str(data["tokens"])))
        else:
            out.add_truth(event.subject, "storage_gb_hours", Decimal(str(data["gb_hours"])))
    return out


def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


CASES: list[Callable[[ChaosStack, Path], Result]] = [
    broker_kill,
    clickhouse_kill,
    clickhouse_disk_full,
    worker_kill_three,
    two_workers_one_killed,
    poison_records,
    api_flood,
]
