"""What indexing a message document costs the search server, with the search mapping as it is and
with every field indexed and kept in doc values (figures, never a timed test).

    python -m bench.index_cost                      # its own local search server (osmem-server)
    python -m bench.index_cost --documents 100000 --every 10000

The same message documents as the live agent writes (all fields of ``projections/search.py``, one
bulk of B documents at a time with ``refresh=true`` and external versions) go into two fresh
indexes in turn, one bulk each: ``current`` (``infra/search_indexes.MAPPINGS["messages"]``) and
``all indexed`` (the same fields with the defaults of their types). Printed per block of documents:
the server's CPU per document (``/proc/<pid>/stat``) and the wall time per document, for each
mapping, and their ratio. The CPU is the server's alone, so it is a figure of the mapping, not of
the platform.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import urllib.request
import uuid
from typing import Any

from bench.load.driver import process_cpu_s
from infra.localstack.ports import free_port
from infra.localstack.servers import ElasticsearchServer
from infra.search_indexes import MAPPINGS

FILLER = "the quick brown fox jumps over the lazy dog"


def all_indexed(mapping: dict[str, Any]) -> dict[str, Any]:
    """``mapping`` with every field indexed and kept in doc values (its type's defaults)."""
    return {
        "properties": {
            name: {k: v for k, v in spec.items() if k not in ("index", "doc_values")}
            for name, spec in mapping["properties"].items()
        }
    }


def message_document(n: int) -> tuple[str, dict[str, Any]]:
    message_id = str(uuid.uuid4())
    return message_id, {
        "message_id": message_id,
        "conversation_id": f"conversation-{n % 16}",
        "sender_id": str(uuid.uuid4()),
        "seq": n,
        "body": f"load {n % 16} {n} {FILLER}",
        "sent_at": "2026-12-04T10:00:00.123456+00:00",
        "deleted": False,
        "stream_id": f"conversation-{n % 16}",
        "stream_version": n,
        "correlation_id": str(uuid.uuid4()),
    }


class Server:
    def __init__(self, url: str) -> None:
        self.url = url

    def request(self, method: str, path: str, body: bytes, content_type: str = "application/json") -> Any:
        req = urllib.request.Request(f"{self.url}{path}", data=body, method=method)
        req.add_header("content-type", content_type)
        with urllib.request.urlopen(req, timeout=60) as resp:
            return json.loads(resp.read() or b"{}")

    def bulk(self, index: str, docs: list[tuple[str, dict[str, Any]]], first_version: int) -> None:
        lines: list[str] = []
        for i, (doc_id, source) in enumerate(docs):
            meta = {"_index": index, "_id": doc_id, "version": first_version + i, "version_type": "external"}
            lines += [json.dumps({"index": meta}), json.dumps(source)]
        answer = self.request("PUT", "/_bulk?refresh=true", ("\n".join(lines) + "\n").encode(), "application/x-ndjson")
        if answer.get("errors"):
            raise RuntimeError(f"bulk refused: {answer['items'][0]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.index_cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--documents", type=int, default=30_000, help="documents per mapping (default 30000)")
    parser.add_argument("--bulk", type=int, default=45, help="documents per bulk request (default 45)")
    parser.add_argument("--every", type=int, default=10_000, help="print a line per this many (default 10000)")
    args = parser.parse_args(argv)

    port = free_port()
    proc = subprocess.Popen(
        [str(ElasticsearchServer().binary()), "-addr", f"127.0.0.1:{port}", "-no-stdin-watch"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        server = Server(f"http://127.0.0.1:{port}")
        for _ in range(100):
            try:
                server.request("GET", "/", b"")
                break
            except OSError:
                time.sleep(0.1)
        mappings = {"current": MAPPINGS["messages"], "all indexed": all_indexed(MAPPINGS["messages"])}
        for name, mapping in mappings.items():
            server.request("PUT", f"/{name.replace(' ', '-')}", json.dumps({"mappings": mapping}).encode())
        cpu = dict.fromkeys(mappings, 0.0)
        wall = dict.fromkeys(mappings, 0.0)
        print(f"{'documents':>10}  {'mapping':<12} {'CPU ms/doc':>10} {'wall ms/doc':>11}")
        done = block = 0
        while done < args.documents:
            size = min(args.bulk, args.documents - done)
            docs = [message_document(done + i) for i in range(size)]
            for name in mappings:  # the same documents, alternately, so both see the same machine
                before, started = process_cpu_s(proc.pid), time.perf_counter()
                server.bulk(name.replace(" ", "-"), docs, done + 1)
                wall[name] += time.perf_counter() - started
                after = process_cpu_s(proc.pid)
                if before is not None and after is not None:
                    cpu[name] += after - before
            done, block = done + size, block + size
            if block >= args.every or done == args.documents:
                for name in mappings:
                    print(
                        f"{done:>10,}  {name:<12} {cpu[name] * 1000 / block:>10.3f} {wall[name] * 1000 / block:>11.3f}"
                    )
                if cpu["current"] > 0:
                    print(f"{'':>10}  CPU all indexed / current = {cpu['all indexed'] / cpu['current']:.2f}")
                cpu, wall, block = dict.fromkeys(mappings, 0.0), dict.fromkeys(mappings, 0.0), 0
    finally:
        proc.kill()
        proc.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
