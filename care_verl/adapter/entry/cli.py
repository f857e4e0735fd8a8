"""Hydra's command-line flags on ``python -m care_verl.main``, with Hydra's own parser and printers.

``python -m care_verl.main`` is not a ``@hydra.main`` app (it picks ``runtime=cpu`` itself, checks
the config before Ray starts, and runs sweeps as separate processes), but it takes the flags a verl
user types, parsed by Hydra's argument parser and printed by Hydra's own code:

- ``--cfg job|hydra|all`` (``--resolve``, ``--package/-p``): the composed config, as Hydra prints
  it, then exit 0. It is the *composed* config: ``tiny:`` models and ``synthetic://`` data are
  shown as written, not built (that happens when a run starts), and nothing else starts.
- ``--info [all|config|defaults|defaults-tree|plugins|searchpath]``: Hydra's report.
- ``--help``: the recipes, the runtime group and every ``care.*`` key with its help text
  (Hydra's app help with care_verl's template); ``--hydra-help``: Hydra's own.
- ``-m/--multirun``: the sweep (:mod:`care_verl.sweep`).

As in Hydra, ``--resolve`` without ``--cfg``/``--help`` and two of ``--cfg``, ``--info``, ``-m``,
``--run`` together are errors; the exit status is 2 for every usage or configuration error.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Iterator

from care_verl.adapter.entry.validate import ConfigError

UNSUPPORTED = ("config_path", "config_name", "config_dir", "shell_completion", "experimental_rerun")


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Hydra's own argument parser (``hydra._internal.utils.get_args_parser``), with care_verl's checks.

    Raises :class:`ConfigError` for flag combinations Hydra refuses and for Hydra flags that
    select another primary config (care_verl composes ``hydra_configs/care_trainer.yaml``).
    """
    from hydra._internal.utils import get_args_parser

    parser = get_args_parser()
    parser.prog = "python -m care_verl.main"
    args = parser.parse_intermixed_args(argv)  # flags may come after overrides, as users type them
    for name in UNSUPPORTED:
        if getattr(args, name, None):
            flag = "--" + name.replace("_", "-")
            raise ConfigError(f"{flag} is not supported by care_verl.main (its configs are hydra_configs/; "
                              "set CARE_VERL_HYDRA_CONFIGS to use another directory)")
    if args.resolve and args.cfg is None and not args.help:
        raise ConfigError("The --resolve flag can only be used in conjunction with --cfg or --help")
    if args.package and args.cfg is None:
        raise ConfigError("--package can only be used in conjunction with --cfg")
    commands = args.run + (args.cfg is not None) + args.multirun + (args.info is not None)
    if commands > 1:
        raise ConfigError("Only one of --run, --multirun, --cfg and --info can be specified")
    return args


def make_hydra(config_dir: Path):
    """Hydra's application object over ``config_dir`` (what ``@hydra.main`` builds internally)."""
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_config_search_path
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    return Hydra.create_main_hydra2(task_name="care_verl", config_search_path=create_config_search_path(str(config_dir)))


def show_cfg(config_dir: Path, overrides: list[str], cfg_type: str, package: str | None, resolve: bool) -> None:
    """Print the composed config exactly as Hydra's ``--cfg`` does."""
    from hydra.core.global_hydra import GlobalHydra

    try:
        make_hydra(config_dir).show_cfg(config_name="care_trainer", overrides=overrides, cfg_type=cfg_type,
                                        package=package, resolve=resolve)
    finally:
        GlobalHydra.instance().clear()


def show_info(config_dir: Path, overrides: list[str], info: str) -> None:
    """Hydra's ``--info`` report (search path, defaults list/tree, plugins, config)."""
    import logging

    from hydra.core.global_hydra import GlobalHydra

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        make_hydra(config_dir).show_info(info, config_name="care_trainer", overrides=overrides)
    finally:
        GlobalHydra.instance().clear()
        root.handlers[:], root.level = handlers, level  # Hydra points the root logger at stdout for its report


def hydra_help(config_dir: Path, argv_overrides: list[str]) -> None:
    """Hydra's own ``--hydra-help``."""
    from hydra._internal.utils import get_args_parser
    from hydra.core.global_hydra import GlobalHydra

    parser = get_args_parser()
    try:
        make_hydra(config_dir).hydra_help(config_name="care_trainer", args_parser=parser,
                                          args=parser.parse_intermixed_args(argv_overrides))
    finally:
        GlobalHydra.instance().clear()


def care_keys() -> Iterator[tuple[str, str, str]]:
    """``(care.key, default, help text)`` for every field of :class:`CareSettings`, nested ones flattened."""
    from care_verl.adapter.step.care_settings import CareSettings

    def walk(cls, prefix: str):
        for f in dataclasses.fields(cls):
            key = f"{prefix}.{f.name}"
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            if dataclasses.is_dataclass(default):
                yield from walk(type(default), "care" if f.name == "advantage" else key)
            else:
                yield key, repr(default) if isinstance(default, str) else str(default), f.metadata.get("help", "")

    yield from walk(CareSettings, "care")


def list_group(config_dir: Path, group: str) -> list[str]:
    return sorted(p.stem for p in (config_dir / group).glob("*.yaml"))


HELP_TEMPLATE = """\
care_verl: CARE and GRPO/DAPO/GSPO post-training of vision-language models on verl 0.9.1.

Usage: python -m care_verl.main [+recipe=NAME] [KEY=VALUE ...] [--cfg job|hydra|all [--resolve]] [-m]

Composition (later wins): verl's ppo_trainer config -> hydra_configs/care_trainer.yaml ->
runtime (cpu chosen automatically without a GPU) -> +recipe=NAME -> the command line.
Every verl key works as usual (actor_rollout_ref.*, data.*, trainer.*, ...).

Examples:
  python -m care_verl.main +recipe=tiny_cpu_care                           # 2 CARE steps on CPU
  python -m care_verl.main +recipe=qwen25vl_7b --cfg job --resolve         # print the config, run nothing
  python -m care_verl.main +recipe=tiny_cpu_care -m care.selector=cosine_topk,random   # a sweep

== Flags ==
$FLAGS_HELP
== Configuration groups ==
Compose your configuration from those groups (group=option; recipe is added with +recipe=NAME)

recipe: $RECIPES
runtime: $RUNTIMES

== CARE options (care.*; used when algorithm.adv_estimator=care, defaults are the paper's) ==
$CARE_KEYS
The composed config: --cfg job (add --resolve to resolve interpolations).
"""


def help_text(config_dir: Path) -> str:
    """``--help``: usage, Hydra's flags, the recipes and runtimes, every ``care.*`` key with its help."""
    import string

    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import get_args_parser

    keys = list(care_keys())
    width = max(len(k) for k, _, _ in keys)
    lines = [f"  {k:<{width}}  {h} [default: {d}]" for k, d, h in keys]
    parser = get_args_parser()
    parser._actions = [a for a in parser._actions if a.dest not in UNSUPPORTED]  # only the flags we take
    return string.Template(HELP_TEMPLATE).substitute(
        FLAGS_HELP=Hydra.format_args_help(parser),
        RECIPES=", ".join(list_group(config_dir, "recipe")),
        RUNTIMES=", ".join(list_group(config_dir, "runtime")),
        CARE_KEYS="\n".join(lines),
    )
