"""How `python -m care_verl.main` recognises a dead Ray worker in the error verl re-raises."""

import pytest
from ray import exceptions as rex

from care_verl.adapter.entry.main import first_line, ray_worker_death


def _wrapped(cause: BaseException) -> BaseException:
    """What the driver receives when a task (verl's TaskRunner) failed because of ``cause``."""
    return rex.RayTaskError("TaskRunnerV1.run", "Traceback ...", cause).as_instanceof_cause()


def test_the_innermost_actor_death_is_found_through_ray_wrapping():
    died = rex.ActorDiedError()
    found = ray_worker_death(_wrapped(died))
    assert found is died
    assert "actor died" in first_line(found).lower()


def test_a_death_inside_an_ordinary_exception_chain_is_found():
    died = rex.ActorDiedError()
    try:
        try:
            raise died
        except rex.ActorDiedError as exc:
            raise RuntimeError("step failed") from exc
    except RuntimeError as outer:
        assert ray_worker_death(outer) is died


@pytest.mark.parametrize("exc", [RuntimeError("boom"), _wrapped(ValueError("bad value"))])
def test_other_errors_are_not_taken_for_a_worker_death(exc):
    assert ray_worker_death(exc) is None


def test_first_line_drops_colour_codes_and_blank_lines():
    assert first_line(RuntimeError("\n\x1b[36mray::Worker\x1b[39m failed\nmore")) == "ray::Worker failed"
