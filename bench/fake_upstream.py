"""The fake model for benchmarks, in its own process, with a pacing per model name.

    python -m bench.fake_upstream --port 8001 --pacing '{"m": {"first_token_delay": 0.05,
        "chunks": 20, "chunk_delay": 0.01}}'

A model named in `--pacing` answers `chunks` words, the first after `first_token_delay`
seconds and the next ones `chunk_delay` apart, to every request (no script to refill); any
other name gets the fake model's usual echo. `vtai.testing.run` takes no default step, hence
this small runner around `vtai.testing.create_app`.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import uvicorn

from vtai.heap import settle_heap
from vtai.testing import FakeModelState, Reply, create_app
from vtai.testing.chat import last_user_text


def pacing_replies(spec: dict[str, dict[str, Any]]) -> dict[str, Reply]:
    replies = {}
    for model, pacing in spec.items():
        chunks = [f"word{i} " for i in range(int(pacing["chunks"]))]
        replies[model] = Reply(chunks=chunks, first_token_delay=float(pacing["first_token_delay"]),
                               chunk_delay=float(pacing["chunk_delay"]))
    return replies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pacing", default="{}", help="JSON: model -> pacing")
    args = parser.parse_args()
    replies = pacing_replies(json.loads(args.pacing))

    def answer(body: dict[str, Any]) -> Reply:
        reply = replies.get(body.get("model", ""))
        return reply if reply is not None else Reply("You said: " + last_user_text(body))

    # /v1/models lists the paced names and an embeddings model, as a served model's does: a
    # peer that registers what its upstream lists (llama-stack) can then call them.
    listed = [*replies, "text-embedding-3-small"]
    app = create_app(FakeModelState(default=answer, max_recorded=100,  # never read here
                                    embedding_models=listed))
    settle_heap()  # no collector pauses in the answers' timing
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False,
                backlog=4096)


if __name__ == "__main__":
    main()
