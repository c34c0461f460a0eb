"""The pieces of the LLM layer that need no model: stop-string handling, tool-call parsing, the slot pool."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from zhiku.llm.base import QueueFullError
from zhiku.llm.scheduler import SlotPool
from zhiku.llm.text import StopText, estimate_tokens
from zhiku.llm.tool_calls import parse_tool_calls


def run_stop(pieces: list[bytes | str], stop: list[str]) -> tuple[str, bool]:
    s = StopText(stop)
    out = "".join(s.feed(p) for p in pieces)
    return out + s.flush(), s.stopped


def test_stop_string_split_across_tokens_never_leaks() -> None:
    assert run_stop(["Hello", " wor", "ld", "!", " more"], ["world"]) == ("Hello ", True)


def test_held_back_prefix_is_released_when_it_is_not_a_stop() -> None:
    s = StopText(["END"])
    assert s.feed("abc E") == "abc "  # "E" might start END
    assert s.feed("X") == "EX"
    assert s.feed("EN") == ""
    assert s.flush() == "EN"  # the stream ended: it was text after all


def test_multibyte_character_split_across_tokens() -> None:
    data = "知库".encode()
    assert run_stop([data[:1], data[1:4], data[4:]], []) == ("知库", False)


def test_earliest_stop_wins() -> None:
    assert run_stop(["a b c d"], ["d", "b"]) == ("a ", True)


def test_tool_calls_parsed_as_json_not_code() -> None:
    text = 'Let me check.\n<tool_call>\n{"name": "weather", "arguments": {"city": "北京"}}\n</tool_call>'
    content, calls = parse_tool_calls(text)
    assert content == "Let me check."
    assert calls[0]["function"]["name"] == "weather"
    assert calls[0]["function"]["arguments"] == '{"city": "北京"}'
    # something that is not JSON stays plain text
    assert parse_tool_calls("<tool_call>__import__('os')</tool_call>") == (
        "<tool_call>__import__('os')</tool_call>", [])


def test_bare_tool_call_json_counts_only_for_a_known_tool() -> None:
    reply = '{"name": "weather", "arguments": {"city": "Paris"}}'
    assert parse_tool_calls(reply, {"weather"})[1][0]["function"]["name"] == "weather"
    assert parse_tool_calls(reply, {"search"}) == (reply, [])


def test_estimate_counts_cjk_per_character() -> None:
    assert estimate_tokens("知识库问答") == 5
    assert estimate_tokens("abcdefgh") == 2


def test_slot_pool_fifo_queue_bound_and_cancelled_waiter() -> None:
    async def scenario() -> None:
        pool: SlotPool[str] = SlotPool(["s1"], queue_size=2)
        got = await pool.acquire()
        order: list[str] = []

        async def waiter(name: str) -> None:
            slot = await pool.acquire()
            order.append(name)
            pool.release(slot)

        first = asyncio.create_task(waiter("first"))
        second = asyncio.create_task(waiter("second"))
        await asyncio.sleep(0)
        assert pool.waiting == 2
        with pytest.raises(QueueFullError) as e:
            await pool.acquire()
        assert e.value.retry_after >= 1
        # a waiter that gives up leaves the queue and never swallows a slot
        first.cancel()
        await asyncio.sleep(0)
        assert pool.waiting == 1
        third = asyncio.create_task(waiter("third"))
        await asyncio.sleep(0)
        pool.release(got)
        await asyncio.wait_for(asyncio.gather(second, third), 2)
        assert order == ["second", "third"]
        assert pool.busy == 0 and pool.waiting == 0

    asyncio.run(scenario())


def test_core_sharing_policy_splits_the_cores_only_while_both_run() -> None:
    from zhiku.llm.cores import CoreShare

    cores = CoreShare(cores=2)
    assert cores.generation_threads(2) == 2 and cores.ingestion_workers(2) == 2  # either alone: every core
    cores.generation(True)
    assert cores.ingestion_workers(2) == 1 and cores.generation_threads(2) == 2
    with cores.ingestion():
        assert cores.generation_threads(2) == 1 and cores.ingestion_workers(2) == 1
    cores.generation(False)
    assert cores.ingestion_workers(2) == 2
    cores.enabled = False
    cores.generation(True)
    with cores.ingestion():
        assert cores.generation_threads(2) == 2 and cores.ingestion_workers(2) == 2


def test_embedding_shards_keep_to_the_cores_generation_leaves(monkeypatch: pytest.MonkeyPatch) -> None:
    from zhiku.embed.parallel import ShardPool
    from zhiku.llm import cores

    share = cores.CoreShare(cores=4)
    monkeypatch.setattr("zhiku.embed.parallel.CORES", share)
    pool = ShardPool(4, "test")
    assert pool.parts_for(100) == 4
    share.generation(True)
    assert pool.parts_for(100) == 2  # generation holds half of the 4 cores
    seen: list[bool] = []

    def embed(texts: list[str]) -> np.ndarray:
        seen.append(share.ingesting)
        return np.zeros((len(texts), 1), dtype=np.float32)

    pool.map(embed, ["x"] * 20)
    assert seen and all(seen)  # generation sees the embedding under way
    pool.close()
