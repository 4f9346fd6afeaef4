"""A queued job as the worker's input contract."""

from __future__ import annotations

from stillhouse.config import Settings
from stillhouse.queue.records import JobRecord
from stillhouse.schemas.worker_io import InputImage, OutputTarget, WorkerInput
from stillhouse.storage import Storage

URL_MARGIN_S = 3600  # input URLs outlive the job's time limit, queueing included


def worker_input(job: JobRecord, settings: Settings, storage: Storage) -> WorkerInput:
    """The RunPod job `input` for `job`; earlier results become presigned URLs."""
    timeout_s = settings.master.job_timeout_s
    images = []
    for source in job.inputs:
        if source.url is not None:
            url = str(source.url)
        else:
            assert source.storage_key is not None
            expires = int(timeout_s) + URL_MARGIN_S
            url = storage.url(source.storage_key, expires_s=expires, for_workers=True)
        images.append(InputImage(name=source.name, url=url))
    return WorkerInput(
        job_id=job.public_id,
        workflow=job.graph,
        inputs=images,
        output=OutputTarget(bucket=storage.bucket, prefix=settings.storage.s3_prefix),
        timeout_s=timeout_s,
        workflow_name=job.workflow_name,
    )
