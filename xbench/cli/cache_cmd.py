"""`xbench cache ls|clear|verify`: inspect, clear and fully check the feature cache."""
from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cache", help="list, clear or verify cached backbone features",
                       description="ls: list entries; clear: delete them; verify: read every complete entry in full "
                       "and check each chunk against the digest recorded when it was written (damaged entries are "
                       "marked for re-extraction; exit 1 if any)")
    p.add_argument("action", choices=["ls", "clear", "verify"])
    p.add_argument("--cache", help="cache folder (default: $XBENCH_CACHE or ~/.cache/xbench/features)")
    p.add_argument("--match", help="clear only entries whose backbone/dataset/split/view mention this text")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..cache import FeatureCache
    from ..data.roots import cache_root

    cache = FeatureCache(cache_root(args.cache))
    if args.action == "ls":
        entries = cache.entries()
        if not entries:
            print(f"feature cache {cache.root} is empty")
        total = 0
        for e in entries:
            total += e["bytes"]
            ds = e.get("dataset", {}).get("name", "?") if isinstance(e.get("dataset"), dict) else e.get("dataset")
            print(f"{e['key']}  {e.get('status', '?'):<8} {e.get('backbone', '?'):<32} {ds:<12} "
                  f"{e.get('split', '?'):<6} {str(e.get('view', '?'))[:40]:<40} {e.get('items', 0):>7} items "
                  f"{e['bytes'] / 2**20:9.1f} MiB")
        if entries:
            print(f"{len(entries)} entries, {total / 2**20:.1f} MiB in {cache.root}")
        return 0
    if args.action == "verify":
        n = sum(1 for e in cache.entries() if e.get("status") == "complete")
        damaged = cache.verify()
        for path, problem in damaged:
            print(f"damaged: {path}: {problem}; marked for re-extraction (the next run extracts those chunks again)")
        print(f"verified {n} complete entr{'y' if n == 1 else 'ies'} in {cache.root}: "
              f"{len(damaged)} damaged")
        return 1 if damaged else 0
    n = cache.clear(args.match)
    print(f"removed {n} cache entr{'y' if n == 1 else 'ies'} from {cache.root}")
    return 0
