"""The runs benchmark's results as markdown tables."""

from __future__ import annotations

from typing import Any

from bench.harness import cpu_cell, others_note, table
from bench.run_clients import PROBE_EVERY

_ROLES = ("server", "model", "client", "postgres", "irq", "rest")


def report(data: dict[str, Any]) -> str:
    """The results as markdown tables."""
    text = ""
    for name, shape in data["shapes"].items():
        text += ("\n\n" if text else "") + _overhead_report(data, name, shape)
    holds = [b for b in data["backends"] if b["hold"]]
    if holds:
        hold_rows = []
        for b in holds:
            h = b["hold"]
            hold_rows.append([
                b["backend"], h["runs"], h["completed"], h["errors"], h["max_open"],
                h["max_streaming"], h["all_open_after"], h["ttft"]["p50"] / 1000,
                h["ttft"]["p99"] / 1000, h["total"]["p50"] / 1000, h["total"]["max"] / 1000,
                cpu_cell(h["cpu"], *_ROLES)])
        hp = data["hold_pacing"]
        text += "\n\n" if text else ""
        text += table(
            ["backend", "runs", "completed", "errors", "max open at once",
             "max receiving tokens at once", "all open after s", "first token p50 s",
             "first token p99 s", "end p50 s", "end max s", "cores"], hold_rows)
        text += (f"\n\nHeld streams (raw SSE over `httpx`): every run started at once; model "
                 f"time {hp['first_token_delay']:g} s to the first word, then {hp['chunks']} "
                 f"words {hp['chunk_delay']:.2g} s apart "
                 f"(~{holds[0]['hold']['model_seconds']:.1f} s). First token and end are "
                 "measured from the moment all runs were started.")
    noted = []
    for b in data["backends"]:
        noted += [(f"{b['backend']} {p['shape']} {p['path']} x{p['concurrency']}", p["cpu"],
                   p["other_processes"]) for p in b["phases"]]
        if b["hold"]:
            noted.append((f"{b['backend']} hold", b["hold"]["cpu"],
                          b["hold"]["other_processes"]))
    text += others_note(noted)
    for b in data["backends"]:
        for name, profiled in b.get("profiles", {}).items():
            if profiled:
                text += (f"\n\nServer self time by package ({b['backend']}, {name}, py-spy): "
                         f"{profiled['line']}.")
    for b in data["backends"]:
        samples = [s for p in b["phases"] for s in p["error_samples"]]
        samples += (b["hold"] or {}).get("error_samples", [])
        for sample in samples:
            text += f"\n\n- error ({b['backend']}): `{sample}`"
    return text


def _overhead_report(data: dict[str, Any], name: str, shape: dict[str, Any]) -> str:
    ttft_rows: list[list[Any]] = []
    total_rows: list[list[Any]] = []
    rest_rows: list[list[Any]] = []
    beside_rows: list[list[Any]] = []
    for b in data["backends"]:
        phases = [p for p in b["phases"] if p["shape"] == name]
        by_key = {(p["path"], p["concurrency"]): p for p in phases}
        for concurrency in sorted({p["concurrency"] for p in phases}):
            direct, ours = by_key[("direct", concurrency)], by_key[("ours", concurrency)]
            head = [b["backend"], concurrency, ours["measured"]]
            ttft_rows.append(head + _side_by_side(direct["ttft"], ours["ttft"]) + [
                f"{direct['errors']}/{ours['errors']}", _per_run_ms(direct, "model")])
            total_rows.append(head + _side_by_side(direct["total"], ours["total"]) + [
                cpu_cell(direct["cpu"], *_ROLES), cpu_cell(ours["cpu"], *_ROLES),
                _per_run_ms(ours, "server")])
            if ours.get("alongside_ttft"):
                total = _side_by_side(ours["alongside_total"], ours["total"])
                beside_rows.append([
                    b["backend"], concurrency,
                    f"{ours['measured']} / {ours['alongside_measured']}",
                    *_side_by_side(ours["alongside_ttft"], ours["ttft"]), total[2], total[5]])
            if direct.get("rest_ttft") and ours.get("rest_ttft"):
                ttft = _side_by_side(direct["rest_ttft"], ours["rest_ttft"])
                total = _side_by_side(direct["rest_total"], ours["rest_total"])
                rest_rows.append([b["backend"], concurrency, ours["rest_measured"], ttft[2],
                                  ttft[5], total[2], total[5]])
    if not ttft_rows:
        return ""
    pacing = shape["pacing"]
    model_ms = shape["model_ms"]
    columns = ["direct p50", "ours p50", "overhead p50", "direct p99", "ours p99",
               "overhead p99"]
    ours_call, ours_event = _OURS[data.get("api", "assistants")]
    client = {"sdk": "the official `openai` SDK (`chat.completions.create(stream=True)` and "
                     f"{ours_call})",
              "httpx": "raw SSE over `httpx` (no SDK)",
              "raw": "SSE bytes scanned for the events that matter, over a minimal HTTP/1.1 "
                     "client (`bench.rawhttp`: no SDK, no parsing)",
              "probes": f"one worker in {PROBE_EVERY} is an application on the official "
                        "`openai` SDK (`chat.completions.create(stream=True)` and "
                        f"{ours_call}), and only those probes are measured "
                        "(\"runs measured\"); the other workers load the server with the same "
                        "runs read as raw SSE bytes (`bench.rawhttp`), so that the load "
                        "generator's SDK parsing does not take the cores the server needs, "
                        "as with applications on machines of their own. The raw workers' "
                        "own timings are in the last table"}[data["client"]]
    how = ("every worker starts at once and each run is measured" if not shape["steady"] else
           "workers start spread over one model time, so about as many runs as the "
           "concurrency are under way at every moment; each worker's first and last runs "
           "(ramping up and down) are not measured, except at concurrency 1")
    text = (f"**{name}**: {how}. Model time per answer: first token after "
            f"{pacing['first_token_delay'] * 1000:g} ms, {pacing['chunks']} words "
            f"{pacing['chunk_delay'] * 1000:g} ms apart (~{model_ms:g} ms).\n\n")
    text += ("Time to first token, ms (direct: first content delta; ours: first "
             f"{ours_event}):\n\n")
    text += table(["backend", "concurrent", "runs measured", *columns, "errors direct/ours",
                   "gauge: fake model CPU ms/answer (direct)"], ttft_rows)
    if beside_rows:
        text += ("\n\nSide by side in the same minute: while ours was measured, as many "
                 "workers again as it measured (same client, same schedule) called the model "
                 "directly, so both paths met the machine in the same state. Time to first "
                 "token, ms, then the overhead to the end of the stream:\n\n")
        text += table(["backend", "concurrent", "runs measured ours / direct", *columns,
                       "end overhead p50", "end overhead p99"], beside_rows)
    text += "\n\nTotal time to the end of the stream, ms:\n\n"
    text += table(["backend", "concurrent", "runs measured", *columns, "cores direct",
                   "cores ours", "server CPU ms/run"], total_rows)
    text += (f"\n\nClient: {client}. Overhead = ours - direct at the same percentile. Cores: "
             "CPU used on average during the phase by our server / the fake model / the load "
             "generator / PostgreSQL / interrupts (mostly loopback networking) / the rest "
             "(other processes), 1.00 being one core busy all the time; then the share of "
             "both cores that was busy. Gauge: the fake model does the same work for every "
             "answer of the direct phase, so its CPU time per answer shows how fast the "
             "machine ran (higher: slower; compare runs on the same machine).")
    if rest_rows:
        text += ("\n\nThe same phases timed by the other workers (raw SSE bytes, no SDK), "
                 "time to first token and to the end, overhead p50 / p99, ms:\n\n")
        text += table(["backend", "concurrent", "runs measured", "first token overhead p50",
                       "first token overhead p99", "end overhead p50", "end overhead p99"],
                      rest_rows)
    return text


_OURS = {"assistants": ("`beta.threads.runs.stream`", "`thread.message.delta`"),
         "responses": ("`responses.create(stream=True)`", "`response.output_text.delta`")}


def _per_run_ms(phase: dict[str, Any], role: str) -> str:
    """CPU milliseconds that ``role`` used per run of the phase."""
    return f"{phase['cpu'][role] * phase['seconds'] / max(phase['runs'], 1) * 1000:.1f}"


def _side_by_side(direct: dict[str, float], ours: dict[str, float]) -> list[float]:
    return [direct["p50"], ours["p50"], ours["p50"] - direct["p50"],
            direct["p99"], ours["p99"], ours["p99"] - direct["p99"]]
