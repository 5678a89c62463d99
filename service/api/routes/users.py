"""One user's document and their triggers, addressed by any user id."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path
from starlette.convertors import Convertor, register_url_convertor

from service.api.models import User
from service.core.events import MAX_ID_LEN
from service.storage.queries import Queries


class _UserIdConvertor(Convertor[str]):
    """A path segment that is any user id: "/" (sent as %2F, decoded before routing) and
    newlines included, which Starlette's `str` and `path` convertors do not match."""

    regex = r"[\s\S]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("user_id", _UserIdConvertor())


def user_routes(queries: Queries) -> APIRouter:
    router = APIRouter()

    # `:user_id`: any characters (see `_UserIdConvertor`); the triggers route comes first,
    # so only an id ending in "/triggers" is ambiguous.
    @router.get("/users/{user_id:user_id}/triggers", responses={404: {"description": "unknown user"}})
    async def get_user_triggers(
        user_id: Annotated[str, Path(min_length=1, max_length=MAX_ID_LEN)],
    ) -> dict[str, Any]:
        """A user's scheduled triggers (due times, epoch ms) and the last fired ones with outcomes."""
        found = await queries.user_triggers(user_id)
        if found is None:
            raise HTTPException(404, f"no user {user_id!r}")
        return found

    @router.get(
        "/users/{user_id:user_id}", response_model=User, responses={404: {"description": "unknown user"}}
    )
    async def get_user(user_id: Annotated[str, Path(min_length=1, max_length=MAX_ID_LEN)]) -> dict[str, Any]:
        """A user's lifecycle state at the current clock, funnel stage, orders and revenue."""
        found = await queries.user(user_id)
        if found is None:
            raise HTTPException(404, f"no user {user_id!r}")
        return found

    return router
