#!/usr/bin/env python3
"""Runs N kademlia-dynamic (Python reference) nodes for kad's interop tests.

    py_node.py --codec json|bencode --nodes N [--bootstrap HOST:PORT]... [--query-timeout S]

Starts N nodes on 127.0.0.1 (ports chosen by the OS). Without --bootstrap they form their
own network (every node joins through node 0); with it, every node joins through the given
addresses (a kad network). Then it prints one JSON line

    {"ready": true, "version": "1.1.1", "nodes": [{"node_id": ..., "port": ...}, ...]}

and answers JSON requests, one per line on stdin, with one JSON line on stdout each:

    {"op": "put", "node": i, "key": k, "value": V}       server.set(k, v)
    {"op": "update", "node": i, "key": k, "value": V}    the reference's RPCs without its
                                                          check_store skip (see below)
    {"op": "get", "node": i, "key": k}                   -> {"value": V or null}
    {"op": "local", "node": i, "key": k}                 -> the node's own unexpired copy
    {"op": "find_node", "node": i, "target": hex}        -> {"peers": [...]}
    {"op": "find_value", "node": i, "key": k}            -> {"value": ..., "peers": [...]}
    {"op": "peers", "node": i}                           -> the routing table
    {"op": "quit"}

V is {"text": str} or {"hex": hex of bytes}, so the type of a value survives the trip.
Every answer has "ok": true, or "ok": false and "error". Logs go to stderr.
"""

import argparse
import asyncio
import importlib.metadata
import json
import sys
import time

from kademlia_dynamic import KademliaServer
from kademlia_dynamic.kademlia import StoredValue, hash_key_to_node_id


def encode_value(v):
    if v is None:
        return None
    if isinstance(v, bytes):
        return {"hex": v.hex()}
    return {"text": v}


def decode_value(v):
    if "hex" in v:
        return bytes.fromhex(v["hex"])
    return v["text"]


def peer_list(peers):
    return [p.to_dict() for p in peers]


async def update(server, key, value):
    """Overwrites `key` on the k closest nodes with the reference's own RPCs.

    KademliaServer.set() sends `set` only to peers whose check_store says they lack the
    key, so it never replaces a value that is already stored (docs/PROTOCOL.md, "What kad does differently", 1). This is
    what set() does minus that skip: find the k closest, store locally as the original
    publisher, send `set` to each. It returns how many acknowledged.
    """
    closest = await server.find_node(hash_key_to_node_id(key))
    server.data_store[key] = StoredValue(
        value, is_original_publisher=True,
        expires_at=time.time() + server.key_expiry_seconds,
    )
    results = await asyncio.gather(*[
        server._send_query(p, {"type": "set", "key": key, "value": value}) for p in closest
    ])
    return sum(1 for r in results if r is not None)


async def handle(nodes, req):
    op = req["op"]
    server = nodes[req.get("node", 0)]
    if op == "put":
        await server.set(req["key"], decode_value(req["value"]))
        return {}
    if op == "update":
        acked = await update(server, req["key"], decode_value(req["value"]))
        return {"acked": acked}
    if op == "get":
        return {"value": encode_value(await server.get(req["key"]))}
    if op == "local":
        entry = server.data_store.get(req["key"])
        value = entry.value if entry is not None and not entry.is_expired() else None
        return {"value": encode_value(value)}
    if op == "find_node":
        return {"peers": peer_list(await server.find_node(req["target"]))}
    if op == "find_value":
        value, peers = await server.find_value(req["key"])
        return {"value": encode_value(value), "peers": peer_list(peers)}
    if op == "peers":
        return {"peers": peer_list(server.routing_table.all_peers())}
    raise ValueError(f"unknown op {op!r}")


def parse_addr(s):
    host, _, port = s.rpartition(":")
    return host.strip("[]"), int(port)


async def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--codec", default="json", choices=["json", "bencode"])
    ap.add_argument("--nodes", type=int, default=20)
    ap.add_argument("--bootstrap", action="append", default=[], metavar="HOST:PORT")
    ap.add_argument("--query-timeout", type=float, default=2.0)
    args = ap.parse_args()

    nodes = []
    for _ in range(args.nodes):
        server = KademliaServer(serialization=args.codec, query_timeout=args.query_timeout)
        await server.listen(0)
        nodes.append(server)
    external = [parse_addr(a) for a in args.bootstrap]
    for i, server in enumerate(nodes):
        if external:
            await server.bootstrap(external)
        elif i > 0:
            await server.bootstrap([("127.0.0.1", nodes[0].own_peer.port)])

    ready = {
        "ready": True,
        "version": importlib.metadata.version("kademlia-dynamic"),
        "nodes": [{"node_id": s.own_peer.node_id, "port": s.own_peer.port} for s in nodes],
    }
    print(json.dumps(ready), flush=True)

    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        line = line.strip()
        if not line:
            continue
        try:
            req = json.loads(line)
            if req.get("op") == "quit":
                break
            answer = {"ok": True}
            answer.update(await handle(nodes, req))
        except Exception as e:  # report, keep serving
            answer = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        print(json.dumps(answer), flush=True)

    for server in nodes:
        server.stop()


if __name__ == "__main__":
    asyncio.run(main())
