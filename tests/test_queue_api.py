"""The Queue service over a real coordinator, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import grpc
import pytest

from stablequeue import Client, txt2img, workflow
from stablequeue.v1 import common_pb2, queue_pb2
from stablequeue_coordinator.queue.states import JobStatus
from tests.conftest import CoordinatorThread
from tests.helpers import PNG_1PX, raises

PENDING, PROCESSING = queue_pb2.JOB_STATUS_PENDING, queue_pb2.JOB_STATUS_PROCESSING
COMPLETED, FAILED = queue_pb2.JOB_STATUS_COMPLETED, queue_pb2.JOB_STATUS_FAILED
CANCELLED = queue_pb2.JOB_STATUS_CANCELLED
KSAMPLER_WORKFLOW = {
    "3": {"class_type": "KSampler", "inputs": {"seed": 7, "steps": 20, "model": ["4", 0]}},
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "x.safetensors"}},
}


def queue_ids(sq: Client) -> list[str]:
    return [job.id for job in sq.iter_jobs(statuses=[PENDING], page_size=3)]


def test_submit_stores_a_pending_job_with_every_parameter(sq: Client) -> None:
    spec = txt2img(
        "a lighthouse at dusk",
        negative_prompt="blurry",
        model="sdxl_base.safetensors",
        loras=[("detail", 0.6), ("style", -0.5)],
        seed=42,
        steps=30,
        cfg_scale=6.5,
        width=1024,
        height=768,
        sampler="DPM++ 2M",
        scheduler="karras",
        batch_size=2,
        iterations=3,
        app="forge",
        priority=5,
        label="forge txt2img",
        extra={"enable_hr": True},
    )
    job = sq.submit(spec)
    assert job.stage == queue_pb2.JOB_STAGE_QUEUED

    stored = sq.get_job(job.id)
    assert stored.status == PENDING
    # No server is registered: the dispatcher soon says so.
    assert stored.stage in (queue_pb2.JOB_STAGE_QUEUED, queue_pb2.JOB_STAGE_WAITING_FOR_SERVER)
    assert stored.spec.app == common_pb2.APP_KIND_FORGE
    params = stored.spec.params
    assert params.mode == queue_pb2.GENERATION_MODE_TXT2IMG
    assert (params.prompt, params.negative_prompt, params.seed) == (
        "a lighthouse at dusk",
        "blurry",
        42,
    )
    assert (params.steps, params.width, params.height, params.batch_size, params.iterations) == (
        30,
        1024,
        768,
        2,
        3,
    )
    assert params.cfg_scale == 6.5 and params.sampler == "DPM++ 2M" and params.scheduler == "karras"
    assert [(lora.name, lora.weight) for lora in params.loras] == [("detail", 0.6), ("style", -0.5)]
    assert json.loads(params.extra_json) == {"enable_hr": True}
    assert stored.spec.priority == 5 and stored.spec.label == "forge txt2img"
    assert stored.submitted_by == "local"
    assert stored.created_at.seconds > 0 and stored.attempts == 0


def test_img2img_and_workflow_jobs_are_accepted(sq: Client) -> None:
    img = sq.submit(txt2img("repaint", init_images=[PNG_1PX, PNG_1PX], denoising_strength=0.4))
    assert img.spec.params.mode == queue_pb2.GENERATION_MODE_IMG2IMG
    # Only GetJob carries the image bytes; lists and replies give the count.
    assert img.init_image_count == 2 and len(img.spec.params.init_images) == 0
    assert sq.get_job(img.id).spec.params.init_images == [PNG_1PX, PNG_1PX]
    [listed] = [j for j in sq.list_jobs().jobs if j.id == img.id]
    assert listed.init_image_count == 2 and len(listed.spec.params.init_images) == 0

    flow = sq.submit(workflow(KSAMPLER_WORKFLOW))
    assert flow.spec.app == common_pb2.APP_KIND_COMFYUI
    assert json.loads(sq.get_job(flow.id).spec.workflow_json) == KSAMPLER_WORKFLOW


def test_idempotency_key_returns_the_first_job(sq: Client) -> None:
    first = sq.call(
        "SubmitJob", queue_pb2.SubmitJobRequest(spec=txt2img("cat"), idempotency_key="k-1")
    )
    again = sq.call(
        "SubmitJob", queue_pb2.SubmitJobRequest(spec=txt2img("cat"), idempotency_key="k-1")
    )
    assert first.created and not again.created
    assert again.job.id == first.job.id
    assert sq.stats().pending == 1

    with raises(grpc.StatusCode.ALREADY_EXISTS, "idempotency_key", "different request"):
        sq.submit(txt2img("dog"), idempotency_key="k-1")
    assert sq.stats().pending == 1


def test_idempotency_key_of_a_deleted_job_submits_afresh(sq: Client) -> None:
    first = sq.submit(txt2img("cat"), idempotency_key="k-2")
    sq.cancel(first.id)
    sq.delete(first.id)
    second = sq.submit(txt2img("cat"), idempotency_key="k-2")
    assert second.id != first.id and second.status == PENDING


def test_submit_jobs_varies_seeds_in_one_batch(sq: Client) -> None:
    increment = sq.submit_many(txt2img("a", seed=100), 4, "increment")
    assert [j.spec.params.seed for j in increment] == [100, 101, 102, 103]
    assert len({j.batch_id for j in increment}) == 1
    assert [j.batch_index for j in increment] == [0, 1, 2, 3]
    assert [j.id for j in sq.iter_jobs(batch_id=increment[0].batch_id)] == [j.id for j in increment]

    fixed = sq.submit_many(txt2img("b", seed=9), 3, "fixed")
    assert [j.spec.params.seed for j in fixed] == [9, 9, 9]

    randoms = sq.submit_many(txt2img("c", seed=9), 5, "random")
    seeds = [j.spec.params.seed for j in randoms]
    assert len(set(seeds)) == 5 and all(0 <= s < 2**32 for s in seeds)

    random_base = sq.submit_many(txt2img("d", seed=-1), 3, "increment")
    base = random_base[0].spec.params.seed
    assert base >= 0 and [j.spec.params.seed for j in random_base] == [base, base + 1, base + 2]

    flows = sq.submit_many(workflow(KSAMPLER_WORKFLOW), 2, "increment")
    assert [json.loads(j.spec.workflow_json)["3"]["inputs"]["seed"] for j in flows] == [7, 8]
    assert sq.stats().pending == 4 + 3 + 5 + 3 + 2


def test_submit_jobs_with_idempotency_key_returns_the_same_batch(sq: Client) -> None:
    first = sq.submit_many(txt2img("a", seed=1), 3, "increment", idempotency_key="night-run")
    again = sq.submit_many(txt2img("a", seed=1), 3, "increment", idempotency_key="night-run")
    assert [j.id for j in again] == [j.id for j in first]
    assert sq.stats().pending == 3


def test_get_unknown_job_is_not_found(sq: Client) -> None:
    with raises(grpc.StatusCode.NOT_FOUND, "no job with id 'nope'"):
        sq.get_job("nope")
    for method, request in (
        ("CancelJob", queue_pb2.CancelJobRequest(id="nope")),
        ("RetryJob", queue_pb2.RetryJobRequest(id="nope")),
        ("DeleteJob", queue_pb2.DeleteJobRequest(id="nope")),
        ("SetPriority", queue_pb2.SetPriorityRequest(id="nope", priority=1)),
        ("MoveJob", queue_pb2.MoveJobRequest(id="nope", placement=queue_pb2.MOVE_PLACEMENT_FRONT)),
    ):
        with raises(grpc.StatusCode.NOT_FOUND, "nope"):
            sq.call(method, request)


def test_list_jobs_pages_through_the_queue_in_order(sq: Client) -> None:
    low = sq.submit_many(txt2img("low"), 4, "fixed")
    high = sq.submit(txt2img("high", priority=10))
    forge = sq.submit(txt2img("forge only", app="forge", server="gpu-1"))
    expected = [high.id, *[j.id for j in low], forge.id]

    seen, token, pages = [], "", 0
    while pages < 10:  # (three pages expected; never an endless walk)
        page = sq.list_jobs(page_size=2, page_token=token)
        seen += [j.id for j in page.jobs]
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert seen == expected and pages == 3

    assert [j.id for j in sq.list_jobs(app=common_pb2.APP_KIND_FORGE).jobs] == [forge.id]
    assert [j.id for j in sq.list_jobs(server="gpu-1").jobs] == [forge.id]
    assert [j.id for j in sq.list_jobs(submitted_by="local", page_size=100).jobs] == expected
    newest = [j.id for j in sq.list_jobs(order=queue_pb2.JOB_ORDER_NEWEST, page_size=100).jobs]
    assert newest[0] == forge.id and set(newest) == set(expected)


def test_list_jobs_filters_by_status(sq: Client) -> None:
    a, b, c = (sq.submit(txt2img(p)) for p in "abc")
    sq.cancel(b.id)
    assert [j.id for j in sq.list_jobs(statuses=[PENDING]).jobs] == [a.id, c.id]
    assert [j.id for j in sq.list_jobs(statuses=[CANCELLED]).jobs] == [b.id]
    assert [j.id for j in sq.list_jobs(statuses=[PENDING, CANCELLED]).jobs] == [a.id, b.id, c.id]


def test_list_jobs_rejects_bad_tokens_and_enums(sq: Client) -> None:
    with raises(grpc.StatusCode.INVALID_ARGUMENT, "page.page_token"):
        sq.list_jobs(page_token="not-a-token")
    sq.submit_many(txt2img("x"), 3, "fixed")
    queue_token = sq.list_jobs(page_size=1).next_page_token
    with raises(grpc.StatusCode.INVALID_ARGUMENT, "page.page_token"):
        sq.list_jobs(page_token=queue_token, order=queue_pb2.JOB_ORDER_NEWEST)
    with raises(grpc.StatusCode.INVALID_ARGUMENT, "statuses[0]", "unknown value 42"):
        sq.list_jobs(statuses=[42])
    with raises(grpc.StatusCode.INVALID_ARGUMENT, "page.page_size"):
        sq.list_jobs(page_size=5000)


def test_cancel_pending_job_is_final(sq: Client) -> None:
    job = sq.submit(txt2img("x"))
    cancelled = sq.cancel(job.id)
    assert cancelled.status == CANCELLED and "cancelled by" in cancelled.reason
    assert cancelled.finished_at.seconds > 0
    with raises(grpc.StatusCode.FAILED_PRECONDITION, "already cancelled"):
        sq.cancel(job.id)


def test_cancel_running_job_ends_it(server: CoordinatorThread, sq: Client) -> None:
    job = sq.submit(txt2img("x"))
    started = server.run(server.coordinator.queue.start(job.id, "gpu-1"))
    assert started.status == PROCESSING and started.attempts == 1 and started.server == "gpu-1"
    assert sq.cancel(job.id).status == CANCELLED


def test_retry_puts_a_failed_job_at_the_back(server: CoordinatorThread, sq: Client) -> None:
    first, second = sq.submit(txt2img("1")), sq.submit(txt2img("2"))
    server.run(server.coordinator.queue.start(first.id, "gpu-1"))
    failed = server.run(server.coordinator.queue.finish(first.id, JobStatus.FAILED, "OOM"))
    assert failed.status == FAILED and failed.reason == "OOM"

    retried = sq.retry(first.id)
    assert retried.status == PENDING and retried.attempts == 0 and retried.server == ""
    assert queue_ids(sq) == [second.id, first.id]
    with raises(grpc.StatusCode.FAILED_PRECONDITION, "only failed or cancelled"):
        sq.retry(second.id)


def test_completed_job_cannot_be_retried_moved_or_cancelled(
    server: CoordinatorThread, sq: Client
) -> None:
    job = sq.submit(txt2img("x"))
    server.run(server.coordinator.queue.start(job.id, "gpu-1"))
    done = server.run(server.coordinator.queue.finish(job.id, JobStatus.COMPLETED))
    assert done.status == COMPLETED and done.stage == queue_pb2.JOB_STAGE_DONE
    with raises(grpc.StatusCode.FAILED_PRECONDITION, "only failed or cancelled"):
        sq.retry(job.id)
    with raises(grpc.StatusCode.FAILED_PRECONDITION, "only pending jobs can be moved"):
        sq.move(job.id, "front")
    with raises(grpc.StatusCode.FAILED_PRECONDITION, "already completed"):
        sq.cancel(job.id)


def test_delete_only_finished_jobs(server: CoordinatorThread, sq: Client) -> None:
    pending, running = sq.submit(txt2img("p")), sq.submit(txt2img("r"))
    server.run(server.coordinator.queue.start(running.id, "gpu-1"))
    with raises(grpc.StatusCode.FAILED_PRECONDITION, "is pending; cancel it"):
        sq.delete(pending.id)
    with raises(grpc.StatusCode.FAILED_PRECONDITION, "is processing; cancel it"):
        sq.delete(running.id)
    sq.cancel(pending.id)
    sq.delete(pending.id)
    with raises(grpc.StatusCode.NOT_FOUND):
        sq.get_job(pending.id)
    assert sq.stats().processing == 1


def test_move_front_back_before_after(sq: Client) -> None:
    a, b, c, d = (sq.submit(txt2img(p)).id for p in "abcd")
    sq.move(d, "front")
    assert queue_ids(sq) == [d, a, b, c]
    sq.move(d, "back")
    assert queue_ids(sq) == [a, b, c, d]
    sq.move(d, "before", b)
    assert queue_ids(sq) == [a, d, b, c]
    sq.move(a, "after", c)
    assert queue_ids(sq) == [d, b, c, a]
    sq.move(c, "before", d)
    assert queue_ids(sq) == [c, d, b, a]


def test_move_next_to_a_job_of_another_priority_takes_its_priority(sq: Client) -> None:
    urgent = sq.submit(txt2img("urgent", priority=50)).id
    normal = sq.submit(txt2img("normal")).id
    moved = sq.move(normal, "before", urgent)
    assert moved.spec.priority == 50
    assert queue_ids(sq) == [normal, urgent]


def test_many_moves_into_the_same_gap_keep_the_order(sq: Client) -> None:
    first, last = sq.submit(txt2img("first")).id, sq.submit(txt2img("last")).id
    inserted = []
    for i in range(30):  # more halvings than the gap allows: forces a renumber
        job = sq.submit(txt2img(f"m{i}")).id
        sq.move(job, "after", first)
        inserted.insert(0, job)
    assert queue_ids(sq) == [first, *inserted, last]


def test_move_and_priority_errors(server: CoordinatorThread, sq: Client) -> None:
    a, b = sq.submit(txt2img("a")).id, sq.submit(txt2img("b")).id
    with raises(grpc.StatusCode.INVALID_ARGUMENT, "anchor_id", "required"):
        sq.move(a, "before")
    with raises(grpc.StatusCode.INVALID_ARGUMENT, "anchor_id", "itself"):
        sq.move(a, "before", a)
    with raises(grpc.StatusCode.INVALID_ARGUMENT, "placement"):
        sq.call("MoveJob", queue_pb2.MoveJobRequest(id=a))
    with raises(grpc.StatusCode.NOT_FOUND, "ghost"):
        sq.move(a, "after", "ghost")
    server.run(server.coordinator.queue.start(b, "gpu-1"))
    with raises(grpc.StatusCode.FAILED_PRECONDITION, "only pending jobs can be used as an anchor"):
        sq.move(a, "after", b)
    with raises(grpc.StatusCode.FAILED_PRECONDITION, "only pending jobs can be reprioritised"):
        sq.set_priority(b, 3)
    with raises(grpc.StatusCode.INVALID_ARGUMENT, "priority", "-1000 .. 1000"):
        sq.set_priority(a, 5000)


def test_set_priority_runs_higher_first(sq: Client) -> None:
    a, b, c = (sq.submit(txt2img(p)).id for p in "abc")
    assert sq.set_priority(c, 10).spec.priority == 10
    sq.set_priority(a, -1)
    assert queue_ids(sq) == [c, b, a]


def test_pause_and_resume_survive_in_the_stats(sq: Client) -> None:
    assert sq.stats().paused is False
    assert sq.pause().paused is True
    assert sq.stats().paused is True
    assert sq.resume().paused is False
    with raises(grpc.StatusCode.NOT_FOUND, "server 'gpu-9' is not registered"):
        sq.pause("gpu-9")


def test_stats_count_jobs_by_status(server: CoordinatorThread, sq: Client) -> None:
    jobs = [sq.submit(txt2img(str(i))).id for i in range(5)]
    sq.cancel(jobs[0])
    server.run(server.coordinator.queue.start(jobs[1], "gpu"))
    server.run(server.coordinator.queue.start(jobs[2], "gpu"))
    server.run(server.coordinator.queue.finish(jobs[2], JobStatus.COMPLETED))
    stats = sq.stats()
    assert (stats.pending, stats.processing, stats.completed, stats.failed, stats.cancelled) == (
        2,
        1,
        1,
        0,
        1,
    )


@pytest.mark.parametrize("scope", ["admin", "submit", "node"])
def test_api_keys_are_shown_once_and_listed_without_secrets(sq: Client, scope: str) -> None:
    created = sq.create_key(f"{scope}-key", scope)
    assert created.secret.startswith("sq_") and len(created.secret) > 40
    listed = sq.list_keys()
    assert [k.id for k in listed] == [created.key.id]
    assert created.secret not in str(listed)
    revoked = sq.revoke_key(created.key.id)
    assert revoked.revoked_at.seconds > 0
    assert sq.list_keys() == []
    assert [k.id for k in sq.list_keys(include_revoked=True)] == [created.key.id]


def submit_together(
    sq: Client, specs: list[queue_pb2.SubmitJobRequest]
) -> list[queue_pb2.Job | Exception]:
    """Every request at once (so the coordinator commits them in groups)."""
    from concurrent.futures import ThreadPoolExecutor

    def one(request: queue_pb2.SubmitJobRequest) -> queue_pb2.Job | Exception:
        try:
            return sq.call("SubmitJob", request).job
        except Exception as e:
            return e

    with ThreadPoolExecutor(len(specs)) as pool:
        return list(pool.map(one, specs))


POISON_SQLITE = [
    "CREATE TRIGGER poison BEFORE INSERT ON jobs WHEN NEW.label = 'poison' "
    "BEGIN SELECT RAISE(ABORT, 'poisoned'); END"
]
POISON_POSTGRES = [
    "CREATE FUNCTION poison() RETURNS trigger AS $$ BEGIN IF NEW.label = 'poison' THEN "
    "RAISE EXCEPTION 'poisoned'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql",
    "CREATE TRIGGER poison BEFORE INSERT ON jobs FOR EACH ROW EXECUTE FUNCTION poison()",
]


def test_a_bad_submit_among_many_fails_alone(server: CoordinatorThread, sq: Client) -> None:
    """60 submits at once with one carrying a NUL (PostgreSQL refuses NUL in text, and
    took the whole group commit down with it): the 60 are stored, the one is refused
    naming its field. A row the database itself refuses also fails alone."""
    from sqlalchemy import text

    good = [queue_pb2.SubmitJobRequest(spec=txt2img(f"job {i}")) for i in range(60)]
    bad = queue_pb2.SubmitJobRequest(spec=txt2img("bad", label="a\x00b"))
    outcomes = submit_together(sq, [*good[:30], bad, *good[30:]])
    refused = [o for o in outcomes if isinstance(o, Exception)]
    assert len(refused) == 1 and "spec.label: must not contain NUL" in str(refused[0])
    # The database refuses a row (a trigger stands for any refusal validation missed).
    db = server.coordinator.db
    with db.engine.begin() as conn:
        for statement in POISON_SQLITE if db.is_sqlite else POISON_POSTGRES:
            conn.execute(text(statement))
    poison = queue_pb2.SubmitJobRequest(spec=txt2img("poison", label="poison"))
    outcomes = submit_together(sq, [*good[:30], poison, *good[30:]])
    refused = [o for o in outcomes if isinstance(o, Exception)]
    assert len(refused) == 1 and len(outcomes) == 61
    assert sq.stats().pending == 120


def job_inserts(server: CoordinatorThread) -> list[tuple[str, int]]:
    """(thread, rows) of every INSERT of jobs the coordinator runs from now on."""
    from sqlalchemy import event

    inserts: list[tuple[str, int]] = []

    def seen(
        _conn: object, _cursor: object, statement: str, parameters: object, *_: object
    ) -> None:
        if statement.startswith("INSERT INTO jobs "):
            rows = len(parameters) if isinstance(parameters, list) else 1
            inserts.append((threading.current_thread().name, rows))

    event.listen(server.coordinator.db.engine, "before_cursor_execute", seen)
    return inserts


def test_a_lone_submit_commits_on_the_event_loop_and_a_burst_groups_on_the_store_thread(
    server: CoordinatorThread, sq: Client
) -> None:
    """A submit made while nothing else is under way is committed on SQLite by the event
    loop itself: a hand-off to the store thread and back cost a lone caller more than
    the transaction. Submits that come together still share the store thread's
    transactions; PostgreSQL (a network round trip away) always commits there."""
    inserts = job_inserts(server)
    for i in range(5):
        sq.submit(txt2img(f"alone {i}"))
        time.sleep(0.01)  # the last call ended well before the next
    alone = [thread for thread, _ in inserts]
    if server.coordinator.db.is_sqlite:
        assert alone == [server.thread.name] * 5
    else:
        assert alone == ["sq-db_0"] * 5
    inserts.clear()
    outcomes = submit_together(
        sq, [queue_pb2.SubmitJobRequest(spec=txt2img(f"burst {i}")) for i in range(40)]
    )
    assert not [o for o in outcomes if isinstance(o, Exception)]
    assert sum(rows for _, rows in inserts) == 40
    assert max(rows for thread, rows in inserts if thread == "sq-db_0") > 1  # grouped
    assert sq.stats().pending == 45


def test_lone_submits_leave_the_log_checkpoint_to_the_store_thread(
    sqlite_server: CoordinatorThread,
) -> None:
    """A commit on the event loop never checkpoints SQLite's write-ahead log (that
    flushes to the disk); the store thread does one after every CHECKPOINT_AFTER of
    them, so a caller submitting one job at a time does not grow the log without end
    (300 one-row commits: ~12 MB of log unchecked)."""
    from stablequeue_coordinator.store.db import CHECKPOINT_AFTER

    sq = sqlite_server.client()
    inserts = job_inserts(sqlite_server)
    for i in range(3 * CHECKPOINT_AFTER):
        sq.submit(txt2img(f"alone {i}"))
    on_loop = sum(rows for thread, rows in inserts if thread == sqlite_server.thread.name)
    assert on_loop > 2 * CHECKPOINT_AFTER
    database = sqlite_server.coordinator.db.url.database
    assert database is not None
    log = Path(f"{database}-wal").stat().st_size
    assert 0 < log < 8 << 20, f"{log:,} bytes of write-ahead log"


def test_queue_counts_follow_every_change_and_agree_with_the_store(
    server: CoordinatorThread, sq: Client
) -> None:
    """GetQueueStats answers from counts kept in step with each committed change (a
    GROUP BY over the whole history cost 22 ms at 300,000 jobs): after submits, starts,
    finishes, a cancel, a retry, a delete and a refused change they still agree with a
    count of the stored rows, for everyone's jobs and for one key's."""
    from sqlalchemy import func, select

    from stablequeue_coordinator.auth.principal import LOCAL, Principal, Scope
    from stablequeue_coordinator.errors import NotFound
    from stablequeue_coordinator.store.tables import JobRow

    queue = server.coordinator.queue
    assert sq.stats().pending == 0  # the counts are read now; what follows moves them
    other = Principal(key_id="k-other", name="other", scope=Scope.SUBMIT)
    mine = [j.id for j in sq.submit_many(txt2img("mine"), 6)]
    theirs, _ = server.run(queue.submit_many(other, txt2img("theirs"), 3, 0))
    server.run(queue.start(mine[0], "gpu"))
    server.run(queue.finish(mine[0], JobStatus.COMPLETED))
    server.run(queue.start(mine[1], "gpu"))
    server.run(queue.finish(mine[1], JobStatus.FAILED, "OOM"))
    server.run(queue.start(mine[2], "gpu"))
    server.run(queue.start(theirs[0].id, "gpu"))
    with raises(grpc.StatusCode.FAILED_PRECONDITION):
        sq.cancel(mine[0])  # completed: refused, nothing moves
    sq.cancel(mine[3])
    sq.retry(mine[1])
    sq.delete(mine[3])
    with pytest.raises(NotFound):
        server.run(queue.finish(mine[3], JobStatus.COMPLETED))  # deleted meanwhile

    def stored(owner: str | None) -> dict[str, int]:
        query = select(JobRow.status, func.count()).group_by(JobRow.status)
        if owner is not None:
            query = query.where(JobRow.submitted_by == owner)
        return dict(server.coordinator.db.run_sync(lambda s: s.exec(query).all()))

    def shown(stats: queue_pb2.QueueStats) -> dict[str, int]:
        names = ("pending", "processing", "completed", "failed", "cancelled")
        return {name: getattr(stats, name) for name in names if getattr(stats, name)}

    assert shown(sq.stats()) == stored(None) == {
        "pending": 5, "processing": 2, "completed": 1,
    }  # fmt: skip
    assert shown(server.run(queue.stats(other))) == stored("k-other") == {
        "pending": 2, "processing": 1,
    }  # fmt: skip
    assert shown(server.run(queue.stats(LOCAL))) == stored(None)


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
def test_the_first_stats_after_a_start_count_nothing(tmp_path: Path, database_url: str) -> None:
    """The jobs are counted when the coordinator becomes active, not by the first
    GetQueueStats (87 ms at 1,000,000 jobs): that call runs no count of the store, and
    its figures are those of the jobs a previous run stored."""
    from sqlalchemy import event

    from tests.conftest import make_settings

    first = CoordinatorThread(make_settings(tmp_path, database_url))
    try:
        with first.client() as sq:
            jobs = sq.submit_many(txt2img("stored before the restart"), 3)
            sq.cancel(jobs[0].id)
    finally:
        first.close()
    second = CoordinatorThread(make_settings(tmp_path, database_url))
    statements: list[str] = []

    def seen(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        statements.append(statement)

    engine = second.coordinator.db.engine
    event.listen(engine, "before_cursor_execute", seen)
    try:
        with second.client() as sq:
            stats = sq.stats()
        assert (stats.pending, stats.cancelled) == (2, 1)
        assert statements and not [s for s in statements if "GROUP BY" in s.upper()]
    finally:
        event.remove(engine, "before_cursor_execute", seen)
        second.close()
