"""One-line messages: what is wrong and what is allowed, with Lightning's noise kept out of the way."""

from __future__ import annotations

import difflib
import importlib
import logging
import re
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from jsonargparse import ArgumentParser


def command_parser(command: str, description: str) -> ArgumentParser:
    """The parser of an analysis command: bad arguments raise, for the entry point to say in one
    line, and options are never matched by a prefix (a typo must not pick a neighbour)."""
    return ArgumentParser(prog=f"lit-superposition {command}", description=description, exit_on_error=False, allow_abbrev=False)


#: Lightning's warnings that say nothing about a run of this framework.
QUIET_WARNINGS = (
    r".*args parameter is intended to run from within Python.*",  # main() always passes args
    r".*isinstance\(treespec, LeafSpec\)` is deprecated.*",  # Lightning 2.6's internals on torch 2.13
)


@contextmanager
def quiet_lightning() -> Iterator[None]:
    """Within this block, Lightning's notices that say nothing about the run are dropped.

    Scoped, not global: the warning filters and the logging filter are undone when the block ends.
    With ``enable_model_summary=False`` a plain ``pl.Trainer`` then prints only what the run's own
    callbacks print.

    Example::

        with quiet_lightning():
            trainer = pl.Trainer(max_steps=500, enable_model_summary=False, callbacks=[...])
            trainer.fit(module, datamodule)
    """
    logger = logging.getLogger("pytorch_lightning.utilities.rank_zero")

    def keep(record: logging.LogRecord) -> bool:  # this block's own filter: a nested block's end leaves it in place
        return _drop_empty_notices(record)

    with warnings.catch_warnings():
        for message in QUIET_WARNINGS:
            warnings.filterwarnings("ignore", message=message)
        logger.addFilter(keep)
        try:
            yield
        finally:
            logger.removeFilter(keep)


def _drop_empty_notices(record: logging.LogRecord) -> bool:
    # Adverts, and accelerators that are absent: neither says anything about this run, and on a
    # CPU they would stand between a one-line error and the user. "`Trainer.fit` stopped:
    # `max_steps` reached" says what the run was asked to do; "Restoring states from the
    # checkpoint" is said by the resume's own line.
    return not re.match(r"💡 Tip|(GPU|TPU|HPU) available: False|`Trainer.fit` stopped: `max_steps=|Restor(ing|ed all) states from the checkpoint",
                        str(record.msg))


def _type_name(text: str) -> str:
    """``<class 'int'>`` -> ``int``; ``<class 'pkg.mod.Spec'>`` -> ``Spec``; anything else as is."""
    text = re.sub(r"<class '(?:[\w.]*\.)?(\w+)'>", r"\1", text)
    text = re.sub(r"typing\.|(?:[a-z_]+\.)+(?=[A-Z])", "", text)
    if text.startswith("Callable[[Iterable], Optimizer]"):
        return "an optimizer class (a torch.optim name or a class path)"
    if text.startswith("Callable[[Optimizer]"):
        return "a learning-rate scheduler class (a torch.optim.lr_scheduler name, WarmupDecay or a class path)"
    return re.sub(r"Literal\[(.*?)\]", r"one of \1", text)


def explain_argument_error(message: str) -> str:
    """One line for a jsonargparse error: the setting, the value and what is allowed.

    jsonargparse reports a bad value of a union-typed setting (``feature_probability``, ``optimizer``,
    ...) as a tree of every alternative's failure, too long for one line. This keeps the setting
    (nested keys joined), the value and the accepted types.
    """
    text = re.sub(r"\s+", " ", message).strip()
    unknown = re.search(r"Group '([\w.]+)' does not accept option '(\w+)'", text) or re.search(
        r"Key '([\w.]+)\.(\w+)' is not expected", text)
    if unknown:
        return unknown_setting(unknown.group(1), unknown.group(2))
    keys = re.findall(r'Parser key "([^"]+)"', text)
    if not keys:
        return text
    key = ".".join(dict.fromkeys(keys))
    key = re.sub(r"\b(\w+)\.\1$", r"\1", key)  # "optimizer.momentum.momentum" -> "optimizer.momentum"
    value = next(
        (match.group(1) for pattern in (r"Given value: (.+?)(?: - |$)", r"Got value: (.+?)(?: - |$)",
                                        r"Expected a path but (.+?) either not accessible")
         if (match := re.search(pattern, text))),
        None,
    )
    subtypes = re.findall(r"Subtypes: \[(.*?)\] Errors:", text)
    if subtypes:
        allowed = " or ".join(
            _type_name(t) for t in re.split(r", (?=<class|typing|list|dict|Literal|int|float|str)", subtypes[-1])
            if "NoneType" not in t
        )
    else:
        expected = re.findall(r"Expected a (<class '[^']+'>|typing\.Literal\[[^\]]*\]|[\w.\[\], ]+?)(?: Got| -|\.|$)", text)
        allowed = _type_name(expected[-1]) if expected else ""
    if "is not accepted" in text:
        option = re.search(r"Option '(\w+)' is not accepted", text)
        name = option.group(1) if option else "?"
        if key == "model.optimizer":
            return f"model.optimizer.{name}: choose the optimizer first, e.g. --model.optimizer AdamW --model.optimizer.{name} ..."
        return f"{key}: option {name!r} is not accepted by the chosen class"
    if value is None:
        return text
    if nested := re.fullmatch(r"NestedArg\(key='(\w+)', val='(.*)'\)", value):
        key = key if key.endswith(f".{nested.group(1)}") else f"{key}.{nested.group(1)}"
        value = nested.group(2)
        literal = re.search(r"Expected a (typing\.Literal\[[^\]]*\])", text)
        allowed = _type_name(literal.group(1)) if literal else ""
    problem = _import_problem(value)
    if problem:
        return f"{key}: cannot use {value}: {problem}"
    return f"{key}: invalid value {value}" + (f"; expected {allowed}" if allowed else "") + _suggestion(key, value)


def _import_problem(value: str) -> str:
    """Why a ``module.Class`` value cannot be imported, when it looks like one and cannot (else "")."""
    module_name, _, name = value.rpartition(".")
    if not module_name or not re.fullmatch(r"[A-Za-z_][\w.]*", value):
        return ""
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # noqa: BLE001 - any failure to import is the answer
        return f"importing {module_name!r} failed ({type(error).__name__}: {error})"
    if not hasattr(module, name):
        return f"{module_name!r} has no {name!r}"
    return ""


def _suggestion(key: str, value: str) -> str:
    """``; did you mean AdamW?`` for a misspelt optimizer or scheduler class."""
    if key not in ("model.optimizer", "model.lr_scheduler"):
        return ""
    import torch.optim

    module = torch.optim if key.endswith("optimizer") else torch.optim.lr_scheduler
    names = [name for name in dir(module) if name[:1].isupper()] + (["WarmupDecay"] if key.endswith("lr_scheduler") else [])
    close = difflib.get_close_matches(value.rsplit(".", 1)[-1], names, n=1, cutoff=0.6)
    lowered = [name for name in names if name.lower() == value.lower()]
    match = lowered or close
    return f"; did you mean {match[0]}?" if match else ""


#: What each config section is made from, for "did you mean" on a misspelt setting.
SECTIONS = {
    "data": "lit_superposition.data.datamodule:SparseFeatureDataModule",
    "model": "lit_superposition.module:LitToyModel",
    "trainer": "pytorch_lightning:Trainer",
}


def _settings(section: str) -> list[str]:
    """The settings a config section accepts: its class's ``__init__`` parameters."""
    import inspect

    module_name, _, class_name = SECTIONS[section].partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return [name for name in inspect.signature(cls.__init__).parameters if name not in ("self", "args", "kwargs")]


def unknown_setting(section: str, option: str) -> str:
    """``data.n_featurs: no such setting; did you mean data.n_features?``"""
    key = f"{section}.{option}"
    if section not in SECTIONS:
        return f"{key}: no such setting"
    names = _settings(section)
    close = difflib.get_close_matches(option, names, n=1, cutoff=0.6)
    if close:
        return f"{key}: no such setting; did you mean {section}.{close[0]}?"
    return f"{key}: no such setting; {section} has {', '.join(names)}"


def unknown_config_setting(args: Sequence[str]) -> str | None:
    """The first setting of a ``--config`` file that its section does not have, said as :func:`unknown_setting` does.

    jsonargparse reports a required setting left unset before an unknown one, so a typo in a
    standalone YAML (``data: {n_featurs: 5}``) would read as ``data.n_features: invalid value None``.
    """
    import yaml

    from lit_superposition.cli.configs import CONFIG_FLAGS, resolve_config_args

    argv, _ = resolve_config_args(args)
    paths = [value for flag, value in zip(argv, argv[1:]) if flag in CONFIG_FLAGS]
    paths += [arg.split("=", 1)[1] for arg in argv if "=" in arg and arg.split("=", 1)[0] in CONFIG_FLAGS]
    for path in paths:
        try:
            config = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError):
            continue  # the parser says what is wrong with the file itself
        for section in SECTIONS:
            settings = config.get(section) if isinstance(config, dict) else None
            if isinstance(settings, dict) and "class_path" not in settings:
                unknown = [key for key in settings if key not in _settings(section)]
                if unknown:
                    return unknown_setting(section, unknown[0])
    return None


def written(path: str | Path, existed: bool) -> str:
    """``figure: PATH``, saying so when it replaced a file of that name (nothing is overwritten unsaid)."""
    return f"{path} (replaced the earlier file)" if existed else str(path)


def one_line(message: str, limit: int = 400) -> str:
    """``message`` on one line, at most ``limit`` characters."""
    text = " ".join(message.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def fail(message: str, code: int) -> None:
    """Print ``lit-superposition: message`` once (rank zero in multi-process runs) and exit with ``code``."""
    lightning = sys.modules.get("pytorch_lightning.utilities.rank_zero")
    if lightning is None or lightning.rank_zero_only.rank == 0:  # every rank fails alike: say it once
        print(f"lit-superposition: {message}", file=sys.stderr)
    sys.exit(code)
