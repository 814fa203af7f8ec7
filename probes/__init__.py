"""probes: activations of real language models, linear probes and LLM experts (CTD paper §5.1).

Modules (import them directly; this package imports nothing heavy at import time):

* :mod:`probes.data` — the stakes texts: :func:`~probes.data.load_stakes` (train / dev / test
  splits, groups, the paper's per-group cap), :class:`~probes.data.StakesDataset`.
* :mod:`probes.models` — :func:`~probes.models.load_model` from a packaged alias
  (``"smollm2-135m-instruct"``, ``"gemma-3-270m"``), a ``.gguf`` file (converted once into a
  safetensors cache), a local folder or a hub name; :func:`~probes.models.auto_device_dtype`.
* :mod:`probes.extract` — :func:`~probes.extract.extract_activations` (hooked, mean-pooled
  residual stream entering block L after its input norm; several layers per pass; batched by
  length) and :func:`~probes.extract.extract_to_store` (resumable; what to extract is an
  :class:`~probes.extract.ExtractionConfig`).
* :mod:`probes.prefix_pool` — :func:`~probes.prefix_pool.pool_prefixes`: mean and last-token
  pooling at several contexts from one causal pass (choosing how much of a conversation to read).
* :mod:`probes.store` — :class:`~probes.store.ActivationStore`: shards + per-shard commit records +
  manifest, atomic writes (safe against ``SIGKILL``), tamper and mismatch detection.
* :mod:`probes.distributed` — data parallelism on ``torch.distributed`` (gloo on CPU, NCCL on
  GPUs): :func:`~probes.distributed.init_from_env` (torchrun's variables),
  :func:`~probes.distributed.assign_balanced` (token-balanced sharding);
  :func:`~probes.extract.extract_sharded` writes one store from all ranks.
* :mod:`probes.expert_shards` — :func:`~probes.expert_shards.score_experts_sharded`: expert
  scores per rank, merged by rank 0.
* :mod:`probes.linear` — :func:`~probes.linear.fit_logistic` (safety probe),
  :func:`~probes.linear.fit_ridge` (DV probe), :func:`~probes.linear.auroc`.
* :mod:`probes.experts` — :func:`~probes.experts.likelihood_continuation` (McKenzie et al.
  expert score, shared-prefix KV cache).
* :mod:`probes.embedding_expert` — a strong expert that runs on a CPU: all-MiniLM-L6-v2
  embeddings of the whole conversation (:func:`~probes.embedding_expert.embed_conversations`) and
  a cross-fitted logistic classifier (:func:`~probes.embedding_expert.crossfit_classifier`).
* :mod:`probes.artifact` — :func:`~probes.artifact.build_artifact` (one stage:
  :func:`~probes.artifact.run_stage`) / :func:`~probes.artifact.load_artifact`, configured by
  :class:`~probes.artifact_config.ArtifactConfig`; command line ``python -m probes artifacts``.

Command line (``--help`` works without torch): ``python -m probes extract|experts|artifacts``, or
``torchrun --nproc-per-node N -m probes extract ...`` for a data-parallel run.
"""
