"""ModelsService servicer: the model library (scan, list, search, locate, resolve,
preview, inventories, metadata) and downloads."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from stablequeue.v1 import common_pb2, models_pb2, models_pb2_grpc
from stablequeue_coordinator.auth import principal as auth
from stablequeue_coordinator.auth.keys import KeyService
from stablequeue_coordinator.common import check_enum
from stablequeue_coordinator.downloads.service import DownloadService
from stablequeue_coordinator.errors import InvalidArgument, NotFound, PermissionDenied
from stablequeue_coordinator.kinds import KIND_FROM_PB
from stablequeue_coordinator.library.convert import model_to_pb
from stablequeue_coordinator.library.inventory import SHA256, InventoryReport
from stablequeue_coordinator.library.records import LOCAL_HOST, TYPE_NAMES
from stablequeue_coordinator.library.service import ModelLibrary
from stablequeue_coordinator.nodes.service import NodeService

Ctx = grpc.aio.ServicerContext
MAX_QUERY_CHARS = 500
MAX_PAGE = 500
FILE_CHUNK = 2 * 1024 * 1024  # ReadModelFile message size


def _page(page: common_pb2.PageRequest) -> tuple[int, str]:
    if not 0 <= page.page_size <= MAX_PAGE:
        raise InvalidArgument("page.page_size", f"must be within 0 .. {MAX_PAGE}")
    return page.page_size or 50, page.page_token


def _type(value: int) -> str:
    check_enum("type", models_pb2.ModelType, value, allow_zero=True)
    return TYPE_NAMES.get(value, "")


class ModelsServicer(models_pb2_grpc.ModelsServiceServicer):
    def __init__(
        self,
        library: ModelLibrary,
        downloads: DownloadService,
        nodes: NodeService | None = None,
        keys: KeyService | None = None,
    ) -> None:
        self._library = library
        self._downloads = downloads
        self._nodes = nodes
        self._keys = keys

    async def ScanLibrary(
        self, request: models_pb2.ScanLibraryRequest, context: Ctx
    ) -> AsyncIterator[models_pb2.ScanProgress]:
        if not self._library.roots and not request.roots:
            raise InvalidArgument(
                "roots", "no model roots are configured (start the coordinator with --model-root)"
            )
        async for progress in self._library.scan(
            list(request.roots), request.force_rehash, request.fetch_civitai
        ):
            yield progress

    async def SyncInventory(
        self, request_iterator: AsyncIterator[models_pb2.InventoryItem], context: Ctx
    ) -> models_pb2.SyncInventoryResponse:
        """A full snapshot of one host's model files: a header, then the files."""
        report = InventoryReport()
        async for item in request_iterator:
            if item.HasField("header"):
                head = item.header
                report.header(head.host, KIND_FROM_PB.get(head.app, ""), head.incremental)
                check_enum("header.app", common_pb2.AppKind, head.app, allow_zero=True)
                await self._may_sync(head.host)
                continue
            file = item.file
            report.add(
                file.path, file.backend_name, TYPE_NAMES.get(file.type, "other"),
                file.hashes.sha256, file.size_bytes, file.removed,
            )  # fmt: skip
        report.finish()
        matched, unknown = await self._library.sync_inventory(
            report.host, report.app, report.entries, report.incremental, report.removed
        )
        return models_pb2.SyncInventoryResponse(
            files_received=len(report.entries) + len(report.removed),
            models_matched=matched,
            needs_hash=unknown,
        )

    async def RefreshMetadata(
        self, request: models_pb2.RefreshMetadataRequest, context: Ctx
    ) -> models_pb2.RefreshMetadataResponse:
        if not request.id.strip():
            raise InvalidArgument("id", "required")
        model, locations, _ = await self._library.refresh(request.id, request.fetch_civitai)
        return models_pb2.RefreshMetadataResponse(model=model_to_pb(model, locations))

    async def ListModels(
        self, request: models_pb2.ListModelsRequest, context: Ctx
    ) -> models_pb2.ListModelsResponse:
        size, token = _page(request.page)
        found, next_token = await self._library.list(
            type_name=_type(request.type), base_model=request.base_model, host=request.host,
            page_size=size, page_token=token, missing_metadata=request.missing_metadata,
        )  # fmt: skip
        return models_pb2.ListModelsResponse(
            models=[model_to_pb(m, locs) for m, locs in found], next_page_token=next_token
        )

    async def SearchModels(
        self, request: models_pb2.SearchModelsRequest, context: Ctx
    ) -> models_pb2.SearchModelsResponse:
        size, token = _page(request.page)
        if len(request.query) > MAX_QUERY_CHARS:
            raise InvalidArgument("query", f"at most {MAX_QUERY_CHARS} characters")
        found, next_token = await self._library.list(
            type_name=_type(request.type), text=request.query, page_size=size, page_token=token
        )
        return models_pb2.SearchModelsResponse(
            models=[model_to_pb(m, locs) for m, locs in found], next_page_token=next_token
        )

    async def GetModel(
        self, request: models_pb2.GetModelRequest, context: Ctx
    ) -> models_pb2.GetModelResponse:
        if not request.id.strip():
            raise InvalidArgument("id", "required")
        model, locations = await self._library.get(request.id)
        return models_pb2.GetModelResponse(model=model_to_pb(model, locations))

    async def _may_sync(self, host: str) -> None:
        """A node key syncs only its own host (bound on first use); the coordinator's
        own files are its scan's alone.

        Raises:
            PermissionDenied: naming the host.
        """
        who = auth.current()
        if who.is_admin:
            return
        if host == LOCAL_HOST:
            raise PermissionDenied(f"{host!r} is the coordinator's own inventory (its scan)")
        if self._keys is not None:
            await self._keys.bind_node(who, host)

    async def LocateModel(
        self, request: models_pb2.LocateModelRequest, context: Ctx
    ) -> models_pb2.LocateModelResponse:
        if not request.reference.strip():
            raise InvalidArgument("reference", "required")
        missing: NotFound | None = None
        try:
            model, locations = await self._library.get(request.reference)
            pb: models_pb2.Model | None = model_to_pb(model, locations)
        except NotFound as e:
            pb, missing = None, e
        on_nodes = [] if self._nodes is None else self._nodes.locate(request.reference, pb)
        if pb is None:
            if not on_nodes:
                assert missing is not None
                raise missing
            # Only node models have it: a model the library has not hashed anywhere.
            pb = models_pb2.Model(
                name=request.reference.strip(), type=models_pb2.MODEL_TYPE_CHECKPOINT
            )
        pb.locations.extend(on_nodes)
        return models_pb2.LocateModelResponse(model=pb, locations=pb.locations)

    async def ResolveModel(
        self, request: models_pb2.ResolveModelRequest, context: Ctx
    ) -> models_pb2.ResolveModelResponse:
        if not request.reference.strip():
            raise InvalidArgument("reference", "required")
        model, locations = await self._library.get(request.reference)
        names = [loc.backend_name for loc in locations if loc.host == request.host]
        if request.host and not names:
            raise NotFound(f"model {model.name!r} ({model.autov2}) is not on {request.host}")
        return models_pb2.ResolveModelResponse(
            model=model_to_pb(model, locations), backend_name=names[0] if names else ""
        )

    async def DeleteModel(
        self, request: models_pb2.DeleteModelRequest, context: Ctx
    ) -> models_pb2.DeleteModelResponse:
        if not request.id.strip():
            raise InvalidArgument("id", "required")
        deleted = await self._library.delete_files(request.id, request.path)
        return models_pb2.DeleteModelResponse(deleted_paths=deleted)

    async def GetModelPreview(
        self, request: models_pb2.GetModelPreviewRequest, context: Ctx
    ) -> models_pb2.GetModelPreviewResponse:
        data, mime = await self._library.preview(request.id)
        return models_pb2.GetModelPreviewResponse(data=data, mime=mime)

    # ---- downloads ----------------------------------------------------------

    async def StartDownload(
        self, request: models_pb2.StartDownloadRequest, context: Ctx
    ) -> models_pb2.StartDownloadResponse:
        return models_pb2.StartDownloadResponse(download=await self._downloads.begin(request))

    async def ListDownloads(
        self, request: models_pb2.ListDownloadsRequest, context: Ctx
    ) -> models_pb2.ListDownloadsResponse:
        for i, state in enumerate(request.states):
            check_enum(f"states[{i}]", models_pb2.DownloadState, state, allow_zero=False)
        downloads = await self._downloads.list(list(request.states))
        return models_pb2.ListDownloadsResponse(downloads=downloads)

    async def GetDownload(
        self, request: models_pb2.GetDownloadRequest, context: Ctx
    ) -> models_pb2.GetDownloadResponse:
        return models_pb2.GetDownloadResponse(download=await self._downloads.get(request.id))

    async def WatchDownload(
        self, request: models_pb2.WatchDownloadRequest, context: Ctx
    ) -> AsyncIterator[models_pb2.Download]:
        async for download in self._downloads.watch(request.id):
            yield download

    async def CancelDownload(
        self, request: models_pb2.CancelDownloadRequest, context: Ctx
    ) -> models_pb2.CancelDownloadResponse:
        return models_pb2.CancelDownloadResponse(download=await self._downloads.cancel(request.id))

    async def ReadModelFile(
        self, request: models_pb2.ReadModelFileRequest, context: Ctx
    ) -> AsyncIterator[models_pb2.ModelFileChunk]:
        if not SHA256.match(request.sha256):
            raise InvalidArgument("sha256", "64 lowercase hexadecimal digits")
        chunks = self._library.read_file(request.sha256, request.offset, FILE_CHUNK)
        async for data, offset, size, name in chunks:
            yield models_pb2.ModelFileChunk(data=data, offset=offset, size=size, name=name)
