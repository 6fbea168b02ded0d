"""Building the network a config names: ``model._target_`` located (a built-in factory of
``zoo``, or a user's, importable from the Python path or the launch folder), the model keys
checked against its arguments, the factory called with the data's input shape and number of
classes, and its output shape checked on a dummy batch. Every failure is a one-line
``ConfigError`` before any run exists.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import torch
from torch import Tensor, nn

from initsweep.errors import ConfigError, require


def _launch_folder() -> str:
    """The folder the user launched from (Hydra's original cwd when it changed directory)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            return HydraConfig.get().runtime.cwd
    except Exception:  # no Hydra run: the process's cwd
        pass
    return os.getcwd()


def locate_factory(target: Any) -> Callable[..., nn.Module]:
    """``model._target_`` as a callable: a dotted path ``package.module.function``, importable
    from the Python path or from the folder the run was launched from (a user's own file)."""
    require(
        isinstance(target, str) and "." in target and not target.startswith("."),
        "model._target_",
        target,
        "must be a dotted path to a factory, e.g. "
        "my_models.small_cnn (a function in my_models.py in the folder you run from)",
    )
    folder = _launch_folder()
    if folder not in sys.path:
        sys.path.append(folder)  # after everything else: never shadows an installed package
    module_name, _, attribute = target.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except Exception as err:
        raise ConfigError(
            f"model._target_={target!r}: cannot import {module_name} "
            f"({type(err).__name__}: {str(err).splitlines()[0]}); it must be on "
            f"the Python path or a .py file in {folder}"
        ) from None
    factory = getattr(module, attribute, None)
    require(
        callable(factory), "model._target_", target, f"{module_name} has no callable {attribute!r}"
    )
    return cast(Callable[..., nn.Module], factory)


def check_model_keys(factory: Callable[..., Any], target: str, keys: Mapping[str, Any]) -> None:
    """Every model key must be an argument of the factory (unless it takes ``**kwargs``); the
    factory must take ``input_shape`` and ``num_classes``."""
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # a builtin or C callable: nothing to check against
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    for needed in ("input_shape", "num_classes"):
        require(
            needed in parameters,
            "model._target_",
            target,
            f"a model factory is called as f(input_shape=(C, H, W), num_classes=N, ...); "
            f"{target} has no argument {needed!r}",
        )
    valid = [n for n in parameters if n not in ("input_shape", "num_classes")]
    for key, value in keys.items():
        require(
            key in valid,
            f"model.{key}",
            value,
            f"not an argument of {target}; valid: {', '.join(valid) or 'none'}",
        )


def build_network(
    model_cfg: Mapping[str, Any], input_shape: Sequence[int], num_classes: int, init_seed: int = 0
) -> nn.Module:
    """The network of ``model_cfg``: its ``_target_`` factory called (through Hydra's
    ``instantiate``, so nested ``_target_`` nodes work too) with the data's input shape and
    number of classes. Raises ``ConfigError`` for an unknown target or key, and for a network
    whose output on a batch of the data's shape is not ``(B, num_classes)``.

    Whatever the constructor draws comes from a generator seeded by ``init_seed`` (the global
    one is left as it was): the initializer refills every weight and norm layer, and any other
    parameter a user's model has keeps a value that depends on the init seed only.
    """
    # Hydra's instantiate only for a user's _target_ (the built-in models need none)
    from hydra.utils import instantiate
    from omegaconf import DictConfig, OmegaConf

    if isinstance(model_cfg, DictConfig):
        if OmegaConf.is_missing(model_cfg, "_target_"):
            raise ConfigError(
                "model._target_: not set; model=custom needs your factory, e.g. "
                "model._target_=my_models.small_cnn (docs/extending.md)"
            )
        cfg = cast(dict[str, Any], OmegaConf.to_container(model_cfg, resolve=True))
    else:
        cfg = dict(model_cfg)
    # an MLP config written before models had a _target_ (hidden_sizes, activation, ...)
    target = cfg.pop("_target_", "initsweep.models.zoo.mlp")
    factory = locate_factory(target)
    check_model_keys(factory, target, cfg)
    shape = tuple(int(n) for n in input_shape)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)
        try:
            # plain lists and dicts for the factory (not OmegaConf containers)
            partial = instantiate({"_target_": target, **cfg}, _partial_=True, _convert_="all")
            net = partial(input_shape=shape, num_classes=num_classes)
        except ConfigError:
            raise
        except Exception as err:
            cause = err.__cause__ if isinstance(err.__cause__, ConfigError) else err
            if isinstance(cause, ConfigError):
                raise cause from None
            raise ConfigError(
                f"model._target_={target!r}: building the model failed "
                f"({type(cause).__name__}: {str(cause).splitlines()[0]})"
            ) from None
    require(
        isinstance(net, nn.Module),
        "model._target_",
        target,
        f"must return a torch.nn.Module, returned {type(net).__name__}",
    )
    check_output_shape(net, target, shape, num_classes)
    return net


@torch.no_grad()
def check_output_shape(
    net: nn.Module, target: str, input_shape: tuple[int, ...], num_classes: int
) -> None:
    """A batch of 2 zero inputs of the data's shape must give logits ``(2, num_classes)``."""
    was_training = net.training
    net.eval()  # no BatchNorm statistics updated by the check
    try:
        out = net(torch.zeros(2, *input_shape))
    except Exception as err:
        raise ConfigError(
            f"model._target_={target!r}: does not fit the data's inputs of shape "
            f"{input_shape} ({type(err).__name__}: {str(err).splitlines()[0]})"
        ) from None
    finally:
        net.train(was_training)
    shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
    require(
        shape == (2, num_classes),
        "model._target_",
        target,
        f"must map inputs (B, {', '.join(map(str, input_shape))}) to logits "
        f"(B, {num_classes}); gave {shape} for B=2",
    )
