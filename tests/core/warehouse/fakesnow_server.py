"""fakesnow's HTTP server for snowflake-connector-python 5.x, run by the emulator's own venv.

Usage: ``.venv-sf/bin/python tests/core/warehouse/fakesnow_server.py PORT``. Not imported by the
project or the tests (fakesnow pins a sqlglot and an old snowflake-connector of its own, so it
lives in ``.venv-sf``, made by ``make emulators``).

Two fixes for connector 5.x (the project's), everything else is fakesnow's server as shipped (one
in-memory DuckDB shared by every session):

- the login answer lacks ``masterToken`` and the tokens' lifetimes, which 5.x requires;
- a NULL timestamp goes out as an Arrow struct with no validity mask (children NULL under
  non-nullable fields), which 5.x's Arrow reader rejects: the struct gets the mask real Snowflake
  sends (children 0 where the row is NULL).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import fakesnow.arrow as fa  # type: ignore[import-not-found]
import fakesnow.server as fs  # type: ignore[import-not-found]
import pyarrow as pa  # type: ignore[import-not-found]
import pyarrow.compute as pc  # type: ignore[import-not-found]
import uvicorn  # type: ignore[import-not-found]
from starlette.applications import Starlette  # type: ignore[import-not-found]
from starlette.routing import Route  # type: ignore[import-not-found]

LOGIN = "/session/v1/login-request"


async def login(request: Any) -> Any:
    answer = await fs.login_request(request)
    body = json.loads(answer.body)
    data = body.get("data") or {}
    if "token" in data:
        data.setdefault("masterToken", data["token"])
        data.setdefault("validityInSeconds", 3600)
        data.setdefault("masterValidityInSeconds", 14400)
        data.setdefault("sessionId", 1)
    return fs.JSONResponse(body)


_timestamp_struct = fa.timestamp_to_sf_struct


def timestamp_to_sf_struct(ts: Any) -> Any:
    if isinstance(ts, pa.ChunkedArray):
        ts = ts.combine_chunks()
    nulls = ts.is_null()
    if not nulls.true_count:
        return _timestamp_struct(ts)
    filled = pc.fill_null(ts, pa.scalar(0, type=ts.type))
    struct = _timestamp_struct(filled)
    fields = [struct.type.field(i) for i in range(struct.type.num_fields)]
    return pa.StructArray.from_arrays(struct.flatten(), fields=fields, mask=nulls)


def main(port: int) -> None:
    fa.timestamp_to_sf_struct = timestamp_to_sf_struct
    routes = [Route(LOGIN, login, methods=["POST"]) if r.path == LOGIN else r for r in fs.routes]
    uvicorn.run(Starlette(routes=routes), host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main(int(sys.argv[1]))
