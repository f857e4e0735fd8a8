"""The validation sample table carries each sample's own prompt image (wandb, tensorboard).

verl's real sample selection (``PPOTrainer._maybe_log_val_generations``: sort by prompt, seeded
shuffle, first N) and verl's real ``ValidationGenerationsLogger`` run here; the trainer around them is
a stand-in (no Ray/rollout needed to check the matching) whose ``_validate`` does what verl's does
with the rows: assigns uids to the loader's batch dicts and returns the samples in another order
than the batch's, as the replay buffer may. The full loop is checked in test_cli_sweep.py.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from care_verl.adapter.entry.trackers import (
    THUMBNAIL_PX,
    ThumbnailGenerationsLogger,
    first_image,
    images_by_uid,
    thumbnail,
    validate_with_thumbnails,
    wants_val_thumbnails,
)

RED, BLUE = (255, 0, 0), (0, 0, 255)


def prompt(text: str, color) -> list[dict]:
    image = Image.new("RGB", (200, 100), color)
    return [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": text}]}]


def rows(*items) -> np.ndarray:
    """An object array of per-row values, as verl's collate makes of non-tensor columns."""
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array


def test_thumbnail_is_small_rgb_and_keeps_the_aspect():
    thumb = thumbnail(Image.new("L", (400, 200), 128))
    assert thumb.shape == (THUMBNAIL_PX // 2, THUMBNAIL_PX, 3) and thumb.dtype == np.uint8


def test_first_image_and_uid_map_pair_each_row_with_its_own_image():
    batch = {"uid": np.array(["a", "b"], dtype=object),
             "raw_prompt": rows(prompt("red?", RED), prompt("blue?", BLUE))}
    images = images_by_uid([batch])
    assert thumbnail(images["a"])[0, 0].tolist() == list(RED)
    assert thumbnail(images["b"])[0, 0].tolist() == list(BLUE)
    assert first_image([{"role": "user", "content": "text only"}]) is None


def test_only_on_with_wandb_or_tensorboard_and_samples_requested():
    def cfg(loggers, n):
        return OmegaConf.create({"trainer": {"logger": loggers, "log_val_generations": n}})

    assert wants_val_thumbnails(cfg(["console", "wandb"], 4))
    assert wants_val_thumbnails(cfg(["tensorboard"], 4))
    assert not wants_val_thumbnails(cfg(["console", "file"], 4))
    assert not wants_val_thumbnails(cfg(["wandb"], 0))


class RecordingLogger:
    """Stands in for verl's ValidationGenerationsLogger to see what the table receives."""

    def __init__(self):
        self.calls = []

    def log(self, loggers, samples, step):
        self.calls.append((list(loggers), samples, step))


class StandInTrainer:
    """The parts of verl's v1 trainer that validate_with_thumbnails touches (see module docstring)."""

    def __init__(self, tmp_path, loggers):
        from verl.trainer.ppo.v1.trainer_base import PPOTrainer

        self._real_select = PPOTrainer._maybe_log_val_generations
        self.config = OmegaConf.create({"trainer": {"logger": loggers, "log_val_generations": 2},
                                        "run": {"dir": str(tmp_path)}})
        self.global_steps = 3
        self.val_dataloader = [{"raw_prompt": rows(prompt("what color? A", RED),
                                                          prompt("what color? B", BLUE))}]
        self.validation_generations_logger = RecordingLogger()

    def _maybe_log_val_generations(self, inputs, outputs, scores):
        return self._real_select(self, inputs, outputs, scores)

    def _val_metrics_update(self, data_sources, sample_uids, *rest):
        return {"val/n": len(sample_uids)}

    def validate(self):
        uids = []
        for batch in self.val_dataloader:
            batch["uid"] = np.array(["u-red", "u-blue"], dtype=object)
            uids = list(batch["uid"])[::-1]  # the replay buffer hands rows back in another order
        texts = {"u-red": "what color? A", "u-blue": "what color? B"}
        self._maybe_log_val_generations([texts[u] for u in uids], [f"out {u}" for u in uids], [1.0, 0.0])
        return self._val_metrics_update(["d"] * 2, uids)


def test_each_logged_sample_gets_its_own_image(tmp_path, monkeypatch):
    # an in-process main() of another test may have set TENSORBOARD_DIR for this process
    monkeypatch.setenv("TENSORBOARD_DIR", str(tmp_path / "tensorboard"))
    loggers = ["console", "tensorboard"]
    trainer = StandInTrainer(tmp_path, loggers)
    metrics = validate_with_thumbnails(trainer, StandInTrainer.validate)
    assert metrics == {"val/n": 2}
    assert isinstance(trainer.val_dataloader, list)  # restored
    wrapper = trainer.validation_generations_logger
    assert isinstance(wrapper, ThumbnailGenerationsLogger)
    [(names, samples, step)] = wrapper.verl_logger.calls  # verl still gets plain text samples
    assert step == 3 and names == loggers and len(samples) == 2
    assert all(type(s[0]) is str for s in samples)

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"images": 0})
    acc.Reload()
    for i, (text, output, _) in enumerate(samples):
        [event] = acc.Images(f"val/generations/image_{i + 1}")
        pixel = np.asarray(Image.open(io.BytesIO(event.encoded_image_string)).convert("RGB"))[0, 0]
        expected = RED if text.endswith("A") else BLUE
        assert output == ("out u-red" if expected == RED else "out u-blue")
        assert pixel.tolist() == list(expected), f"sample {i} ({text!r}) shows the other prompt's image"
        assert max(event.width, event.height) <= THUMBNAIL_PX


def test_wandb_table_rows_carry_an_image_per_sample(tmp_path, monkeypatch):
    import wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "wandb_data"))  # stage artifacts here, not in ~
    run = wandb.init(project="t", dir=str(tmp_path))
    try:
        logged = {}
        monkeypatch.setattr(wandb, "log", lambda data, step=None: logged.update(data, step=step))
        trainer = StandInTrainer(tmp_path, ["wandb"])
        validate_with_thumbnails(trainer, StandInTrainer.validate)
        table = logged["val/generations"]
        assert table.columns == ["step", "input_1", "output_1", "score_1", "image_1",
                                 "input_2", "output_2", "score_2", "image_2"]
        [row] = table.data
        for i in range(2):
            text, image = row[1 + 4 * i], row[4 + 4 * i]
            assert isinstance(image, wandb.Image)
            pixel = np.asarray(image.image.convert("RGB"))[0, 0].tolist()
            assert pixel == list(RED if text.endswith("A") else BLUE)
        # wandb is not passed on to verl's own table (it would log a second, imageless val/generations)
        assert trainer.validation_generations_logger.verl_logger.calls[0][0] == []
    finally:
        run.finish()


def test_patch_wraps_verls_validate_only_for_wandb_or_tensorboard(tmp_path):
    """The patch (runtime/patches.py) routes verl's real ``_validate`` through the recorder only when wanted."""
    from verl.trainer.ppo.v1.trainer_base import PPOTrainer

    from care_verl.adapter.runtime.patches import patch_val_generations_thumbnails

    patch_val_generations_thumbnails()
    assert PPOTrainer._validate.__care_verl_patched__
    assert PPOTrainer._validate.__wrapped__.__module__ == "verl.trainer.ppo.v1.trainer_base"

    class Stop(Exception):
        pass

    seen = []

    class Loader:  # verl's _validate iterates the loader first; stop there and note who is iterating
        def __init__(self, trainer):
            self.trainer = trainer

        def __iter__(self):
            seen.append("_maybe_log_val_generations" in vars(self.trainer))
            raise Stop

    for loggers, recorded in ((["console", "file"], False), (["console", "wandb"], True)):
        trainer = StandInTrainer(tmp_path, loggers)
        trainer.val_dataloader = Loader(trainer)
        with pytest.raises(Stop):
            PPOTrainer._validate(trainer)
        assert seen[-1] is recorded
        assert isinstance(trainer.val_dataloader, Loader) and "_val_metrics_update" not in vars(trainer)
