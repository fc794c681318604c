"""The Ray engine: a store built by an actor pool is the single-process store byte for byte, even when a worker is
killed mid-shard; fits on Ray give the same model; bad engine options are one-line errors."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from stc.backbone import load_backbone
from stc.cli import main
from stc.distributed import RayEngine, make_engine
from stc.store import ActivationStore, ExtractionSettings, build_store

from ._helpers import LABELS, TEXTS, quiet_env, small_params

SETTINGS = ExtractionSettings(representations=("hidden", "ffn"), poolings=("mean", "max"))
WORDS = "good bad movie film plot actor great awful boring fun story scene music long short".split()


@pytest.fixture(scope="module")
def texts():
    rng = np.random.default_rng(3)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(5, 60)))) for _ in range(240)]


@pytest.fixture(scope="module")
def reference(tiny_dir, texts, tmp_path_factory):
    """The store one process builds."""
    backbone = load_backbone(tiny_dir, device="cpu")
    return build_store(backbone, texts, SETTINGS, root=tmp_path_factory.mktemp("local"), shard_size=20,
                       show_progress_bar=False)


def _files(store: ActivationStore) -> dict[str, bytes]:
    files = {f"arrays/{path.name}": path.read_bytes() for path in (store.path / "arrays").iterdir()}
    return dict(files, meta=(store.path / "meta.json").read_bytes())


def _shard_workers() -> dict[int, str]:
    """pid -> process title of this machine's Ray shard actors."""
    found = {}
    for entry in Path("/proc").iterdir():
        try:
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if entry.name.isdigit() and title.startswith("ray::_ShardWorker"):
            found[int(entry.name)] = title.strip()
    return found


def test_two_ray_workers_build_the_single_process_store_byte_for_byte(ray_session, tiny_dir, texts, reference,
                                                                      tmp_path):
    backbone = load_backbone(tiny_dir, device="cpu")
    store = build_store(backbone, texts, SETTINGS, root=tmp_path, shard_size=20, show_progress_bar=False,
                        engine=RayEngine(workers=2))
    assert store.path.name == reference.path.name
    assert _files(store) == _files(reference)
    assert sorted(p.name for p in store.path.iterdir()) == ["arrays", "meta.json", "plan.json", "store.lock"]


def test_kill_9_of_a_ray_worker_mid_shard_still_ends_with_the_same_store(ray_session, tiny_dir, texts, tmp_path):
    backbone = load_backbone(tiny_dir, device="cpu")
    # A small token budget makes many batches per shard, so the kill lands inside one. Batches this small give
    # results that depend on the number of torch threads, so the reference runs, as each actor does, on one.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        reference = build_store(backbone, texts, SETTINGS, root=tmp_path / "local", shard_size=20, token_budget=24,
                                show_progress_bar=False)
    finally:
        torch.set_num_threads(threads)
    outcome = {}

    def run():
        try:
            outcome["store"] = build_store(backbone, texts, SETTINGS, root=tmp_path / "ray", shard_size=20,
                                           token_budget=24, show_progress_bar=False, engine=RayEngine(workers=2))
        except BaseException as error:  # handed to the test thread below
            outcome["error"] = error

    driver = threading.Thread(target=run)
    driver.start()
    killed, deadline = None, time.monotonic() + 240
    while killed is None and driver.is_alive() and time.monotonic() < deadline:
        busy = [pid for pid, title in _shard_workers().items() if ".extract" in title]
        if busy and list(tmp_path.glob("ray/*/shards/*.safetensors")):
            os.kill(busy[0], signal.SIGKILL)
            killed = busy[0]
        time.sleep(0.005)
    driver.join(timeout=300)
    assert killed is not None, "no worker was caught mid-shard"
    assert "error" not in outcome, outcome.get("error")
    store = outcome["store"]
    assert killed not in _shard_workers()
    assert _files(store) == _files(reference)
    assert sorted(p.name for p in store.path.iterdir()) == ["arrays", "meta.json", "plan.json", "store.lock"]


def test_cli_extract_on_ray_matches_and_resumes(ray_session, tiny_dir, texts, tmp_path, monkeypatch):
    handed_out = []
    real = RayEngine.extract_shards

    def recording(self, backbone, directory, jobs, *args):
        handed_out.append([j for j, _ in jobs])
        return real(self, backbone, directory, jobs, *args)

    monkeypatch.setattr(RayEngine, "extract_shards", recording)
    data = tmp_path / "texts.csv"
    data.write_text("text,label\n" + "".join(f"{t},{i % 2}\n" for i, t in enumerate(texts)), encoding="utf-8")
    args = ["extract", "--data", str(data), "--model", tiny_dir, "--device", "cpu", "--shard-size", "20",
            "--representations", "hidden,ffn", "--poolings", "mean,max", "--quiet", "--store-dir"]
    on_ray = [*args, str(tmp_path / "ray"), "--engine", "ray", "--workers", "2"]
    assert main(on_ray + ["--shard", "0/3"]) == 0  # a third of the shards, as an interrupted run leaves them
    directory = next((tmp_path / "ray").iterdir())
    assert len(list((directory / "shards").glob("*.safetensors"))) == 4
    assert main(on_ray) == 0  # the rest, and only the rest
    assert handed_out == [[0, 3, 6, 9], [1, 2, 4, 5, 7, 8, 10, 11]]
    assert main([*args, str(tmp_path / "local")]) == 0
    assert _files(ActivationStore(directory)) == _files(ActivationStore(tmp_path / "local" / directory.name))


def test_fit_on_ray_gives_the_same_model(ray_session, tiny_dir, tmp_path, monkeypatch):
    import joblib

    import stc.aggregate
    import stc.probe
    from stc import STCClassifier

    backends = []

    class RecordingParallel(joblib.Parallel):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            backends.append(type(self._backend).__name__)

    # two folds: every stage of a cross-validated fit (fold probes, search, final probes, estimate) runs on Ray
    params = small_params(poolings=("mean", "max"), etas=(0.2, 0.5), final_Cs=(0.1, 1.0), n_jobs=2, cv=2)
    local = STCClassifier(tiny_dir, store_dir=str(tmp_path / "a"), **params).fit(TEXTS, LABELS)
    for module in (stc.probe, stc.aggregate):
        monkeypatch.setattr(module, "Parallel", RecordingParallel)
    on_ray = STCClassifier(tiny_dir, store_dir=str(tmp_path / "b"), engine="ray", workers=2,
                           **params).fit(TEXTS, LABELS)
    assert backends and set(backends) == {"_RayGeneratorBackend"}  # probes and search ran on Ray
    assert on_ray.kept_neurons_ == local.kept_neurons_ and on_ray.configuration_ == local.configuration_
    assert on_ray.probe_scores_ == local.probe_scores_ and on_ray.search_results_ == local.search_results_
    probe = ["good fun film", "awful boring plot", "number 7"]
    np.testing.assert_array_equal(on_ray.predict_proba(probe), local.predict_proba(probe))


def test_one_ray_actor_pool_serves_the_parallel_calls_of_a_fit_and_is_gone_after(ray_session, monkeypatch):
    from joblib import Parallel, delayed
    from ray.exceptions import RayActorError
    from ray.util.multiprocessing import pool

    from stc.distributed import joblib_backend

    pools = []
    real = pool.Pool._start_actor_pool

    def recording(self, processes):
        pools.append(self)
        return real(self, processes)

    monkeypatch.setattr(pool.Pool, "_start_actor_pool", recording)
    with joblib_backend(RayEngine()):
        for _ in range(3):
            assert list(Parallel(n_jobs=2, return_as="generator")(delayed(abs)(-i) for i in range(4))) == [0, 1, 2, 3]
        assert len(pools) == 1
        with pytest.raises(ZeroDivisionError):  # a failed call's actors are not reused: a fresh pool after it
            Parallel(n_jobs=2)(delayed(divmod)(1, i) for i in range(4))
        assert Parallel(n_jobs=2)(delayed(abs)(-i) for i in range(4)) == [0, 1, 2, 3]
        assert len(pools) == 2
    for actor, _ in (entry for used in pools for entry in used._actor_pool):
        with pytest.raises(RayActorError):
            ray_session.get(actor.ping.remote(), timeout=60)


# --- bad input ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("options, message", [
    ({"workers": 0}, "workers must be None or a positive integer, got 0"),
    ({"gpus_per_worker": -1}, "gpus_per_worker must be a number"),
    ({"engine": "spark"}, "engine must be one of"),
    ({"engine": "local", "workers": 2}, "only apply with engine='ray'"),
])
def test_bad_engine_options_are_refused_by_name(options, message):
    with pytest.raises(ValueError, match=message):
        make_engine(**{"engine": "ray", **options})


def _run_cli(*commands: list[str]) -> list[subprocess.CompletedProcess]:
    """``python -m stc`` with each command, side by side (each child is one thread): how each ended."""
    children = [subprocess.Popen([sys.executable, "-m", "stc", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True, env=quiet_env()) for args in commands]
    outputs = [child.communicate(timeout=300) for child in children]
    return [subprocess.CompletedProcess(child.args, child.returncode, *output)
            for child, output in zip(children, outputs)]


def _one_line_error(result: subprocess.CompletedProcess, pattern: str) -> None:
    import re

    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("stc: error:")]
    assert len(lines) == 1 and re.search(pattern, lines[0]), result.stderr[-2000:]


def test_cli_workers_0_and_an_unreachable_address_are_one_line_errors_and_write_nothing(tiny_dir, tmp_path):
    data = tmp_path / "texts.csv"
    data.write_text("text,label\ngood film,1\nbad film,0\n", encoding="utf-8")
    stores = tmp_path / "stores"
    base = ["extract", "--data", str(data), "--model", tiny_dir, "--store-dir", str(stores), "--quiet",
            "--engine", "ray"]
    fit = ["fit", "--data", str(data), "--model", tiny_dir, "--store-dir", str(stores), "--quiet", "--out",
           str(tmp_path / "model"), "--engine", "ray", "--address", "127.0.0.1:1"]
    # children without a Ray of their own (this process may have one, which an address would not be checked against)
    workers_0, extract, fit = _run_cli(base + ["--workers", "0"], base + ["--address", "127.0.0.1:1"], fit)
    _one_line_error(workers_0, "workers must be None or a positive integer, got 0")
    _one_line_error(extract, "cannot reach a Ray cluster at '127.0.0.1:1'")
    _one_line_error(fit, "cannot reach a Ray cluster")
    assert not stores.exists() and not (tmp_path / "model").exists()


def test_a_store_path_nobody_can_write_is_one_line_and_no_store(ray_session, tiny_dir, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    data = tmp_path / "texts.csv"
    data.write_text("text,label\ngood film,1\nbad film,0\n", encoding="utf-8")
    code = main(["extract", "--data", str(data), "--model", tiny_dir, "--store-dir", str(blocker / "stores"),
                 "--quiet", "--engine", "ray", "--workers", "2"])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("stc: error:")]
    assert code == 2 and len(errors) == 1 and "cannot write the activation store at" in errors[0]
    assert "Not a directory" in errors[0]


def test_a_worker_that_does_not_see_the_store_fails_the_run_in_one_line(ray_session, tiny_dir, tmp_path):
    # On a cluster whose nodes do not share the store path, workers find no plan.json where the driver wrote one.
    backbone = load_backbone(tiny_dir, device="cpu")
    directory = tmp_path / "only-on-the-driver"
    with pytest.raises(ValueError, match="does not see the store at .*only-on-the-driver.*every worker shares"):
        RayEngine(workers=1).extract_shards(backbone, directory, [(0, ["good film"])], ["hidden.L1.mean"],
                                            SETTINGS, 8192, lambda n: None)
    assert not directory.exists()


def test_more_gpus_per_worker_than_the_cluster_has_is_refused(ray_session, tiny_dir, tmp_path):
    backbone = load_backbone(tiny_dir, device="cpu")
    with pytest.raises(ValueError, match="gpus_per_worker=1 but the Ray cluster has 0 GPUs"):
        build_store(backbone, ["good film"], SETTINGS, root=tmp_path, show_progress_bar=False,
                    engine=RayEngine(gpus_per_worker=1))
    assert not list(tmp_path.glob("*/meta.json"))


def test_the_estimator_refuses_bad_engine_parameters_before_any_work(tmp_path):
    from stc import STCClassifier

    with pytest.raises(ValueError, match="workers must be None or a positive integer, got 0"):
        STCClassifier("minilm", engine="ray", workers=0, store_dir=str(tmp_path)).fit(TEXTS, LABELS)
    with pytest.raises(ValueError, match="only apply with engine='ray'"):
        STCClassifier("minilm", ray_address="head:6379", store_dir=str(tmp_path)).fit(TEXTS, LABELS)
    assert list(tmp_path.iterdir()) == []


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory):
    """A Ray cluster of its own, started as a user starts one (``ray start --head``), with token authentication
    (the default of ``ray start`` since Ray 2.59) and a token of this test's: (address, environment to join it)."""
    import secrets

    port = _free_port()
    env = dict(quiet_env(), RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))
    ray_cli = Path(sys.executable).with_name("ray")
    head = subprocess.Popen([str(ray_cli), "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
                             "--include-dashboard=false", "--disable-usage-stats",
                             f"--temp-dir={tmp_path_factory.mktemp('ray-head')}"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:  # the head is up once its GCS port answers
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert head.poll() is None, head.stderr.read().decode(errors="replace")[-2000:]
                assert time.monotonic() < deadline, "ray start --head did not come up in 120 s"
                time.sleep(0.5)
        yield f"127.0.0.1:{port}", env
    finally:
        # SIGTERM to `ray start --block` alone: it drains the node through its GCS, then stops its processes, in
        # seconds. Sent to the whole group, it would reach the GCS too, and the drain would wait 30 s for it.
        head.send_signal(signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()


def test_extract_joins_a_cluster_started_with_ray_start(ray_head, tiny_dir, texts, tmp_path):
    address, env = ray_head
    data = tmp_path / "texts.csv"
    data.write_text("text,label\n" + "".join(f"{text},{i % 2}\n" for i, text in enumerate(texts)), encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "stc", "extract", "--data", str(data), "--model", tiny_dir,
                             "--store-dir", str(tmp_path / "stores"), "--quiet", "--engine", "ray", "--address",
                             address, "--workers", "2", "--representations", "hidden,ffn", "--poolings", "mean,max",
                             "--shard-size", "20"], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    (built,) = [ActivationStore(path.parent) for path in (tmp_path / "stores").glob("*/meta.json")]
    # the same command on this process alone (here, not in a child: as in test_cli_extract_on_ray_matches_and_resumes)
    assert main(["extract", "--data", str(data), "--model", tiny_dir, "--store-dir", str(tmp_path / "here"),
                 "--quiet", "--representations", "hidden,ffn", "--poolings", "mean,max", "--shard-size", "20"]) == 0
    (local,) = [ActivationStore(path.parent) for path in (tmp_path / "here").glob("*/meta.json")]
    assert _files(built) == _files(local)


def test_joining_a_token_cluster_without_the_auth_mode_says_what_to_set(ray_head, tiny_dir, tmp_path):
    address, env = ray_head
    env = {key: value for key, value in env.items() if key != "RAY_AUTH_MODE"}
    data = tmp_path / "texts.csv"
    data.write_text("text,label\ngood film,1\nbad film,0\n", encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "stc", "extract", "--data", str(data), "--model", tiny_dir,
                             "--store-dir", str(tmp_path / "stores"), "--quiet", "--engine", "ray", "--address",
                             address], capture_output=True, text=True, timeout=300, env=env)
    _one_line_error(result, f"cannot join the Ray cluster at '{address}'.*set RAY_AUTH_MODE=token")
    assert not list((tmp_path / "stores").glob("*/meta.json"))
