"""The one place that turns settings into concrete stores (imports SDKs lazily)."""

from __future__ import annotations

from app.settings import Settings

from .base import BlobRepository, SessionRepository


async def build_session_repository(settings: Settings) -> SessionRepository:
    if settings.resolved_session_type == "redis":
        from .redis_sessions import RedisSessionRepository, create_redis_client

        assert settings.redis_url is not None  # guaranteed by settings validation
        client = create_redis_client(
            settings.redis_url, max_connections=settings.redis_max_connections
        )
        return RedisSessionRepository(
            client=client,
            ttl_seconds=settings.session_ttl,
            lock_ttl_seconds=settings.lock_ttl_seconds,
            lock_wait_seconds=settings.lock_wait_seconds,
            namespace=settings.redis_namespace,
        )
    from .file_sessions import FileSessionRepository

    return FileSessionRepository(
        root=settings.resolved_sessions_dir,
        ttl_seconds=settings.session_ttl,
        lock_wait_seconds=settings.lock_wait_seconds,
    )


async def build_blob_repository(settings: Settings) -> BlobRepository:
    kind = settings.resolved_blob_type
    if kind == "s3":
        from .s3_blobs import open_s3

        assert settings.s3_bucket_name is not None
        secret = settings.aws_secret_access_key
        return await open_s3(
            bucket=settings.s3_bucket_name,
            region=settings.aws_region,
            endpoint_url=settings.s3_endpoint_url,
            access_key_id=settings.aws_access_key_id,
            secret_access_key=secret.get_secret_value() if secret else None,
            key_prefix=settings.blob_key_prefix,
            presign_endpoint_url=settings.s3_presign_endpoint_url,
        )
    if kind == "gcs":
        from .gcs_blobs import open_gcs

        assert settings.gcs_bucket_name is not None
        return await open_gcs(
            bucket=settings.gcs_bucket_name,
            api_root=settings.storage_emulator_host,
            service_file=settings.google_application_credentials,
            key_prefix=settings.blob_key_prefix,
        )
    from .disk_blobs import DiskBlobRepository

    return DiskBlobRepository(root=settings.blobs_dir, key_prefix=settings.blob_key_prefix)
