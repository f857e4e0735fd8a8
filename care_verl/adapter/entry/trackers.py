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


# ---- validation sample table with the prompt image -------------------------------------------
#: Longest side of a prompt thumbnail in the validation table (pixels).
THUMBNAIL_PX = 96


def wants_val_thumbnails(config) -> bool:
    """True when verl logs validation samples (``trainer.log_val_generations``) to wandb or tensorboard."""
    loggers = set(config.trainer.logger or [])
    return bool(config.trainer.get("log_val_generations", 0)) and bool(loggers & {"wandb", "tensorboard"})


def first_image(messages):
    """The first image in a chat prompt (verl's ``raw_prompt``): a PIL image, a path, or None."""
    for message in messages if messages is not None else []:
        content = message.get("content") if isinstance(message, dict) else None
        for part in content if isinstance(content, list | tuple) else []:
            if isinstance(part, dict) and part.get("type") == "image":
                image = part.get("image")
                if image is None and part.get("bytes") is not None:
                    image = part["bytes"]
                return image
    return None


def thumbnail(image, size: int = THUMBNAIL_PX):
    """``image`` (PIL, path or encoded bytes) as an RGB uint8 array [h, w, 3], longest side <= ``size``."""
    import io

    import numpy as np
    from PIL import Image

    if isinstance(image, bytes | bytearray):
        image = Image.open(io.BytesIO(image))
    elif isinstance(image, str | os.PathLike):
        image = Image.open(image)
    image = image.convert("RGB")
    image.thumbnail((size, size))
    return np.asarray(image, dtype=np.uint8)


def images_by_uid(batches: list[dict]) -> dict[str, object]:
    """uid -> first prompt image of that row, from the validation batches verl assigned uids to."""
    images = {}
    for batch in batches:
        for uid, messages in zip(batch.get("uid", []), batch.get("raw_prompt", []), strict=False):
            images[str(uid)] = first_image(messages)
    return images


class PromptText(str):
    """A decoded prompt that carries its row's image through verl's sample selection (sort + shuffle)."""

    image = None

    def __new__(cls, text: str, image):
        obj = super().__new__(cls, text)
        obj.image = image
        return obj


class ThumbnailGenerationsLogger:
    """verl's ``ValidationGenerationsLogger`` plus the prompt image of each sample.

    wandb: ``val/generations`` keeps verl's layout (one row per validation: step, then input/output/
    score per sample) with an ``image_i`` thumbnail after each sample's score. tensorboard: verl's
    text entry, plus one image summary ``val/generations/image_i`` per sample. Other loggers: verl's.
    """

    def __init__(self, verl_logger, tensorboard_dir: str):
        self.verl_logger = verl_logger
        self.tensorboard_dir = tensorboard_dir
        self.rows: list[list] = []  # wandb rows so far (verl re-logs the whole table each time too)

    def log(self, loggers, samples, step):
        loggers = list(loggers)
        plain = [(str(s[0]), *s[1:]) for s in samples]
        self.verl_logger.log([name for name in loggers if name != "wandb"], plain, step)
        thumbs = [None if getattr(s[0], "image", None) is None else thumbnail(s[0].image) for s in samples]
        if "wandb" in loggers:
            import wandb

            columns = ["step"] + [f"{c}_{i + 1}" for i in range(len(samples)) for c in ("input", "output", "score", "image")]
            row = [step]
            for (text, output, score), thumb in zip(plain, thumbs, strict=True):
                row += [text, output, score, None if thumb is None else wandb.Image(thumb)]
            self.rows.append(row)
            if wandb.run is not None:
                wandb.log({"val/generations": wandb.Table(columns=columns, data=self.rows)}, step=step)
        if "tensorboard" in loggers and any(t is not None for t in thumbs):
            writer = _tensorboard_writer(self.tensorboard_dir)
            for i, thumb in enumerate(thumbs):
                if thumb is not None:
                    writer.add_image(f"val/generations/image_{i + 1}", thumb, step, dataformats="HWC")
            writer.flush()


def validate_with_thumbnails(trainer, validate):
    """Run verl's ``_validate`` (``validate``) so that its sample table also gets each prompt's image.

    verl picks the logged samples from decoded prompt texts alone (trainer_base.py:1205); the rows'
    uids, which lead back to their images, reach only ``_val_metrics_update`` (:1197). So this records
    the validation batches and that uid list during ``validate``, holds back verl's table call until
    then, and makes it afterwards with prompts that carry their image.
    """
    batches, held = [], {}
    loader = trainer.val_dataloader

    def recording_loader():
        for batch in loader:
            batches.append(batch)  # verl adds the "uid" column to this same dict right after
            yield batch

    def hold_table(inputs, outputs, scores):
        held.update(inputs=inputs, outputs=outputs, scores=scores)

    metrics_update = trainer._val_metrics_update

    def record_uids(data_sources, sample_uids, *args, **kwargs):
        held["uids"] = list(sample_uids)
        return metrics_update(data_sources, sample_uids, *args, **kwargs)

    trainer.val_dataloader = recording_loader()
    trainer._maybe_log_val_generations = hold_table
    trainer._val_metrics_update = record_uids
    try:
        metrics = validate(trainer)
    finally:
        trainer.val_dataloader = loader
        del trainer._maybe_log_val_generations, trainer._val_metrics_update
    if "inputs" in held:
        images = images_by_uid(batches)
        uids = held.get("uids") or [None] * len(held["inputs"])
        inputs = [PromptText(text, images.get(str(uid))) for text, uid in zip(held["inputs"], uids, strict=True)]
        verl_logger = trainer.validation_generations_logger
        if not isinstance(verl_logger, ThumbnailGenerationsLogger):
            run_dir = trainer.config.get("run", {}).get("dir") if hasattr(trainer.config, "get") else None
            tb_dir = os.environ.get("TENSORBOARD_DIR") or str(Path(run_dir or ".") / "tensorboard")
            trainer.validation_generations_logger = ThumbnailGenerationsLogger(verl_logger, tb_dir)
        trainer._maybe_log_val_generations(inputs, held["outputs"], held["scores"])
    return metrics
