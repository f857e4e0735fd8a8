"""Experiment trackers: wandb online or offline, and where a run's outputs went.

wandb: when ``trainer.logger`` has ``wandb`` and ``WANDB_MODE`` is not set, the run is online if the
user is logged in (``WANDB_API_KEY`` set, or ``wandb login`` wrote the key to ``~/.netrc`` /
``$NETRC`` for the wandb host) and offline otherwise (``wandb sync run.dir/wandb/offline-run-*``
uploads it later). One line says which. An explicit ``WANDB_MODE`` (the tests and the CPU demo
set ``offline``/``disabled``) always wins.
"""

from __future__ import annotations

import netrc
import os
from pathlib import Path
from urllib.parse import urlparse

DEFAULT_WANDB_HOST = "https://api.wandb.ai"


def wandb_logged_in(environ: dict | None = None) -> bool:
    """True when wandb has an API key: ``WANDB_API_KEY``, or a netrc entry for the wandb host."""
    environ = os.environ if environ is None else environ
    if environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(environ.get("WANDB_BASE_URL") or DEFAULT_WANDB_HOST).hostname or "api.wandb.ai"
    path = environ.get("NETRC") or str(Path("~/.netrc").expanduser())
    try:
        return netrc.netrc(path).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def choose_wandb_mode(loggers, environ: dict | None = None) -> str | None:
    """Set ``WANDB_MODE`` in ``environ`` for a run logging to ``loggers``; returns the notice to print.

    ``None`` (and no change) when wandb is not a logger.
    """
    environ = os.environ if environ is None else environ
    if "wandb" not in list(loggers or []):
        return None
    if environ.get("WANDB_MODE"):
        return f"care_verl: wandb mode {environ['WANDB_MODE']} (WANDB_MODE is set)"
    if wandb_logged_in(environ):
        environ["WANDB_MODE"] = "online"
        return "care_verl: wandb online (logged in); the run's page is printed by wandb below"
    environ["WANDB_MODE"] = "offline"
    return ("care_verl: wandb offline (not logged in: no WANDB_API_KEY, no `wandb login`); "
            "upload later with `wandb sync <run.dir>/wandb/offline-run-*`")


def where_outputs(config) -> str:
    """The lines printed at the end of a run: run dir, metrics, checkpoints and each tracker's files."""
    run_dir = Path(config.run.dir)
    loggers = list(config.trainer.logger or [])
    lines = [f"  run dir:     {run_dir}",
             f"  metrics:     {os.environ.get('VERL_FILE_LOGGER_PATH', run_dir / 'metrics.jsonl')}"
             if "file" in loggers else None,
             f"  checkpoints: {config.trainer.default_local_dir}"]
    if "tensorboard" in loggers:
        tb = os.environ.get("TENSORBOARD_DIR", run_dir / "tensorboard")
        lines.append(f"  tensorboard: {tb}   (tensorboard --logdir {tb})")
    if "wandb" in loggers:
        mode = os.environ.get("WANDB_MODE", "online")
        where = Path(os.environ.get("WANDB_DIR", run_dir)) / "wandb"
        hint = "  (wandb sync to upload)" if mode == "offline" else ""
        lines.append(f"  wandb ({mode}): project {config.trainer.project_name}, run "
                     f"{config.trainer.experiment_name}, files in {where}{hint}")
    return "\n".join(line for line in lines if line)


#: RGR examples kept per step in the trackers' table (the first repaired rows of the batch).
RGR_EXAMPLES_PER_STEP = 4
RGR_COLUMNS = ["step", "row", "failed response", "repaired response", "verdict", "score"]
_tensorboard_writers: dict[str, object] = {}


def log_rgr_examples(config, examples: list[dict], step: int) -> None:
    """Per-step RGR examples (failed response, repaired response, verdict) to each selected tracker.

    wandb: a table ``rgr/examples``; tensorboard: a text entry ``rgr/examples``; file:
    ``run.dir/rgr_examples.jsonl``. Runs in the trainer's process, where verl's Tracking started wandb.
    """
    import json

    loggers = list(config.trainer.logger or [])
    rows = [{"step": step, **e} for e in examples[:RGR_EXAMPLES_PER_STEP]]
    run_dir = config.get("run", {}).get("dir") if hasattr(config, "get") else None
    if "file" in loggers and run_dir:
        with open(Path(run_dir) / "rgr_examples.jsonl", "a") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
    if "wandb" in loggers:
        import wandb

        if wandb.run is not None:
            table = wandb.Table(columns=RGR_COLUMNS, data=[[r[c.split()[0]] for c in RGR_COLUMNS] for r in rows])
            wandb.log({"rgr/examples": table}, step=step)
    if "tensorboard" in loggers:
        writer = _tensorboard_writer(os.environ.get("TENSORBOARD_DIR") or str(Path(run_dir or ".") / "tensorboard"))
        text = "\n\n".join(f"**row {r['row']} ({r['verdict']}, score {r['score']:.2f})**\n\n"
                           f"failed: `{r['failed']}`\n\nrepaired: `{r['repaired']}`" for r in rows)
        writer.add_text("rgr/examples", text, step)
        writer.flush()


def _tensorboard_writer(log_dir: str):
    if log_dir not in _tensorboard_writers:
        from torch.utils.tensorboard import SummaryWriter

        os.makedirs(log_dir, exist_ok=True)
        _tensorboard_writers[log_dir] = SummaryWriter(log_dir=log_dir)
    return _tensorboard_writers[log_dir]
