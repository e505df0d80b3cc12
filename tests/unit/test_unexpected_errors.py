"""An unexpected error answers 500 in OpenAI's shape and says the connection closes (the
server closes it after such an error), so clients do not reuse it."""

from __future__ import annotations

from pathlib import Path

from starlette.testclient import TestClient

from vtai.server.app import create_app
from vtai.server.settings import Settings


def test_an_unexpected_error_is_a_500_that_closes_the_connection(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path, api_keys="k"))

    async def boom() -> None:
        raise KeyError("function")

    app.add_api_route("/v1/boom", boom)
    response = TestClient(app, raise_server_exceptions=False).get(
        "/v1/boom", headers={"authorization": "Bearer k"})
    assert response.status_code == 500
    assert response.headers["connection"] == "close"
    assert response.json() == {"error": {
        "message": "The server had an error while processing your request.",
        "type": "server_error", "param": None, "code": None}}
