"""Extraction and probe fits on Ray (the optional extra ``sparsify-then-classify[ray]``).

Store shards become tasks on a pool of actors, each of which loads the backbone once and writes every shard it is
given through :func:`stc.store.extract_shard`, the same function a single process uses: same shard boundaries,
same arithmetic, so the same store byte for byte. An actor killed mid-shard is restarted by Ray and the shard is
retried (its flock claim died with the process); shards already on disk are never handed out. Probe and search
fits go through joblib's Ray backend. Without an address Ray starts embedded on this machine; with one, it joins
that cluster, and the store path must then be on a filesystem every node shares.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from .backbone import Backbone
from .store import ExtractionSettings

__all__ = ["ENGINES", "RayEngine", "make_engine", "joblib_backend"]

ENGINES = ("local", "ray")
_RETRIES = 3  # restarts of a dead actor, and retries of the shard it was on


def make_engine(engine: str = "local", address: str | None = None, workers: int | None = None,
                gpus_per_worker: float = 0) -> RayEngine | None:
    """The engine the options ask for (None: this process), each option checked and named when refused."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be None or a positive integer, got {workers!r}")
    if isinstance(gpus_per_worker, bool) or not isinstance(gpus_per_worker, (int, float)) or not (
            0 <= gpus_per_worker <= 64):
        raise ValueError(f"gpus_per_worker must be a number in [0, 64], got {gpus_per_worker!r}")
    if address is not None and (not isinstance(address, str) or not address.strip()):
        raise ValueError(f"address must be None or a non-empty 'host:port' (or 'ray://host:port'), got {address!r}")
    if engine == "local":
        given = {name: value for name, value in (("address", address), ("workers", workers),
                                                 ("gpus_per_worker", gpus_per_worker)) if value}
        if given:
            raise ValueError(f"{', '.join(given)} only apply with engine='ray' (got {given}, engine='local')")
        return None
    return RayEngine(address=address, workers=workers, gpus_per_worker=float(gpus_per_worker))


def joblib_backend(engine: RayEngine | None) -> contextlib.AbstractContextManager:
    """joblib's Ray backend around probe and search fits when the engine is Ray; nothing otherwise."""
    if engine is None:
        return contextlib.nullcontext()
    engine.connect()
    return _one_ray_pool()


@contextlib.contextmanager
def _one_ray_pool():
    """joblib's Ray backend, one pool of actors for every ``Parallel`` call inside (closed at the end).

    A fit makes several calls (each fold's probes, the search, the final probes, the estimate); joblib's backend
    would start fresh actors for each, and each actor imports stc, torch included, before its first task: seconds
    per call, most of a small fit's time on Ray."""
    from joblib import parallel_config
    from ray.util.joblib.ray_backend import RayBackend

    class _RayGeneratorBackend(RayBackend):
        # probe.py and aggregate.py read their results as a generator (return_as="generator"), which joblib's
        # multiprocessing-derived backends refuse by default; they consume it whole, which is what makes it safe.
        supports_return_generator = True
        _kept = None  # (workers, pool) from the last call

        def configure(self, n_jobs=1, parallel=None, **kwargs):
            workers = self.effective_n_jobs(n_jobs)
            # reused only at the width a call asks for: workers_within sizes that width to fit in memory
            if self._kept is not None and self._kept[0] == workers:
                self._pool, self.parallel = self._kept[1], parallel
                return workers
            if workers > 1:  # (one worker: joblib runs the call here, and the pool waits for the next)
                self.close()
            workers = super().configure(n_jobs, parallel, **kwargs)
            self._kept = (workers, self._pool)
            return workers

        def terminate(self):
            # The end of one call: keep the actors, but let go of its arguments, as closing the pool would.
            if self._pool is not None:
                for registry in ("_registry", "_registry_hashable"):
                    getattr(self._pool, registry, {}).clear()
            self._pool = None
            self.reset_batch_stats()

        def abort_everything(self, ensure_ready=True):
            self.close()  # a failed call's other tasks may still run: those actors are not reused
            super().abort_everything(ensure_ready)

        def close(self):
            if self._kept is not None:
                pool, self._kept = self._kept[1], None
                pool.terminate()

    backend = _RayGeneratorBackend()
    try:
        with parallel_config(backend=backend):
            yield
    finally:
        backend.close()


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ImportError("engine='ray' needs Ray: pip install 'sparsify-then-classify[ray]'") from None
    return ray


@dataclass(frozen=True)
class RayEngine:
    """Where and how wide to run: a cluster address (None: embedded), actors (None: one per CPU, or per
    ``gpus_per_worker`` GPUs), and GPUs per actor (0: the actors run on CPU)."""

    address: str | None = None
    workers: int | None = None
    gpus_per_worker: float = 0.0

    def connect(self) -> None:
        """Start Ray embedded, or join the cluster at ``address``; an unreachable one is a one-line error."""
        ray = _import_ray()
        if ray.is_initialized():
            return
        if self.address is None:
            ray.init(address="local", include_dashboard=False, log_to_driver=False, configure_logging=False)
            return
        host, _, port = self.address.removeprefix("ray://").rpartition(":")
        if not self.address.startswith("ray://") and host and port.isdigit():
            try:  # ray.init would retry an unreachable head for a minute before it says so
                socket.create_connection((host, int(port)), timeout=5).close()
            except OSError as error:
                raise ValueError(f"cannot reach a Ray cluster at {self.address!r}: {error.strerror or error}") \
                    from None
            self._log_in_once()
        try:
            ray.init(address=self.address, log_to_driver=False, configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise self._join_error(str(error).strip().splitlines()[0] if str(error).strip() else repr(error)) \
                from None

    def _log_in_once(self) -> None:
        """One login at the cluster's GCS, with Ray's own client: a refused token is a final answer, which ray.init
        would retry for 20 s before it says only "Failed to connect". Anything else is left to ray.init."""
        try:
            from ray._raylet import GcsClient  # not public: if it moves, ray.init alone decides, as before
            from ray.exceptions import AuthenticationError
        except ImportError:
            return
        try:
            GcsClient(address=self.address)
        except AuthenticationError as error:  # its first sentence; the rest is Ray's advice, ours is the hint
            raise self._join_error(str(error).strip().split(". ")[0]) from None
        except Exception:  # noqa: BLE001 - not an answer about this client: ray.init tries and says
            pass

    def _join_error(self, reason: str) -> ValueError:
        # Ray >= 2.59 starts clusters (``ray start``) with token authentication, and a client that is not told
        # so fails with only "Failed to connect": say what to set.
        hint = ("" if os.environ.get("RAY_AUTH_MODE") else
                " (if the cluster uses token authentication, as `ray start` does by default since Ray 2.59, "
                "set RAY_AUTH_MODE=token here, with its token in RAY_AUTH_TOKEN or ~/.ray/auth_token)")
        return ValueError(f"cannot join the Ray cluster at {self.address!r}: {reason}{hint}")

    def _pool_size(self, n_jobs: int) -> int:
        ray = self._ray()
        resources = ray.cluster_resources()
        if self.gpus_per_worker > 0:
            gpus = float(resources.get("GPU", 0))
            if gpus < self.gpus_per_worker:
                raise ValueError(f"gpus_per_worker={self.gpus_per_worker:g} but the Ray cluster has {gpus:g} GPUs")
            fits = int(gpus // self.gpus_per_worker)
        else:
            fits = max(1, int(resources.get("CPU", 1)))
        workers = self.workers or fits
        if workers > fits:
            raise ValueError(f"workers={workers} do not fit the Ray cluster ({fits} at most with "
                             f"{self.gpus_per_worker:g} GPUs and 1 CPU each)")
        return max(1, min(workers, n_jobs))

    def _ray(self):
        self.connect()
        return _import_ray()

    def extract_shards(self, backbone: Backbone, directory: Path, jobs: list[tuple[int, list[str]]],
                       keys: list[str], settings: ExtractionSettings, token_budget: int,
                       on_done: Callable[[int], object]) -> None:
        """Run every (shard index, texts) job on the actor pool; ``on_done(n_texts)`` as each one lands."""
        if not jobs:
            return
        ray = self._ray()
        from ray.exceptions import RayActorError, RayTaskError
        from ray.util import ActorPool

        load = {"name": backbone.name, "dtype": str(next(backbone.model.parameters()).dtype).removeprefix("torch."),
                "device": "cuda" if self.gpus_per_worker > 0 else "cpu",
                "weights_sha256": backbone.weights_hash()}
        worker_class = ray.remote(_ShardWorker).options(
            num_cpus=1, num_gpus=self.gpus_per_worker, max_restarts=_RETRIES, max_task_retries=_RETRIES)
        actors = [worker_class.remote(load, str(directory), keys, asdict(settings), token_budget)
                  for _ in range(self._pool_size(len(jobs)))]
        pool = ActorPool(actors)
        for job in jobs:
            pool.submit(lambda actor, job: actor.extract.remote(*job), job)
        try:
            while pool.has_next():
                on_done(pool.get_next_unordered())
        except RayTaskError as error:  # the worker's own error: raise it as the worker raised it, one line
            cause = error.cause if isinstance(error.cause, Exception) else None
            if isinstance(cause, (ValueError, TypeError, OSError)):
                raise ValueError(f"a Ray worker failed: {_first_line(cause)}") from None
            raise RuntimeError(f"a Ray worker failed: {_first_line(error)}") from None
        except RayActorError as error:
            raise RuntimeError(f"a Ray worker died {_RETRIES + 1} times in a row: {_first_line(error)}") from None
        finally:
            for actor in actors:
                ray.kill(actor, no_restart=True)


def _first_line(error: BaseException) -> str:
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines and "Traceback" in lines[0] else (lines[0] if lines else repr(error))


class _ShardWorker:
    """One Ray actor: loads the backbone once (checking it has the driver's weights), then extracts shards."""

    def __init__(self, load: dict, directory: str, keys: list[str], settings: dict, token_budget: int):
        self.load, self.directory, self.keys = load, Path(directory), keys
        self.settings = ExtractionSettings(**{name: tuple(value) if isinstance(value, list) else value
                                              for name, value in settings.items()})
        self.token_budget = token_budget
        self.backbone: Backbone | None = None

    def _backbone(self) -> Backbone:
        if self.backbone is None:
            from .backbone import load_backbone

            backbone = load_backbone(self.load["name"], device=self.load["device"], dtype=self.load["dtype"])
            if backbone.weights_hash() != self.load["weights_sha256"]:
                raise ValueError(f"worker on {socket.gethostname()} loaded other weights for "
                                 f"{self.load['name']!r} than the driver (sha256 {backbone.weights_hash()[:12]}… "
                                 f"vs {self.load['weights_sha256'][:12]}…)")
            self.backbone = backbone
        return self.backbone

    def extract(self, j: int, shard_texts: list[str]) -> int:
        from .store import extract_shard

        if not (self.directory / "plan.json").is_file():
            raise ValueError(f"worker on {socket.gethostname()} does not see the store at {self.directory}: "
                             f"the store path must be on a filesystem every worker shares")
        if not os.access(self.directory / "shards", os.W_OK):
            raise ValueError(f"worker on {socket.gethostname()} cannot write the store at {self.directory}")
        extract_shard(self._backbone(), self.directory, j, shard_texts, self.keys, self.settings,
                      self.token_budget, blocking=True)
        return len(shard_texts)

