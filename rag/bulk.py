"""Bulk embedding on Ray: ``rag index --ray`` embeds its new and changed passages with Ray Data.

The index writer (:mod:`rag.index`) does everything else as usual: it scans the corpus, chunks
articles with the local embedder's tokenizer, numbers the passages and writes the generation.
Only the embedding goes to Ray, through :class:`RayEmbedder`, which carries the local embedder's
identity (``id``, ``dim``, ``tokenizer``, ``max_tokens``) so the manifest and the chunks are the
same as a plain ``rag index`` would write. Its ``embed`` runs one Ray Data job::

    from_items([{"i": [rows], "texts": [one model batch]}, ...])
        -> map_batches(EmbedActor, compute=ActorPoolStrategy(size=N))

Each actor builds the embedder once, in its constructor, and then embeds batch after batch; the
vectors come back with their row numbers and are put back in input order.

The model batches are cut exactly as the single-process path cuts them (each writer group of
``EMBED_GROUP`` passages sorted longest first, then ``batch_size`` at a time), because the
int8 backend's vectors depend on the other passages of their batch: its activations are
quantized with one scale per batch, and the same passage batched differently moves by up to
about 0.012 in cosine. Cut the same way, the vectors match the single-process ones.

Ray is started for the run (a local Ray on this machine's cores, shut down at the end), or
joined at ``RAY_ADDRESS`` (``ray start --head`` or a KubeRay cluster); every node of a cluster
needs this package and the embedding model installed. Ray's own log lines go to this module's
log (``rag -v`` shows them); the progress bar is the one ``rag index`` always shows.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import numpy as np

from .embed import PROGRESS_MIN, load_embedder
from .errors import RagError, first_line
from .index import EMBED_GROUP
from .logs import quiet

log = logging.getLogger(__name__)

INSTALL = "pip install 'rag-news[scale]'"
#: Passages per Ray job, a multiple of the writer's group. Each job starts its actor pool, so
#: each worker loads the model once per job; the writer keeps a job's texts and vectors in
#: memory (about 2.5 KB a passage).
RAY_GROUP = 48 * EMBED_GROUP
CALL = 256  # passages per actor call (whole model batches)
CONNECT_TIMEOUT = 5.0  # seconds to reach RAY_ADDRESS before saying it is unreachable


def import_ray():
    """``ray`` with Ray Data, or a :class:`RagError` saying how to install it."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise RagError(f"Ray is not installed; {INSTALL}") from None
    return ray


def init_local_ray(ray, num_cpus: int, **options) -> None:
    """``ray.init`` of a Ray of this process's own that only this machine can reach: its GCS,
    raylet, object manager and workers listen on 127.0.0.1, as they do when the node's address
    is 127.0.0.1 (see :func:`init_on_loopback`)."""
    init_on_loopback(ray, address="local", num_cpus=num_cpus, include_dashboard=False,
                     log_to_driver=False, _node_ip_address="127.0.0.1", **options)


def init_on_loopback(ray, **options) -> None:
    """``ray.init(**options)`` with loopback addresses kept as given: a node address of
    127.0.0.1 (a Ray that listens on 127.0.0.1 only), or a cluster address of 127.0.0.1:port
    (joining such a Ray, or one that listens everywhere). Other addresses are unaffected.

    ``ray.init`` replaces a loopback address with the machine's network address, where a Ray
    started on 127.0.0.1 cannot be reached, and a Ray whose node has that address listens on
    every interface. The replacement (``ray._private.services.resolve_ip_for_localhost``,
    Ray 2.x) is skipped for this call; a Ray without it is called as it is."""
    from unittest import mock

    from ray._private import services

    if not hasattr(services, "resolve_ip_for_localhost"):
        ray.init(**options)
        return
    with mock.patch.object(services, "resolve_ip_for_localhost", lambda host: host):
        ray.init(**options)


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT) -> None:
    """Refuse a ``host:port`` (or ``ray://host:port``) that nothing answers on: ``ray.init``
    would wait for it forever."""
    if address in ("auto", "local"):
        return
    target = address.split("://", 1)[-1].rstrip("/")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise RagError(f"RAY_ADDRESS={address!r} is not host:port (or ray://host:port); "
                       "fix it, or unset it to run Ray on this machine")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        raise RagError(f"cannot reach the Ray cluster at RAY_ADDRESS={address} "
                       f"({first_line(e)}); start it (`ray start --head`), fix RAY_ADDRESS, "
                       "or unset it to run Ray on this machine") from None


class _ToLog(logging.Filter):
    """Sends a Ray record to this module's log at DEBUG instead of Ray's terminal handler (a
    failure reaches the user as one :class:`RagError` line)."""

    def filter(self, record: logging.LogRecord) -> bool:
        log.debug("%s: %s", record.name, record.getMessage())
        return False


@contextmanager
def ray_logs_to_log() -> Iterator[None]:
    """Ray and Ray Data print to the terminal through handlers of their own (start-up notices,
    "execution finished"); while Ray works for us those records go to this module's log."""
    to_log = _ToLog()
    handlers = [h for name in ("ray", "ray.data") for h in logging.getLogger(name).handlers
                if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)]
    for h in handlers:
        h.addFilter(to_log)
    try:
        yield
    finally:
        for h in handlers:
            h.removeFilter(to_log)


@contextmanager
def ray_output_to(path: Path) -> Iterator[object]:
    """Ray prints outside Python's logging: its C++ core writes notices straight to file
    descriptor 2 (that an actor's arguments live in the object store), and a driver thread
    prints the raylet's error reports (a failed actor's traceback) to ``sys.stdout``, where they
    would land in ``rag index --json``'s output. Inside, both go to ``path``; ``sys.stderr``,
    the log handlers that write to the terminal, and the stream yielded (for a progress bar)
    still reach the terminal."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    path.parent.mkdir(parents=True, exist_ok=True)
    sink = open(path, "a", buffering=1, encoding="utf-8", errors="replace")
    terminal = os.dup(2)
    term = os.fdopen(os.dup(terminal), "w", buffering=1, encoding="utf-8", errors="replace")
    old_out, old_err = sys.stdout, sys.stderr
    os.dup2(sink.fileno(), 2)
    moved = [(h, h.stream) for h in logging.getLogger().handlers
             if isinstance(h, logging.StreamHandler) and _fileno(h.stream) == 2]
    for h, _ in moved:
        h.setStream(term)
    if _fileno(old_err) == 2:
        sys.stderr = term
    sys.stdout = sink
    try:
        yield term
    finally:
        term.flush()
        sys.stdout, sys.stderr = old_out, old_err
        for h, old in moved:
            h.setStream(old)
        os.dup2(terminal, 2)
        os.close(terminal)
        term.close()
        sink.close()


def _fileno(stream) -> int | None:
    try:
        return stream.fileno()
    except (OSError, ValueError, AttributeError):
        return None


class RaySession:
    """Ray for one run: joins ``address`` (default ``RAY_ADDRESS``; ``auto`` finds a cluster
    started on this machine) or starts a local Ray of its own on ``num_cpus`` cores, on first
    use; :meth:`close` shuts down only what it started or joined. A Ray the caller started
    already is used as it is and left running."""

    def __init__(self, address: str | None = None, num_cpus: int | None = None):
        self.address = address if address is not None else os.environ.get("RAY_ADDRESS", "")
        self.num_cpus = num_cpus
        self.owned = False

    def start(self):
        """The ``ray`` module, connected."""
        ray = import_ray()
        if ray.is_initialized():
            return ray
        with quiet(), ray_logs_to_log():
            if self.address:
                check_reachable(self.address)
                log.info("joining the Ray cluster at %s", self.address)
                try:  # a 127.0.0.1:port address is joined as given
                    init_on_loopback(ray, address=self.address, log_to_driver=False,
                                     logging_level=logging.WARNING)
                except (ConnectionError, RuntimeError, ValueError) as e:
                    raise RagError(f"cannot join the Ray cluster at RAY_ADDRESS={self.address} "
                                   f"({first_line(e)}); fix RAY_ADDRESS, or unset it to run "
                                   "Ray on this machine") from None
            else:
                from .embed import cpu_threads

                log.info("starting a local Ray")
                try:  # "local": a Ray of its own, even beside a cluster started on this machine
                    init_local_ray(ray, self.num_cpus or cpu_threads(),
                                   logging_level=logging.WARNING)
                except (ConnectionError, RuntimeError, ValueError) as e:
                    raise RagError(f"cannot start a local Ray ({first_line(e)}); see "
                                   "/tmp/ray/session_latest/logs, or set RAY_ADDRESS to a "
                                   "running cluster") from None
        self.owned = True
        return ray

    def close(self) -> None:
        if self.owned:
            import ray

            with quiet(), ray_logs_to_log(), ray_output_to(ray_log_file()):
                ray.shutdown()
            self.owned = False

    def __enter__(self) -> RaySession:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def ray_log_file() -> Path:
    """Where what Ray prints in this process goes (its other logs stay in Ray's own folder,
    /tmp/ray/session_latest/logs on each node)."""
    from .config import cache_dir

    return cache_dir() / "ray" / "driver.log"


class EmbedActor:
    """One Ray actor of the pool: builds the embedder once, then embeds batch after batch.
    Each input row is one model batch (its row numbers and texts); each output row one
    passage's vector and row number."""

    def __init__(self, factory: Callable[[], object], expect_id: str):
        self.embedder = factory()
        if self.embedder.id != expect_id:
            raise RagError(f"a Ray worker loaded embedder {self.embedder.id!r}, not "
                           f"{expect_id!r}; install the same rag-news and model on every node")

    def __call__(self, batch: dict) -> dict:
        rows = [np.asarray(r, np.int64) for r in batch["i"]]
        vectors = [np.asarray(self.embedder.embed([str(t) for t in texts]), np.float32)
                   for texts in batch["texts"]]
        return {"i": np.concatenate(rows), "vector": np.concatenate(vectors)}


def model_batches(texts: Sequence[str], batch_size: int, window: int = EMBED_GROUP
                  ) -> list[np.ndarray]:
    """Row numbers of ``texts`` cut into model batches as the single-process path cuts them:
    each ``window`` of passages sorted longest first (stable), then ``batch_size`` at a time.

    >>> [b.tolist() for b in model_batches(["a", "ccc", "bb", "dddd"], 2, window=3)]
    [[1, 2], [0], [3]]
    """
    out = []
    for w in range(0, len(texts), window):
        order = w + np.argsort([-len(t) for t in texts[w:w + window]], kind="stable")
        out += [order[s:s + batch_size] for s in range(0, len(order), batch_size)]
    return out


class RayEmbedder:
    """An embedder whose ``embed`` runs on a Ray actor pool; everything else (``id``, ``dim``,
    ``tokenizer``, ``max_tokens``, ``embed_query``) is the local embedder's, so an index built
    through it is the one the local embedder would build.

    ``factory`` builds the same embedder inside each actor (it must be picklable);
    ``actors`` is the pool's size (0: one per ``actor_cpus`` cores of the cluster);
    ``batch_size`` the model batch, the local embedder's by default (the actors' embedder must
    use the same).
    """

    def __init__(self, local, factory: Callable[[], object], session: RaySession | None = None,
                 actors: int = 0, actor_cpus: int = 1, batch_size: int | None = None,
                 group_size: int = RAY_GROUP):
        self.local = local
        self.factory = factory
        self.session = session or RaySession()
        self.actors = actors
        self.actor_cpus = actor_cpus
        self.batch_size = batch_size or getattr(local, "batch_size", 64)
        self.group_size = group_size  # read by rag.index.IndexWriter: passages per embed call
        self.id, self.dim = local.id, local.dim
        self.tokenizer, self.max_tokens = local.tokenizer, local.max_tokens

    def pool_size(self) -> int:
        """The number of actors: as asked, or as many as the cluster's CPUs hold."""
        if self.actors:
            return self.actors
        import ray

        return max(1, int(ray.cluster_resources().get("CPU", 1) // self.actor_cpus))

    def embed(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), np.float32)
        if not len(texts):
            return out
        ray = self.session.start()
        with quiet(), ray_logs_to_log(), ray_output_to(ray_log_file()) as term:
            ctx = ray.data.DataContext.get_current()
            saved = (ctx.enable_progress_bars, ctx.print_on_execution_start,
                     ctx.raise_original_map_exception)
            # our own bar instead of Ray's; a worker's exception as it was raised, not wrapped
            (ctx.enable_progress_bars, ctx.print_on_execution_start,
             ctx.raise_original_map_exception) = False, False, True
            try:
                done = self._run(ray, texts, out, progress, term)
            except Exception as e:  # noqa: BLE001 - Ray wraps a worker's error in its types
                # stopped now, so that Ray's late reports of the failure print nothing
                self.session.close()
                if isinstance(e, RagError):
                    raise
                kind, message = worker_error(e)
                if kind.rpartition(".")[2] in _RAG_ERRORS:
                    raise RagError(message) from None
                raise RagError(f"embedding on Ray failed ({kind}: {message}); see Ray's logs "
                               "in /tmp/ray/session_latest/logs") from None
            finally:
                (ctx.enable_progress_bars, ctx.print_on_execution_start,
                 ctx.raise_original_map_exception) = saved
        if done != len(texts):
            raise RagError(f"Ray returned {done} vectors for {len(texts)} passages; run "
                           "`rag index --ray` again")
        return out

    def _run(self, ray, texts: Sequence[str], out: np.ndarray, progress: bool, term) -> int:
        """One Ray Data job over ``texts``; fills ``out`` by row number, returns the rows."""
        batches = model_batches(texts, self.batch_size)
        per_call = max(1, CALL // self.batch_size)
        size = min(self.pool_size(), -(-len(batches) // per_call))
        log.info("embedding %d passages on %d Ray actors", len(texts), size)
        ds = ray.data.from_items(
            [{"i": b.tolist(), "texts": [texts[i] for i in b]} for b in batches],
            override_num_blocks=-(-len(batches) // per_call),
        ).map_batches(
            EmbedActor,
            fn_constructor_args=(self.factory, self.id),
            batch_size=per_call,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=size),
            num_cpus=self.actor_cpus,
        )
        bar = None
        if progress and len(texts) >= PROGRESS_MIN:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(texts), desc="Embedding", unit="passage", file=term)
        done = 0
        try:
            # rows come back in any order, with their numbers
            for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                out[batch["i"]] = batch["vector"]
                done += len(batch["i"])
                if bar is not None:
                    bar.update(len(batch["i"]))
        finally:
            if bar is not None:
                bar.close()
        return done

    def embed_query(self, text: str) -> np.ndarray:
        return self.local.embed_query(text)


_RAG_ERRORS = {"RagError", "CorpusError", "IndexNotFoundError", "IndexDamagedError",
               "IndexMismatchError", "QueryError", "GeneratorError"}
_LAST_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Interrupt|Exit)): (.+)$")


def worker_error(e: BaseException) -> tuple[str, str]:
    """The type and message of the worker's own exception inside Ray's wrappers: the cause a
    ``RayTaskError`` carries, or else the last ``Type: message`` line of the worker traceback
    Ray's message quotes (an actor whose constructor failed)."""
    seen, inner = set(), e
    while inner is not None and id(inner) not in seen:
        seen.add(id(inner))
        if not type(inner).__module__.startswith("ray."):
            return type(inner).__name__, first_line(inner)
        cause = getattr(inner, "cause", None)
        inner = cause if isinstance(cause, BaseException) else inner.__cause__
    for line in reversed(str(e).splitlines()):
        if m := _LAST_LINE.match(line.strip()):
            return m.group(1), m.group(2)
    return type(e).__name__, first_line(e)


def ray_embedder(settings, local=None, session: RaySession | None = None) -> RayEmbedder:
    """A :class:`RayEmbedder` for ``settings`` (model, backend, batch size; ``ray_actors``
    and ``ray_actor_cpus``), around ``local`` (default: the embedder ``settings`` name). Each
    actor computes on as many threads as it has cores."""
    if local is None:
        from .embed import embedder_for

        local = embedder_for(settings)
    import_ray()  # say now, before any work, when Ray is missing
    cpus = settings.ray_actor_cpus
    factory = partial(load_embedder, settings.embedder, settings.embed_backend,
                      settings.batch_size, threads=cpus)
    return RayEmbedder(local, factory, session, actors=settings.ray_actors, actor_cpus=cpus)
