"""The library's records as the contract's messages."""

from __future__ import annotations

import json

from stablequeue.v1 import common_pb2, models_pb2
from stablequeue_coordinator.common import timestamp
from stablequeue_coordinator.kinds import KIND_TO_PB
from stablequeue_coordinator.library.records import TYPES
from stablequeue_coordinator.store.tables import LocationRow, ModelRow


def copy_progress(progress: models_pb2.ScanProgress) -> models_pb2.ScanProgress:
    copy = models_pb2.ScanProgress()
    copy.CopyFrom(progress)
    return copy


def model_to_pb(row: ModelRow, locations: list[LocationRow]) -> models_pb2.Model:
    model = models_pb2.Model(
        id=row.sha256,
        hashes=models_pb2.ModelHashes(
            sha256=row.sha256, autov2=row.autov2, autov1=row.autov1, autov3=row.autov3,
            blake3=row.blake3,
        ),
        name=row.name,
        type=TYPES.get(row.type, models_pb2.MODEL_TYPE_OTHER),
        base_model=row.base_model,
        size_bytes=row.size_bytes,
        description=row.description,
        trained_words=json.loads(row.trained_words or "[]"),
        tags=json.loads(row.tags or "[]"),
        civitai_model_id=row.civitai_model_id,
        civitai_version_id=row.civitai_version_id,
        version_name=row.version_name,
        source_url=row.source_url,
        has_preview=bool(row.preview_path),
        created_at=timestamp(row.created_at),
        updated_at=timestamp(row.updated_at),
    )  # fmt: skip
    for loc in locations:
        model.locations.append(
            common_pb2.ModelLocation(
                host=loc.host, path=loc.path, backend_name=loc.backend_name,
                app=KIND_TO_PB.get(loc.app, common_pb2.APP_KIND_UNSPECIFIED),
                seen_at=timestamp(loc.seen_at), verified=bool(loc.sha256 and loc.verified),
            )
        )  # fmt: skip
    return model
