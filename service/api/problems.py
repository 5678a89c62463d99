"""Error bodies of the API, shared by its routers so OpenAPI documents one shape of each."""

from __future__ import annotations

from pydantic import BaseModel


class Problem(BaseModel):
    """A rule the request broke, in one sentence."""

    detail: str


class ValidationIssue(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ValidationProblem(BaseModel):
    """FastAPI's own 422 (a parameter of the wrong form), beside a `Problem` for a rule between them."""

    detail: list[ValidationIssue]
