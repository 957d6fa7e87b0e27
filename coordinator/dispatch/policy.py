"""The scheduling decision as a pure function over plain data.

`plan()` walks pending jobs in queue order and gives each the best free server:
healthy, enabled, not paused, of a kind that can run it, under its concurrency
limit, the job's target server if it named one — preferring a server whose
loaded model is the one the job wants, then the least busy. Jobs that cannot
be placed get the reason, shown to the user as the job's stage.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from stablequeue_coordinator.kinds import FIXED_MODEL_KINDS, KINDS, KINDS_FOR_APP


@dataclass(frozen=True)
class ServerView:
    alias: str
    kind: str
    up: bool
    enabled: bool = True
    paused: bool = False
    running: int = 0
    capacity: int = 1
    loaded_model: str = ""
    down_reason: str = ""
    model_names: tuple[str, ...] = ()  # other names its loaded model answers to
    loras: tuple[str, ...] | None = None  # the LoRA files it has, where known


HASH = re.compile(r"[0-9a-fA-F]{8,64}")


def has_lora(files: Sequence[str], name: str) -> bool:
    """True when one of `files` (paths below a LoRA folder) is the LoRA `name` names: by
    its path or file name, with or without the extension. A hash cannot be told from
    file names: it counts as there."""
    if HASH.fullmatch(name.strip()):
        return True
    want = name.strip().lower().replace("\\", "/")
    for path in files:
        path = path.lower()
        stem = path.rsplit(".", 1)[0]
        if want in (path, stem, path.rsplit("/", 1)[-1], stem.rsplit("/", 1)[-1]):
            return True
    return False


def lacking_loras(server: ServerView, loras: Sequence[str]) -> list[str]:
    """The LoRAs of `loras` the server reports it does not have."""
    if server.loras is None:
        return []
    return [name for name in loras if not has_lora(server.loras, name)]


def serves(server: ServerView, wanted: str) -> bool:
    """True when the server's loaded model is the one `wanted` names (by its title or
    any other name it answers to)."""
    return any(model_matches(name, wanted) for name in (server.loaded_model, *server.model_names))


@dataclass(frozen=True)
class JobView:
    id: str
    app: str
    target: str = ""
    model: str = ""
    loras: tuple[str, ...] = ()
    # Servers that have the job's model and LoRAs (None: no inventory to go by).
    hosts: frozenset[str] | None = None
    # (server, the required files it lacks) for workflow jobs that list their files.
    missing: tuple[tuple[str, str], ...] = ()


@dataclass
class Plan:
    assignments: list[tuple[str, str]] = field(default_factory=list)  # (job id, server alias)
    waiting: dict[str, str] = field(default_factory=dict)  # job id -> why it waits


def model_matches(loaded: str, wanted: str) -> bool:
    """True when a backend's loaded-model title names the model a job asks for.

    Titles look like `sd_xl_base_1.0.safetensors [31e35c80fc]` (Forge) or a path
    (sd-server); a job names a model by name, file name, or hash prefix.
    """
    if not loaded or not wanted:
        return False
    want = wanted.strip().lower()
    title = loaded.strip().lower()
    name, _, bracket = title.partition(" [")
    short_hash = bracket.rstrip("]")
    base = re.split(r"[\\/]", name)[-1]
    names = {title, name, base, base.rsplit(".", 1)[0], name.rsplit(".", 1)[0]}
    return want in names or (
        len(want) >= 8 and bool(short_hash) and short_hash.startswith(want[:10])
    )


def why_unsuitable(server: ServerView, job: JobView) -> str | None:
    """Why `server` can never take `job` right now, ignoring its free slots."""
    if server.kind not in KINDS_FOR_APP.get(job.app, ()):
        shown = KINDS[server.kind].app_name if server.kind in KINDS else server.kind
        return f"{server.alias} is a {shown} server"
    if not server.enabled:
        return f"server {server.alias} is disabled"
    if server.paused:
        return f"server {server.alias} is paused"
    if not server.up:
        return f"server {server.alias} is down" + (
            f": {server.down_reason}" if server.down_reason else ""
        )
    if job.hosts is not None and server.alias not in job.hosts:
        wanted = dict(job.missing).get(server.alias) or ", ".join(
            x for x in (job.model, *job.loras) if x
        )
        return f"{server.alias} does not have {wanted}"
    if (
        server.kind in FIXED_MODEL_KINDS
        and job.model
        and server.loaded_model
        and not serves(server, job.model)
    ):
        return f"{server.alias} serves only {server.loaded_model}"
    lacking = lacking_loras(server, job.loras)
    if lacking:
        return f"{server.alias} does not have LoRA {', '.join(lacking)}"
    return None


def choose_server(servers: Sequence[ServerView], job: JobView) -> tuple[str | None, str]:
    """(alias, "") for the best free server, or (None, why the job waits)."""
    usable, why = suitable(servers, job)
    return pick(usable, job) if usable else (None, why)


def suitable(servers: Sequence[ServerView], job: JobView) -> tuple[list[ServerView], str]:
    """The servers that could take `job`, free slots aside, or none and why it waits.
    What decides does not change with the slots a plan fills (`why_unsuitable`)."""
    candidates = [s for s in servers if not job.target or s.alias == job.target]
    if not candidates:
        if job.target:
            return [], f"target server {job.target} is not registered"
        return [], f"no {job.app if job.app != 'any' else ''} server is registered".replace(
            "  ", " "
        )
    usable, reasons = [], []
    for server in candidates:
        reason = why_unsuitable(server, job)
        if reason is None:
            usable.append(server)
        elif server.kind in KINDS_FOR_APP.get(job.app, ()):
            reasons.append(reason)
    if not usable:
        kinds = "/".join(KINDS_FOR_APP.get(job.app, ()))
        return [], "; ".join(reasons) or f"no {kinds} server is registered"
    return usable, ""


def pick(usable: Sequence[ServerView], job: JobView) -> tuple[str | None, str]:
    """Of servers that suit `job`, the free one it is best on: one already serving its
    model, then the least loaded."""
    free = [s for s in usable if s.running < s.capacity]
    if not free:
        return None, "waiting for a free slot on " + ", ".join(s.alias for s in usable)
    best = min(
        free,
        key=lambda s: (
            not serves(s, job.model),
            s.running / s.capacity,
            s.alias,
        ),
    )
    return best.alias, ""


def plan(servers: Sequence[ServerView], jobs: Sequence[JobView], max_waiting: int = 50) -> Plan:
    """Assignments for `jobs` (in queue order), counting the slots each one takes.

    Once every server is full, only the first `max_waiting` waiting jobs get a reason.
    Jobs alike in all but their id have the same servers to choose from, worked out
    once per plan, and the same answer while no assignment changes the servers' slots
    (a farm's queue is mostly batches of one spec, and walking every server for each
    job cost ~0.3 ms a round with 150 of them).
    """
    views = {s.alias: s for s in servers}
    free = sum(1 for v in views.values() if v.running < v.capacity)
    result = Plan()
    usable: dict[tuple[object, ...], tuple[list[str], str]] = {}  # likeness -> aliases, why not
    known: dict[tuple[object, ...], str] = {}  # a job's likeness -> why it waits
    for job in jobs:
        if len(result.waiting) >= max_waiting and not free:
            break
        likeness = (job.app, job.target, job.model, job.loras, job.hosts, job.missing)
        if likeness in known:
            result.waiting[job.id] = known[likeness]
            continue
        if likeness not in usable:
            fits, why = suitable(list(views.values()), job)
            usable[likeness] = [s.alias for s in fits], why
        aliases, why = usable[likeness]
        alias, reason = pick([views[a] for a in aliases], job) if aliases else (None, why)
        if alias is None:
            result.waiting[job.id] = known[likeness] = reason
            continue
        result.assignments.append((job.id, alias))
        chosen = views[alias]
        views[alias] = ServerView(**{**chosen.__dict__, "running": chosen.running + 1})
        if chosen.running + 1 >= chosen.capacity:
            free -= 1
        known.clear()  # the slots changed
    return result
