"""A team's own job functions, as an APScheduler job store references them (issue #15 tests)."""

from __future__ import annotations

CALLS: list[tuple] = []


def load_orders(region, full=False, **kwargs):
    CALLS.append(("load_orders", region, full, kwargs))
    return {"region": region, "rows": 3}


def sync(*args, **kwargs):
    CALLS.append(("sync", args, kwargs))
    return len(args)


def fail(**kwargs):
    raise RuntimeError("upstream refused: password=hunter2")


class Reporter:
    def __init__(self, name="daily"):
        self.name = name

    def run(self, day=None):
        CALLS.append(("Reporter.run", self.name, day))

    @classmethod
    def nightly(cls, scope="all"):
        CALLS.append(("Reporter.nightly", scope))
        return scope


class Threshold:  # pickled into a job's kwargs: a class cutover does not read
    def __init__(self, v):
        self.v = v
