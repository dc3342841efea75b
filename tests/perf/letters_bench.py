"""The letter figures of the benchmark: letters laid out and signed per second through the PDF pool, and one
letter's layout time in a fresh process (cold) and with its compiler reused (warm).

Everything is the production code: the letter's content as a send fixes it, `TypstRenderer` with a pool of one
process per core, and the worker's signature and self-check (`sign_letter`, `verify_letter`) on the calling
process, in batches of the letter worker's size. No database: the worker's transactions are measured with the
sends. Nothing here asserts on time. `python -m tests.perf.letters_bench [--quick]` prints the figures as JSON.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import multiprocessing
import os
import statistics
import sys
import time
import uuid
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

from exchange.letters.render import LetterContent, Party, TypstRenderer, letter_document
from exchange.letters.typesetting import typeset

WARM_RUNS = 50


def _letter(index: int) -> LetterContent:
    """A one-page Russian petition, as a send numbers it (no enclosures), different in every letter."""
    deadline = dt.date(2026, 12, 1)
    return LetterContent(
        language="ru",
        kind="petition",
        registration_number=f"СЕМ-2026/{index:04d}",
        date=dt.date(2026, 11, 22),
        sender=Party(
            name="Центр социальной помощи семье и детям «Семья»",
            region="Центральный район",
            address="ул. Ленина, 1",
            phone="+7 495 000-00-00",
            email="info@semya.example",
        ),
        addressee=Party(name="Отдел опеки и попечительства", region="Центральный район", address="ул. Мира, 5"),
        referral_id=uuid.uuid4(),
        case_ref=f"C-{index}",
        purpose="social_support",
        problem=f"Семья (случай {index}) нуждается в срочной помощи: мать одна воспитывает троих детей, "
        "задолженность за жильё, старший ребёнок пропускает занятия в школе.",
        requested_service="Консультация юриста по вопросам жилья и оформления пособий",
        urgency="urgent",
        respond_by=deadline,
        complete_by=deadline + dt.timedelta(days=30),
        legal_basis={"type": "statutory", "reference": "120-ФЗ ст. 9", "justification": "Ребёнок в опасности"},
        categories=("identity", "family"),
        signer_name="Петрова Анна Сергеевна",
        signer_role="specialist",
    )


def _cold_and_warm() -> tuple[float, float]:
    """In a fresh process: the first letter (engine loaded, compiler made, fonts parsed), then the median of more."""
    started = time.perf_counter()
    typeset(letter_document(_letter(0)))
    cold = time.perf_counter() - started
    warm = []
    for index in range(1, WARM_RUNS + 1):
        started = time.perf_counter()
        typeset(letter_document(_letter(index)))
        warm.append(time.perf_counter() - started)
    return cold * 1000, statistics.median(warm) * 1000


async def _through_the_pool(count: int, within_s: float) -> dict[str, float]:
    # Imported here, not at the top: the fresh process of `_cold_and_warm` imports this module and needs none of it.
    from joserfc.jwk import OKPKey

    from exchange.letters.signing import LetterBinding, Verification, sign_letter, verify_letter
    from exchange.letters.worker import BATCH

    key = OKPKey.generate_key("Ed25519", {"kid": "bench"})
    published = [{**key.as_dict(private=False), "use": "sig", "alg": "Ed25519"}]
    sender, recipient = uuid.uuid4(), uuid.uuid4()
    issued_at = dt.datetime(2026, 11, 22, 9, 0, tzinfo=dt.UTC)
    renderer = TypstRenderer()  # one process per core, as a node runs it
    letters = [_letter(index) for index in range(1, count + 1)]
    sizes: list[int] = []

    async def lay_out_and_sign(content: LetterContent) -> None:
        pdf = await renderer.render(content)
        binding = LetterBinding(content.registration_number, content.referral_id, sender, recipient)
        signature = sign_letter(pdf, binding, signing_key=key, issued_at=issued_at)
        if verify_letter(pdf, signature, binding, published).verification is not Verification.VALID:
            raise RuntimeError("a benchmark letter did not verify")
        sizes.append(len(pdf))

    others = {child.pid for child in multiprocessing.active_children()}  # the caller's own, not the pool's
    try:
        await asyncio.to_thread(renderer.warm_up)  # spawns and warms every process, as the worker does at start
        pool = [child.pid for child in multiprocessing.active_children() if child.pid not in others]
        pool_cpu = _cpu_s(pool)
        started, own_cpu = time.perf_counter(), time.process_time()
        for first in range(0, count, BATCH):  # batch by batch, like LetterWorker.render_once
            await asyncio.gather(*(lay_out_and_sign(content) for content in letters[first : first + BATCH]))
            if time.perf_counter() - started > within_s:
                break  # a busy machine: fewer letters, so the benchmark still ends in time
        elapsed, own_cpu = time.perf_counter() - started, time.process_time() - own_cpu
        pool_cpu = _cpu_s(pool) - pool_cpu
    finally:
        renderer.close()
    return {
        "letters_per_s": round(len(sizes) / elapsed, 1),
        "letters_timed": float(len(sizes)),
        "letter_processes": float(renderer.processes),
        # What the letter worker's own process spends per letter (signing, the self-check, the pool's traffic).
        "letter_caller_cpu_ms": round(own_cpu / len(sizes) * 1000, 2),
        # CPU of the pool and the caller per letter: on a machine shared with other work, cores ÷ this is the rate
        # the machine would reach alone.
        "letter_cpu_ms": round((own_cpu + pool_cpu) / len(sizes) * 1000, 2),
        "letter_kib": round(statistics.mean(sizes) / 1024, 1),
    }


def _cpu_s(pids: list[int | None]) -> float:
    """CPU seconds these (live) processes have used so far, from /proc."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime and stime (fields 14 and 15 of proc(5))
    return total / os.sysconf("SC_CLK_TCK")


def measure_letters(quick: bool) -> dict[str, float]:
    """The letter figures (quick: a few seconds). Safe to call from code that runs an event loop of its own."""
    count, within_s = (600, 4.0) if quick else (3000, 30.0)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as fresh:
        cold_ms, warm_ms = fresh.submit(_cold_and_warm).result()
    with ThreadPoolExecutor(1) as thread:  # a loop of its own, whatever the caller runs
        figures = thread.submit(asyncio.run, _through_the_pool(count, within_s)).result()
    return {**figures, "letter_cold_ms": round(cold_ms, 2), "letter_warm_ms": round(warm_ms, 2)}


def main() -> None:
    figures: dict[str, Any] = measure_letters(quick="--quick" in sys.argv[1:])
    print(json.dumps({**figures, "cpus": os.cpu_count()}))


if __name__ == "__main__":
    main()
