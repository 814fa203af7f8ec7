"""What the artifact build (:mod:`probes.artifact`) is told: :class:`ArtifactConfig` and its names.

A light module (no torch, no numpy), so that the command line (``python -m probes artifacts``)
takes its defaults from :class:`ArtifactConfig` (the one source of truth) before anything heavy is
imported, and turns a configuration back into the command that builds it (``--jobs 2``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "EMBEDDING_EXPERT",
    "LIKELIHOOD_EXPERTS",
    "MONITORED",
    "STAGES",
    "ArtifactConfig",
    "config_argv",
]

MONITORED = "smollm2-135m-instruct"
LIKELIHOOD_EXPERTS = {"smollm2": "smollm2-135m-instruct", "gemma3": "gemma-3-270m"}
EMBEDDING_EXPERT = "minilm"
STAGES = ("all", "activations", "experts", "embeddings")


@dataclass(frozen=True)
class ArtifactConfig:
    """Options of :func:`probes.artifact.build_artifact` (defaults = the committed artifact)."""

    out_dir: Path = Path("book/artifacts")
    name: str = "stakes_smollm2"
    work_dir: Path | None = None
    token_limit: int = 1024
    contexts: tuple[int, ...] = (128, 256, 512, 1024)
    expert_token_limit: int = 512
    candidate_layers: tuple[int, ...] = (2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24)
    batch_size: int = 8
    shard_size: int = 128
    cap_per_group: int = 250
    limit: int | None = None
    experts: tuple[str, ...] = ("smollm2", EMBEDDING_EXPERT)
    expert_prompt: str = "default"
    crossfit_folds: int = 5
    stage: str = "all"
    reverse_files: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"stage: expected one of {STAGES}, got {self.stage!r}")
        unknown = [e for e in self.experts if e not in (*LIKELIHOOD_EXPERTS, EMBEDDING_EXPERT)]
        if unknown:
            raise ValueError(f"experts: unknown {unknown}")
        if not self.contexts or max(self.contexts) != self.token_limit:
            raise ValueError(
                f"contexts: the longest must equal token_limit ({self.token_limit}), "
                f"got {self.contexts}"
            )


def _option(field: str) -> str:
    """The command-line option of a field (``candidate_layers`` is ``--layers``)."""
    return "--layers" if field == "candidate_layers" else "--" + field.replace("_", "-")


def config_argv(cfg: ArtifactConfig) -> list[str]:
    """``python -m probes`` arguments that rebuild exactly ``cfg`` (``artifacts ...``).

    Every field is written out (flags only when set), so the command does not depend on the
    defaults of the process that runs it.
    """
    argv = ["artifacts"]
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if f.name == "progress":
            argv += [] if value else ["--no-progress"]
        elif f.name == "reverse_files":
            argv += ["--reverse-files"] if value else []
        elif value is None:
            continue
        elif isinstance(value, tuple):
            argv += [_option(f.name), ",".join(str(v) for v in value)]
        else:
            argv += [_option(f.name), str(value)]
    return argv
