"""Named fault-injection points for the reliability tests (docs/reliability.md).

``CARE_VERL_INJECT_FAULTS=name[@step][,name[@step]...]`` (forwarded to every Ray worker and to
the hf rollout server) turns a point on, at every step or only at training step ``step``:

- ``rgr_generate``: the hf rollout server raises for every RGR generation request (inside the
  server's ``generate``, as a crashed engine would); the step must go on without those repairs,
  counted in ``rgr/failed_generation``.
- ``rgr_hang``: the hf rollout server never answers RGR requests (a stuck engine); RGR must give
  up after ``care.rgr.generate_timeout_s`` and count them in ``rgr/timed_out_generation``.
- ``rollout_generate``: the hf rollout server raises for every request (a broken engine); the run
  must stop with the rollout's error named (``care_verl.adapter.rollout.rollout_errors``).

Unset (the default) every point is a no-op string lookup.
"""

from __future__ import annotations

import asyncio
import os

ENV = "CARE_VERL_INJECT_FAULTS"
RGR_REQUEST_PREFIX = "care_rgr_"  # request ids of RGR generations: care_rgr_<step>_<row>
# verl's client replaces request ids with fresh uuids, so while faults are on RGR also passes its
# id to the server under this keyword (never otherwise: vLLM's server takes no extra keywords).
REQUEST_ID_KWARG = "care_request_id"


def active() -> bool:
    """Whether any injection point is turned on."""
    return bool(os.environ.get(ENV, "").strip())


class InjectedFault(RuntimeError):
    """Raised at an injection point that ``CARE_VERL_INJECT_FAULTS`` turned on."""


def injected(name: str, step: int | None = None) -> bool:
    """Whether ``name`` (or ``name@step``) is listed in ``CARE_VERL_INJECT_FAULTS``."""
    names = {s.strip() for s in os.environ.get(ENV, "").split(",") if s.strip()}
    return name in names or (step is not None and f"{name}@{step}" in names)


def maybe_fail(name: str, detail: str = "", step: int | None = None) -> None:
    if injected(name, step):
        raise InjectedFault(f"injected fault {name!r} ({ENV}) {detail}".strip())


def rgr_request_step(request_id: str) -> int | None:
    """The training step of an RGR request id (``care_rgr_<step>_<row>``); None for other requests."""
    if not request_id.startswith(RGR_REQUEST_PREFIX):
        return None
    try:
        return int(request_id[len(RGR_REQUEST_PREFIX):].split("_")[0])
    except ValueError:
        return None


async def rollout_server_faults(request_id: str | None) -> None:
    """The rollout server's injection points (a no-op when none is set): ``rollout_generate`` for every
    request, the ``rgr_*`` ones for RGR requests only."""
    if not active():
        return
    maybe_fail("rollout_generate", "in the rollout server")
    if not request_id:
        return
    step = rgr_request_step(request_id)
    if step is None:
        return
    maybe_fail("rgr_generate", f"in the rollout server, request {request_id}", step)
    if injected("rgr_hang", step):
        await asyncio.sleep(24 * 3600)
