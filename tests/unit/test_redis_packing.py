"""Commands packed by hiredis are the bytes redis-py's own asyncio connection would send."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio import Connection
from redis.exceptions import DataError

from service.storage.client import PackingConnection

ARGS = st.one_of(
    st.binary(max_size=40),
    st.text(max_size=20),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
)


@given(st.sampled_from(["EVALSHA", "HSET", "CLIENT SETNAME", b"HMGET"]), st.lists(ARGS, max_size=30))
def test_the_same_bytes_as_redis_py(command: str | bytes, args: list[object]) -> None:
    ours, theirs = PackingConnection(), Connection()
    assert b"".join(ours.pack_command(command, *args)) == b"".join(theirs.pack_command(command, *args))


@pytest.mark.parametrize("bad", [None, True, [1], {"a": 1}])
def test_what_redis_py_refuses_is_refused(bad: object) -> None:
    with pytest.raises(DataError):
        PackingConnection().pack_command("SET", "k", bad)
