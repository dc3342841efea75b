"""The baseline for `make bench`: a bare Litestar app with one small JSON endpoint, served like `casebridge serve`."""

from __future__ import annotations

import argparse

import uvicorn
from litestar import Litestar, get


@get("/json")
async def small_json() -> dict[str, str]:
    return {"status": "ok", "service": "bare-litestar"}


app = Litestar(route_handlers=[small_json], debug=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    port = parser.parse_args().port
    # The same uvicorn.run() arguments as gateway.cli._serve, so the two servers differ only in the application.
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="info", proxy_headers=False, server_header=False)


if __name__ == "__main__":
    main()
