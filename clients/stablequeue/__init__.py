"""StableQueue Python SDK (needs only grpcio and protobuf).

from stablequeue import Client, txt2img
with Client() as sq:
    job = sq.submit(txt2img("a lighthouse at dusk", steps=20, model="sdxl_base"))
    for event in sq.watch_job(job.id):
        print(event.job.status, event.job.progress.fraction)
"""

from stablequeue.client import AsyncClient, Client, StableQueueError
from stablequeue.specs import txt2img, workflow

__all__ = ["AsyncClient", "Client", "StableQueueError", "txt2img", "workflow"]
