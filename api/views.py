"""A job as the API shows it."""

from __future__ import annotations

from api.models import ErrorOut, GenerationOut, ImageOut
from stillhouse.queue.records import JobRecord, QueuePosition
from stillhouse.schemas.states import JobStatus
from stillhouse.services import Services


def generation_view(
    job: JobRecord,
    services: Services,
    position: QueuePosition | None = None,
    *,
    place: bool = True,
) -> GenerationOut:
    """Status, place in the queue while queued (unless `place` is False: a list spares
    a count per job), progress, images with URLs, the error."""
    if job.status is JobStatus.QUEUED and position is None and place:
        position = services.queue.position(job.public_id)
    images = [
        ImageOut(
            key=image.key,
            url=services.storage.url(image.key),
            width=image.width,
            height=image.height,
            content_type=image.content_type,
        )
        for image in (job.result.images if job.result else [])
    ]
    error = None
    if job.error is not None and job.status in (JobStatus.FAILED, JobStatus.CANCELLED):
        error = ErrorOut(type=job.error.type, message=job.error.message)
    return GenerationOut(
        id=job.public_id,
        status=job.status,
        workflow=job.workflow_name,
        position=position.ahead if position else None,
        estimated_wait_s=position.estimated_wait_s if position else None,
        progress=job.progress,
        progress_note=job.progress_note,
        params=dict(job.params.root),
        images=images,
        error=error,
        reused_from=job.reused_from,
        created_at=job.created_at,
        finished_at=job.finished_at,
    )
