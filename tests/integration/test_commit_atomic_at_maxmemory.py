"""The batch commit is all or nothing when Redis is out of memory.

Redis does not roll back the writes a script made before one of its commands failed, and
at `maxmemory` with `noeviction` only commands that may grow memory are refused (ZREM
and HDEL still run). A commit half applied would break the fenced, idempotent commit.
Redis prevents it: a script's first write that may grow memory is refused with nothing
done, and once a script has written, its later writes are let through. Both halves are
shown here on a real redis-server, with the commit script itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from service.dev.redis_server import RedisServer
from service.storage.scripts import COMMIT

pytestmark = pytest.mark.integration


@pytest.fixture
def client(tmp_path: Path) -> Iterator[redis.Redis]:
    with RedisServer(tmp_path / "redis") as server:
        c = redis.Redis(host="127.0.0.1", port=server.port)
        try:
            yield c
        finally:
            c.close()


def _out_of_memory(client: redis.Redis) -> None:
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", str(used // 2))


def test_a_commit_refused_for_memory_leaves_nothing_behind(client: redis.Redis) -> None:
    client.zadd("z", {"m": 1})
    _out_of_memory(client)
    commit = client.register_script(COMMIT)
    with pytest.raises(redis.exceptions.OutOfMemoryError):  # HSET first: refused, nothing done
        commit(keys=["meta", "h", "z"], args=[0, "HSET", 2, 2, "f", "v", "ZREM", 3, 1, "m"])
    client.config_set("maxmemory", "0")
    assert client.hget("h", "f") is None
    assert client.zscore("z", "m") == 1


def test_a_commit_that_has_written_is_completed_even_out_of_memory(client: redis.Redis) -> None:
    client.zadd("z", {"m": 1})
    _out_of_memory(client)
    commit = client.register_script(COMMIT)
    # ZREM first (never refused for memory), then HSET: Redis lets the script finish
    assert commit(keys=["meta", "z", "h"], args=[0, "ZREM", 2, 1, "m", "HSET", 3, 2, "f", "v"]) == [b"OK"]
    client.config_set("maxmemory", "0")
    assert client.zscore("z", "m") is None
    assert client.hget("h", "f") == b"v"
