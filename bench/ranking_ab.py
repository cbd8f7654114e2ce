"""The portfolio's ranking, old code against this tree's, in one process, alternating: `list` and the
App Home of the AM with most accounts, `list all` and the director's App Home, built in-process on a
filled database whose standings are stored (e.g. portfolio_views' 10k file, or a clone of bench10k
upgraded and refreshed). The old bot/standing.py and bot/dashboard.py are read from git at --old
(default 627fea6: Python sorted every account's standing row); each view's old and new replies must be
identical.

    .venv/bin/python bench/ranking_ab.py URL [--old REV] [--old-url URL] [--rounds 20]

--old-url runs the old code on another copy of the database (e.g. one a migration behind, without the
new code's indexes); each view's replies must still be identical.

Prints p50 / p99 ms of each view, old and new, and old/new. The database is only read.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import func, select

import bot
from bench.status_latency import NOW
from bot import dashboard as new_dashboard
from bot import standing as new_standing
from bot.access import Viewer
from bot.health import DEFAULT_THRESHOLDS
from bot.views import portfolio
from store.db import make_engine, make_sessionmaker
from store.models import MemberRole, Person, Retainer, RetainerMember, Role, Stage


def old_modules(rev: str, into: Path) -> Any:
    """bot/standing.py and bot/dashboard.py at `rev`, loaded beside this tree's (the old dashboard's
    `from bot import standing` bound to the old standing)."""
    loaded = {}
    for name in ("standing", "dashboard"):
        path = into / f"old_{name}.py"
        source = subprocess.run(["git", "show", f"{rev}:bot/{name}.py"], capture_output=True, check=True)
        path.write_bytes(source.stdout)
        spec = importlib.util.spec_from_file_location(f"old_{name}", path)
        assert spec is not None and spec.loader is not None
        module = loaded[name] = importlib.util.module_from_spec(spec)
        sys.modules[f"old_{name}"] = module
        sys.modules["bot.standing"], bot.standing = loaded["standing"], loaded["standing"]
        try:
            spec.loader.exec_module(module)
        finally:
            sys.modules["bot.standing"], bot.standing = new_standing, new_standing
    return loaded["dashboard"]


def quantile(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p * (len(xs) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--old", default="627fea6")
    parser.add_argument("--old-url", help="the database the old code reads (default: URL)")
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    sessions = make_sessionmaker(make_engine(args.url))
    old_sessions = make_sessionmaker(make_engine(args.old_url)) if args.old_url else sessions
    with sessions() as s:
        am_id, accounts = s.execute(
            select(RetainerMember.person_id, func.count())
            .where(RetainerMember.role == MemberRole.AM)
            .group_by(RetainerMember.person_id)
            .order_by(func.count().desc(), RetainerMember.person_id)
            .limit(1)
        ).one()
        d = s.scalars(select(Person).where(Person.role == Role.DIRECTOR).order_by(Person.id)).first()
        assert d is not None
        director = Viewer("slack", d.slack_user_id or "", True, d.id, d.name, d.role)
        a = s.get(Person, am_id)
        assert a is not None
        am = Viewer("slack", a.slack_user_id or "", True, a.id, a.name, a.role)
    live = select(Retainer.id).where(Retainer.stage != Stage.ENDED)
    mine = live.where(
        Retainer.id.in_(select(RetainerMember.retainer_id).where(RetainerMember.person_id == am_id))
    )
    print(
        f"{args.url}: the AM with most accounts has {accounts}; old is {args.old}"
        + (f" on {args.old_url}" if args.old_url else ""),
        flush=True,
    )
    on = {"old": old_sessions, "new": sessions}

    def views(dash: Any) -> dict[str, Any]:
        return {
            "list (AM)": lambda s: portfolio(
                "Yours", dash.load_ranking(s, mine, NOW, DEFAULT_THRESHOLDS), "-"
            ),
            "list all": lambda s: portfolio(
                "All", dash.load_ranking(s, live, NOW, DEFAULT_THRESHOLDS), "-", with_am=True
            ),
            "director home": lambda s: dash.home(s, director, NOW),
            "AM home": lambda s: dash.home(s, am, NOW),
        }

    with tempfile.TemporaryDirectory() as tmp:
        impls = {"old": views(old_modules(args.old, Path(tmp))), "new": views(new_dashboard)}
        times: dict[tuple[str, str], list[float]] = {(v, k): [] for k in impls for v in impls["new"]}
        for view in impls["new"]:
            with old_sessions() as o, sessions() as s:
                assert impls["old"][view](o) == impls["new"][view](s), f"{view}: old and new replies differ"
        print("each view's old and new replies are identical", flush=True)
        for r in range(args.rounds):
            for view in impls["new"]:
                for kind in ("old", "new") if r % 2 == 0 else ("new", "old"):
                    with on[kind]() as s:
                        start = time.perf_counter()
                        impls[kind][view](s)
                        times[view, kind].append((time.perf_counter() - start) * 1000)
    for view in impls["new"]:
        old, new = times[view, "old"], times[view, "new"]
        print(
            f"{view:14} old p50 {quantile(old, 0.5):7.1f} p99 {quantile(old, 0.99):7.1f} | new p50 "
            f"{quantile(new, 0.5):7.1f} p99 {quantile(new, 0.99):7.1f} ms | old/new p50 "
            f"{statistics.median(old) / statistics.median(new):.1f}x"
        )


if __name__ == "__main__":
    main()
