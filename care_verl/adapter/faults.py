"""Named fault-injection points for the reliability tests (docs/reliability.md).

``CARE_VERL_INJECT_FAULTS=name[,name...]`` (forwarded to every Ray worker) turns a point on:

- ``rgr_generate``: every RGR generation request fails where it is sent to the rollout servers
  (``care_verl.adapter.rgr``), as a crashed or overloaded engine would; the step must go on
  without those repairs, counted in ``rgr/failed_generation``.

Unset (the default) every point is a no-op string lookup.
"""

from __future__ import annotations

import os

ENV = "CARE_VERL_INJECT_FAULTS"


class InjectedFault(RuntimeError):
    """Raised at an injection point that ``CARE_VERL_INJECT_FAULTS`` turned on."""


def injected(name: str) -> bool:
    return name in {s.strip() for s in os.environ.get(ENV, "").split(",") if s.strip()}


def maybe_fail(name: str, detail: str = "") -> None:
    if injected(name):
        raise InjectedFault(f"injected fault {name!r} ({ENV}) {detail}".strip())
