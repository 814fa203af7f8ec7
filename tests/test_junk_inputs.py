"""Junk fed to EVERY public callable of the package: only documented, well-named errors escape.

The list of callables is generated from ``ctd_stats.__all__`` (functions, public classes'
constructors and every ``from_json`` of a JSONSerializable class) through
``inspect.signature``, so it follows renames. For each one hypothesis draws junk for every
parameter (optional ones are sometimes left at their default) and the test asserts that any
exception is a ValueError or TypeError whose message starts with ``"<one of the callable's
parameter names>:"`` (``"text:"`` for ``from_json``). Not raising is fine: junk that happens to be
valid input is valid input.
"""

from __future__ import annotations

import inspect
import signal
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import Phase, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import ctd_stats
from ctd_stats._serialize import JSONSerializable

junk_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=3),
)
junk_arrays = st.one_of(
    arrays(np.float64, st.integers(0, 6), elements=st.floats(allow_nan=True, allow_infinity=True)),
    arrays(np.float64, st.tuples(st.integers(0, 5), st.integers(0, 5)), elements=st.floats(-2, 3)),
    arrays(np.int64, st.integers(0, 6), elements=st.integers(-3, 20)),
    arrays(np.bool_, st.tuples(st.integers(0, 4), st.integers(0, 4))),
    st.lists(st.floats(allow_nan=True), max_size=4),
    st.lists(st.lists(st.integers(0, 2), max_size=3), max_size=3),  # possibly ragged
)
junk = st.one_of(junk_scalars, junk_arrays)
junk_text = st.one_of(
    st.text(max_size=20),
    st.sampled_from(
        ['{"format": "ctd_stats"}', "[]", "null", '{"format": "ctd_stats", "schema_ver']
    ),
    st.binary(max_size=8),
    junk_scalars,
)

# Where junk makes no sense (kept short; each entry says why).
EXCLUDED: dict[str, str] = {
    "Step": "a plain record of what a monitor reported; no validation by design",
}

# Functions that read a file: a junk path that names no file raises the OSError open() raises
# (documented); wrong types still raise a TypeError named after the argument.
READS_FILES: set[str] = {"sha256_of"}


def _is_api_callable(obj: object) -> bool:
    """Functions and classes. Not called: type aliases (``Literal[...]``, ``NDArray[...]``) and
    Protocols (``StreamingMonitor``: types to check against, which cannot be instantiated)."""
    if inspect.isclass(obj):
        return not getattr(obj, "_is_protocol", False)  # set by typing on every Protocol class
    return inspect.isroutine(obj)


def _public_callables() -> dict[str, tuple[Callable[..., Any], inspect.Signature, tuple[str, ...]]]:
    out: dict[str, tuple[Callable[..., Any], inspect.Signature, tuple[str, ...]]] = {}
    for name in sorted(set(ctd_stats.__all__)):
        obj = getattr(ctd_stats, name)
        if name in EXCLUDED or not _is_api_callable(obj):
            continue
        if inspect.isclass(obj) and issubclass(obj, JSONSerializable):
            out[f"{name}.from_json"] = (obj.from_json, inspect.signature(obj.from_json), ("text",))
        if inspect.isclass(obj) and _is_plain_result(obj):
            continue  # a result record (dataclass without validation): only from_json is fuzzed
        try:
            sig = inspect.signature(obj)
        except (TypeError, ValueError):  # pragma: no cover - a builtin without a signature
            continue
        names = tuple(
            p.name
            for p in sig.parameters.values()
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        )
        if names:
            out[name] = (obj, sig, names)
    return out


def _is_plain_result(cls: type) -> bool:
    """Frozen dataclasses built by the package's functions (results, states): not inputs."""
    import dataclasses

    if not dataclasses.is_dataclass(cls):
        return False
    params = getattr(cls, "__dataclass_params__", None)
    has_post_init = "__post_init__" in vars(cls)
    return bool(params is not None and params.frozen and not has_post_init)


CALLABLES = _public_callables()


def _draw_call(
    data: st.DataObject, sig: inspect.Signature, names: tuple[str, ...], text: bool
) -> tuple[list[Any], dict[str, Any]]:
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    for p in sig.parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        optional = p.default is not p.empty
        if optional and data.draw(st.booleans(), label=f"default {p.name}"):
            continue
        value = data.draw(junk_text if text else junk, label=p.name)
        if p.kind == p.POSITIONAL_ONLY:
            args.append(value)
        else:
            kwargs[p.name] = value
    return args, kwargs


class _Hang(Exception):
    pass


def _alarm(signum: int, frame: Any) -> None:
    raise _Hang


def _check(
    name: str, fn: Callable[..., Any], names: tuple[str, ...], /, *a: Any, **kw: Any
) -> None:
    # Junk must be refused quickly: a call still running after 2 s is a hang (e.g. a search
    # loop that never ends on a NaN), reported as a failure instead of blocking the suite.
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, 2.0)
    try:
        fn(*a, **kw)
    except OSError:
        if name not in READS_FILES:
            raise AssertionError(f"{name}: undocumented OSError (inputs {a!r} {kw!r})") from None
    except _Hang:
        msg = f"{name}: still running after 2 s on junk (inputs {a!r} {kw!r})"
        raise AssertionError(msg) from None
    except (ValueError, TypeError) as exc:
        message = str(exc)
        assert any(message.startswith(f"{n}:") for n in names), (
            f"{name}: message does not start with one of {names}: {type(exc).__name__}: "
            f"{message!r} (inputs {a!r} {kw!r})"
        )
    except Exception as exc:  # the point: any other exception is undocumented
        raise AssertionError(
            f"{name}: undocumented {type(exc).__name__}: {exc} (inputs {a!r} {kw!r})"
        ) from exc
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0.0)
        signal.signal(signal.SIGALRM, old)


@pytest.mark.parametrize("name", sorted(CALLABLES))
@settings(max_examples=25, phases=[Phase.explicit, Phase.reuse, Phase.generate])  # no shrinking
@given(data=st.data())
def test_only_named_errors_escape(name: str, data: st.DataObject) -> None:
    fn, sig, names = CALLABLES[name]
    args, kwargs = _draw_call(data, sig, names, text=name.endswith(".from_json"))
    _check(name, fn, names, *args, **kwargs)


def test_every_public_name_is_covered() -> None:
    """The generated list covers every callable in __all__ (minus the short exclusion list)."""
    for name in ctd_stats.__all__:
        obj = getattr(ctd_stats, name)
        if _is_api_callable(obj) and name not in EXCLUDED:
            covered = name in CALLABLES or f"{name}.from_json" in CALLABLES
            no_arguments = not inspect.signature(obj).parameters  # nothing to feed junk to
            assert covered or no_arguments or _is_plain_result(obj), name


# Hand-written junk for the core's count arguments (the regression the lead fixed in
# as_int_array: 9.22e18 used to wrap around to a negative int64 before the range check).
@given(a=junk, b=junk, c=junk)
@example(a=9.223372036854776e18, b=1, c=0.5)
@example(a=np.array([2.0**63]), b=3, c=0.5)
@example(a=np.array([np.iinfo(np.uint64).max], dtype=np.uint64), b=3, c=0.5)
def test_counts_are_range_checked_before_the_cast(a: Any, b: Any, c: Any) -> None:
    _check("binomial_pvalue", ctd_stats.binomial_pvalue, ("counts", "n", "alpha"), a, b, alpha=c)
    _check(
        "learn_then_test",
        ctd_stats.learn_then_test,
        ("losses", "counts", "n", "alpha", "delta", "order"),
        counts=a,
        n=b,
        alpha=c,
        delta=0.1,
        order="descending",
    )


def test_huge_count_is_reported_as_out_of_range() -> None:
    with pytest.raises(ValueError, match=r"^counts: values must be <= 1"):
        ctd_stats.binomial_pvalue(9.223372036854776e18, 1, alpha=0.5)
