"""`vhsm cluster init|join|status`: nodes that share one key table in PostgreSQL (docs/cluster.md)."""
from __future__ import annotations

import argparse
import os
from typing import Any, Callable

from vhsm import cluster
from vhsm.cli.commands import _table, command
from vhsm.cli.shell import REFUSED, Parser, Shell, UsageError
from vhsm.store import StoreError


def _open(url: str, create: bool = False) -> Any:
    from vhsm.pgstore import PgStore, is_store_url
    if not is_store_url(url):
        raise UsageError(f"--store takes a postgresql:// URL, not {url!r}")
    return PgStore(url, create=create)


def _summary(store: Any) -> dict:
    return {"store": store.name, "schema": store.schema_version(), "serial": store.get_meta("serial"),
            "ftk_kcv": store.get_meta("ftk_kcv"), "keys": store.count_keys()}


def _guard(run: Callable[[Shell, argparse.Namespace], int | None]) -> Callable:
    """A database that cannot be reached is a refusal with its reason, not a traceback."""
    def guarded(sh: Shell, a: argparse.Namespace) -> int | None:
        try:
            return run(sh, a)
        except StoreError as e:
            print(f"vhsm: {e}", file=sh.err)
            return REFUSED
    return guarded


@command("cluster init", "create (or migrate) the cluster schema in PostgreSQL; this state becomes its first node",
         needs_device=False)
def _cluster_init(p: Parser) -> Callable:
    p.add_argument("--store", required=True, metavar="postgresql://USER@HOST:PORT/DB")

    def run(sh: Shell, a: argparse.Namespace) -> None:
        from vhsm import factory
        store = _open(a.store, create=True)
        try:
            factory.ensure_initialized(store)
            info = _summary(store)
        finally:
            store.close()
        cluster.write_store_url(sh.state_dir, a.store)
        sh.show(info, lambda d: f"cluster store {d['store']} ready (schema version {d['schema']}, device "
                                f"{d['serial']}); {sh.state_dir} is a node of it")
    return _guard(run)


@command("cluster join", "make this state directory a node of an existing cluster", needs_device=False)
def _cluster_join(p: Parser) -> Callable:
    p.add_argument("--store", required=True, metavar="postgresql://USER@HOST:PORT/DB")

    def run(sh: Shell, a: argparse.Namespace) -> None:
        from vhsm.majorkeys import SecureMemory
        store = _open(a.store)
        try:
            if store.get_meta("serial") is None:
                raise UsageError(f"{store.name} has the schema but no device yet: run `vhsm cluster init` first")
            info = _summary(store)
        finally:
            store.close()
        cluster.write_store_url(sh.state_dir, a.store)
        ftk = SecureMemory(sh.state_dir).load_ftk()
        info["node_ftk_kcv"] = ftk.kcv if ftk else None
        if info["ftk_kcv"] is None:
            note = "the cluster has no FTK yet"
        elif ftk is None:
            note = (f"load the cluster's FTK (KCV {info['ftk_kcv']}) here with `majorkey recombine` "
                    "before serving keys")
        elif ftk.kcv != info["ftk_kcv"]:
            note = (f"this node's FTK (KCV {ftk.kcv}) is not the cluster's (KCV {info['ftk_kcv']}): "
                    "it will refuse key commands until the cluster's FTK is recombined here")
        else:
            note = f"FTK KCV {ftk.kcv} matches the cluster's"
        info["note"] = note
        if os.path.exists(os.path.join(sh.state_dir, "vhsm.db")):
            note += f"; {sh.state_dir}/vhsm.db is no longer used"
        sh.show(info, lambda d: f"{sh.state_dir} joined cluster {d['store']} (device {d['serial']}, "
                                f"{d['keys']} keys); {note}")
    return _guard(run)


@command("cluster status", "show the cluster's nodes: address, FTK KCV, last heartbeat, load", needs_device=False)
def _cluster_status(p: Parser) -> Callable:
    p.add_argument("--store", metavar="postgresql://USER@HOST:PORT/DB",
                   help="the cluster's database (default: the one this state directory belongs to)")

    def run(sh: Shell, a: argparse.Namespace) -> None:
        url = a.store or cluster.store_url(sh.state_dir)
        if url is None:
            raise UsageError(f"{sh.state_dir} is not a cluster node; give --store URL")
        store = _open(url)
        try:
            info = _summary(store)
            nodes = store.list_nodes()
        finally:
            store.close()
        rows = []
        for n in nodes:
            age = float(n["age"])
            kcv = n["ftk_kcv"] or "none"
            if info["ftk_kcv"] and n["ftk_kcv"] != info["ftk_kcv"]:
                kcv += " (not the cluster's: refuses keys)"
            rows.append({"node": n["name"], "address": n["address"], "ftk_kcv": kcv,
                         "heartbeat": f"{age:.1f} s ago", "load": f"{n['load']:g} cmd/s",
                         "commands": n["commands"], "state": "up" if age <= cluster.STALE_AFTER else "down",
                         "pid": n["pid"], "age": round(age, 1)})
        info["nodes"] = rows

        def text(d: dict) -> str:
            head = (f"cluster {d['store']}: device {d['serial']}, schema {d['schema']}, "
                    f"FTK KCV {d['ftk_kcv'] or 'none'}, {d['keys']} keys")
            return head + "\n" + _table(d["nodes"], ["address", "ftk_kcv", "heartbeat", "load", "state"])
        sh.show(info, text)
    return _guard(run)
