"""Dependencies of the query routes as ``Annotated`` aliases: the query API's state and its bearer token."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from aggregator.api.query_state import QueryApi
from aggregator.query.errors import UnauthorizedError
from aggregator.query.service import QueryService

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="queryToken",
    description="KPULSE_AGGREGATOR_QUERY_TOKEN, when the aggregator sets one.",
)


def get_query_api(request: Request) -> QueryApi:
    """The query state the app was built with (``app.state.query``)."""
    query: QueryApi = request.app.state.query
    return query


QueryApiDep = Annotated[QueryApi, Depends(get_query_api)]


def get_query_service(query: QueryApiDep) -> QueryService:
    """The service the routes read from."""
    return query.service


QueryServiceDep = Annotated[QueryService, Depends(get_query_service)]


def require_query_token(
    query: QueryApiDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    """Let the request through when no query token is set, or when it carries that token."""
    token = query.token
    if token is None:
        return
    if credentials is None:
        raise UnauthorizedError(
            "this query API requires a bearer token: "
            "send 'Authorization: Bearer <KPULSE_AGGREGATOR_QUERY_TOKEN>'"
        )
    # Constant-time comparison so response timing does not reveal how much of a guess was right.
    if not hmac.compare_digest(credentials.credentials.encode(), token.get_secret_value().encode()):
        raise UnauthorizedError("invalid bearer token: it does not match KPULSE_AGGREGATOR_QUERY_TOKEN")
