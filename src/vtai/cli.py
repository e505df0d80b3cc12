"""The ``vtai`` command: serve, migrate, keys."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Annotated

import typer

from vtai.server.settings import Settings

app = typer.Typer(help="VT.ai Assistants: the OpenAI Assistants API v2, self-hosted.",
                  no_args_is_help=True)
keys_app = typer.Typer(help="Manage API keys (stored hashed).", no_args_is_help=True)
app.add_typer(keys_app, name="keys")

DataDir = Annotated[Path | None, typer.Option(help="Where the database and files live.")]


def _settings(data_dir: Path | None = None, **overrides: object) -> Settings:
    values = {k: v for k, v in overrides.items() if v is not None}
    if data_dir is not None:
        values["data_dir"] = data_dir
    return Settings(**values)  # type: ignore[arg-type]


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    data_dir: DataDir = None,
    fake_model: Annotated[bool, typer.Option(
        "--fake-model", help="Answer with the built-in fake model (a demo needing nothing else)."
    )] = False,
    no_worker: Annotated[bool, typer.Option(
        "--no-worker", help="Serve HTTP only; `vtai worker` processes execute the runs.")] = False,
    insecure_no_auth: Annotated[bool, typer.Option(
        "--insecure-no-auth", help="Allow a non-loopback --host with no API keys.")] = False,
    metrics_port: Annotated[int | None, typer.Option(
        help="Serve Prometheus metrics on this port (VTAI_METRICS_HOST, default 127.0.0.1), "
        "not on the API port: they count over all projects.")] = None,
) -> None:
    """Start the server (HTTP API and run worker) on the configured database."""
    import uvicorn

    from vtai.server.app import create_app
    from vtai.server.http import bounded_protocol

    settings = _settings(data_dir, host=host, port=port, metrics_port=metrics_port)
    if no_worker:
        settings.run_worker = False
    if insecure_no_auth:
        settings.insecure_no_auth = True
    _configure_logging(settings)
    if fake_model:
        settings.upstream_base_url = _start_demo_model()
        settings.upstream_api_key = "fake"
        settings.default_upstream_only = True  # ollama/llama3.2 included
    logging.getLogger("vtai").info(
        "VT.ai Assistants on http://%s:%d/v1 (database: %s)",
        settings.host, settings.port, settings.sqlalchemy_url.split("@")[-1])
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port,
                log_level=settings.log_level, access_log=False,
                http=bounded_protocol(settings.max_header_bytes))


def _configure_logging(settings: Settings) -> None:
    from vtai.server import logs

    logs.configure(settings.log_level, settings.log_format)


@app.command()
def worker(
    data_dir: DataDir = None,
    metrics_port: Annotated[int | None, typer.Option(
        help="Serve Prometheus metrics on this port (VTAI_METRICS_HOST, default 127.0.0.1).")
    ] = None,
) -> None:
    """Execute runs (and ingestion jobs) from the database, without serving HTTP.

    Several workers and `vtai serve --no-worker` processes share one PostgreSQL. SIGTERM stops
    taking runs and lets running ones finish within VTAI_SHUTDOWN_GRACE seconds; the rest are
    handed back to the other workers."""
    import signal

    from vtai.server.runtime import Runtime

    settings = _settings(data_dir)
    _configure_logging(settings)

    async def _run() -> None:
        runtime = Runtime(settings)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await runtime.start(execute_runs=True)
        if metrics_port is not None:
            runtime.serve_metrics(settings.metrics_host, metrics_port)
        await stop.wait()
        logging.getLogger("vtai").info("stopping: finishing or handing back running runs")
        await runtime.stop()

    asyncio.run(_run())


def _start_demo_model() -> str:
    from vtai.testing import FakeModelServer
    from vtai.testing.demo import demo_reply

    server = FakeModelServer(default=demo_reply).start()
    logging.getLogger("vtai").warning(
        "--fake-model: runs are answered by the built-in fake model at %s, not a real model",
        server.base_url)
    return server.base_url


@app.command("fake-model")
def fake_model_command(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8001,
) -> None:
    """Run the scriptable fake OpenAI-compatible model server (see docs/fake-model.md)."""
    from vtai.testing import run

    run(host=host, port=port)


@app.command()
def migrate(data_dir: DataDir = None) -> None:
    """Create or upgrade the database tables; on PostgreSQL, also move the file bytes that
    earlier versions kept under this host's data dir into the database."""
    from vtai.server.store.db import Database
    from vtai.server.store.files import FileStore

    async def _run() -> None:
        settings = _settings(data_dir)
        db = Database(settings.sqlalchemy_url)
        await db.migrate()
        moved = await FileStore.at(db, settings.data_dir).move_disk_bytes()
        if moved.files:
            typer.echo(f"moved the bytes of {moved.files} files from {settings.data_dir} "
                       "into the database")
        typer.echo(f"database up to date: {db.describe()}")
        await db.close()

    asyncio.run(_run())


@keys_app.command("create")
def keys_create(
    project: Annotated[str, typer.Option(help="The project the key's objects belong to.")],
    name: Annotated[str, typer.Option(help="A label for the key.")] = "",
    data_dir: DataDir = None,
) -> None:
    """Create an API key; it is printed once and stored only as a hash."""
    from vtai.server.api.auth import create_key
    from vtai.server.store.db import Database

    async def _run() -> str:
        db = Database(_settings(data_dir).sqlalchemy_url)
        await db.migrate()
        key = await create_key(db, project, name)
        await db.close()
        return key

    typer.echo(asyncio.run(_run()))


ServerURL = Annotated[str, typer.Option(
    "--base-url", envvar="VTAI_BASE_URL", help="The Assistants API server to talk to.")]
ServerKey = Annotated[str, typer.Option(
    "--api-key", envvar="VTAI_API_KEY", help="Its API key, when it has keys configured.")]
AssistantId = Annotated[str | None, typer.Option(
    "--assistant", help="Chat with this assistant (default: the one used last, or a new one).")]
Model = Annotated[str, typer.Option(help="The model of an assistant this command creates.")]
Functions = Annotated[list[str] | None, typer.Option(
    "--functions", help="A module whose @function_tool functions the assistant may call "
    "(repeatable).")]


@app.command()
def ui(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8501,
    base_url: ServerURL = "http://127.0.0.1:8000/v1",
    api_key: ServerKey = "unused",
    assistant: AssistantId = None,
    model: Model = "o3",
    functions: Functions = None,
    data_dir: DataDir = None,
) -> None:
    """Start the chat UI (Chainlit, Assistant mode) on an Assistants API server."""
    from vtai.ui.launch import exec_chainlit

    root = _settings(data_dir).data_dir / "ui"
    env = {"VTAI_UI_BASE_URL": base_url, "VTAI_UI_API_KEY": api_key, "VTAI_UI_MODEL": model,
           "VTAI_UI_STATE_PATH": str(root / "ui.json")}
    if assistant:
        env["VTAI_UI_ASSISTANT_ID"] = assistant
    if functions:
        env["VTAI_UI_FUNCTIONS"] = ",".join(functions)
    typer.echo(f"VT.ai chat UI on http://{host}:{port} (server: {base_url})")
    exec_chainlit(root, host, port, env)


@app.command()
def chat(
    base_url: ServerURL = "http://127.0.0.1:8000/v1",
    api_key: ServerKey = "unused",
    assistant: AssistantId = None,
    model: Model = "o3",
    new: Annotated[bool, typer.Option("--new", help="Start a new thread.")] = False,
    functions: Functions = None,
    data_dir: DataDir = None,
) -> None:
    """Chat with an assistant in the terminal (/file PATH attaches, /new, /exit)."""
    from vtai.assistants.functions import import_functions
    from vtai.chat.app import run_chat

    import_functions(functions or [])
    state = _settings(data_dir).data_dir / "chat.json"
    raise typer.Exit(asyncio.run(run_chat(base_url, api_key, assistant, model, state,
                                          resume=not new)))


if __name__ == "__main__":
    app()
