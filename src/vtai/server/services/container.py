"""Every service of a server, made once from its runtime (what create_app hands the edge)."""

from __future__ import annotations

from dataclasses import dataclass

from vtai.server.runtime import Runtime
from vtai.server.services.assistants import Assistants
from vtai.server.services.containers import Containers
from vtai.server.services.conversations import Conversations
from vtai.server.services.files import Files
from vtai.server.services.messages import Messages
from vtai.server.services.models import Models
from vtai.server.services.passthrough import PassThrough
from vtai.server.services.responses import Responses
from vtai.server.services.run_reads import RunReads
from vtai.server.services.runs import Runs
from vtai.server.services.threads import Threads
from vtai.server.services.vector_stores import VectorStores


@dataclass(frozen=True)
class Services:
    assistants: Assistants
    threads: Threads
    messages: Messages
    runs: Runs
    run_reads: RunReads
    files: Files
    vector_stores: VectorStores
    models: Models
    responses: Responses
    conversations: Conversations
    passthrough: PassThrough
    containers: Containers

    @classmethod
    def of(cls, runtime: Runtime) -> Services:
        settings, db = runtime.settings, runtime.db
        threads = Threads(db, settings)
        return cls(
            assistants=Assistants(db, settings), threads=threads,
            messages=Messages(db, settings),
            runs=Runs(db, settings, runtime.records, runtime.worker, runtime.providers),
            run_reads=RunReads(db, runtime.bus), files=Files(runtime.files, settings),
            vector_stores=VectorStores(runtime.retrieval), models=Models(runtime.providers),
            responses=Responses(db, runtime.responses, runtime.response_worker,
                                runtime.providers, runtime.containers),
            conversations=Conversations(db, threads),
            passthrough=PassThrough(runtime.providers),
            containers=Containers(runtime.containers, settings))
