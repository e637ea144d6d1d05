"""The `hera` console script: serve, migrate, import-legacy, prune.

Thin: parse arguments, read settings (invalid → the server's `configuration error: ...` lines
and exit 2), wire the stores the environment configures, call `app.migration`, print a
summary. Exit codes: 0 done, 1 some items failed (listed in the summary), 2 configuration or
usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

from app.container import (
    build_blob_repository,
    build_session_repository,
    build_user_repository,
)
from app.logs import configure_logging
from app.migration import (
    MigrationReport,
    SupportsPrune,
    copy_blobs,
    copy_sessions,
    copy_users,
    describe_error,
    import_legacy,
    prune,
)
from app.repositories.base import BlobRepository, SessionRepository
from app.repositories.users import UserRepository
from app.settings import Settings, SettingsError, load_settings, report_problems

EXIT_FAILED = 1
EXIT_USAGE = 2


def _settings(**overrides: Any) -> Settings | None:
    """Settings from the environment (+ overrides); None once the problems are printed."""
    try:
        return load_settings(**overrides)
    except SettingsError as exc:
        report_problems(exc)
        return None


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hera",
        description="Hera backend: the API server and data tools. The target stores are the "
        "ones the environment configures (SESSION_TYPE, STORAGE_MODE, ...; see the README).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = sub.add_parser("serve", help="run the API server (uvicorn app.main:app)")
    serve.add_argument("--host", default="127.0.0.1", help="bind address (0.0.0.0 in containers)")
    serve.add_argument("--port", type=int, help="listen port (default: PORT, else 8080)")
    serve.add_argument("--workers", type=_positive, default=1, help="worker processes")

    migrate = sub.add_parser("migrate", help="copy sessions and/or blobs into these stores")
    src = migrate.add_mutually_exclusive_group()
    src.add_argument("--from-sessions-dir", type=Path, metavar="DIR", help="a file session store")
    src.add_argument("--from-redis", metavar="URL", help="a Redis session store")
    migrate.add_argument("--from-namespace", metavar="NS", help="its namespace (REDIS_NAMESPACE)")
    migrate.add_argument(
        "--from-users-dir", type=Path, metavar="DIR",
        help="a file store's people (<HERA_DATA_DIR>/users; --from-redis brings its own)",
    )  # fmt: skip
    migrate.add_argument("--from-blobs-dir", type=Path, metavar="DIR", help="a disk blob store")
    migrate.add_argument("--from-blob-prefix", metavar="P", help="its prefix (BLOB_KEY_PREFIX)")

    legacy = sub.add_parser("import-legacy", help="import the old backend's session folders")
    legacy.add_argument("directory", type=Path, metavar="DIR", help="the old SESSIONS_DIR")
    legacy.add_argument("--map-file", type=Path, help="write {old id: id} here, not to stdout")

    prune_cmd = sub.add_parser("prune", help="remove expired file sessions and their blobs")
    orphans = "also delete blobs whose session is gone (any store; not during a migration)"
    prune_cmd.add_argument("--orphan-blobs", action="store_true", help=orphans)
    for command in (migrate, legacy, prune_cmd):
        command.add_argument("--dry-run", action="store_true", help="report only; write nothing")
    for command in (migrate, legacy):
        command.add_argument(
            "--concurrency", type=_positive, default=8, metavar="N", help="items at once (8)"
        )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command == "migrate":
            _check_migrate_args(parser, args)
        if args.command == "import-legacy" and not args.directory.is_dir():
            parser.error(f"{args.directory}: no such directory")
    except SystemExit as exc:  # --help, usage errors: return the code, never raise it
        return int(exc.code or 0)
    settings = _settings()
    if settings is None:
        return EXIT_USAGE
    if args.command == "serve":
        return _serve(args, settings)
    configure_logging(fmt=settings.log_format, level=settings.log_level)
    if args.command == "prune":
        return asyncio.run(_prune(args, settings))
    source = None
    if args.command == "migrate" and (args.from_sessions_dir or args.from_redis):
        source = _settings(**_source_overrides(args, settings))
        if source is None:
            return EXIT_USAGE
    report = MigrationReport(dry_run=args.dry_run)
    try:
        asyncio.run(_copy(args, settings, source, report))
    except Exception as exc:  # a store itself failed (not one item): stop and report
        report.fail(None, "aborted", exc)
    return _finish(report, getattr(args, "map_file", None))


def _check_migrate_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    sources = (args.from_sessions_dir, args.from_redis, args.from_users_dir, args.from_blobs_dir)
    if not any(sources):
        parser.error(
            "migrate needs --from-sessions-dir, --from-redis, --from-users-dir "
            "and/or --from-blobs-dir"
        )
    if args.from_namespace and not args.from_redis:
        parser.error("--from-namespace goes with --from-redis")
    if args.from_users_dir and args.from_redis:
        parser.error("--from-redis copies its people itself: drop --from-users-dir")
    for path in (args.from_sessions_dir, args.from_users_dir, args.from_blobs_dir):
        if path is not None and not path.is_dir():
            parser.error(f"{path}: no such directory")


def _source_overrides(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    if args.from_sessions_dir:
        return {"session_type": "file", "sessions_dir": args.from_sessions_dir}
    namespace = args.from_namespace or settings.redis_namespace
    return {"session_type": "redis", "redis_url": args.from_redis, "redis_namespace": namespace}


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    port = args.port or settings.port
    if settings.metrics_enabled and settings.prometheus_multiproc_dir is not None:
        from app.metrics import empty_multiprocess_dir

        # Before the workers start: an earlier run's files would be added to every scrape.
        empty_multiprocess_dir(settings.prometheus_multiproc_dir)
    # The app logs each request itself (with its request id), so uvicorn's access log is off.
    uvicorn.run("app.main:app", host=args.host, port=port, workers=args.workers, access_log=False)
    return 0


@asynccontextmanager
async def _stores(settings: Settings) -> AsyncIterator[tuple[SessionRepository, BlobRepository]]:
    async with AsyncExitStack() as stack:
        sessions = await build_session_repository(settings)
        stack.push_async_callback(sessions.aclose)
        blobs = await build_blob_repository(settings)
        stack.push_async_callback(blobs.aclose)
        yield sessions, blobs


async def _source_users(args: argparse.Namespace, source: Settings | None) -> UserRepository | None:
    """The people to copy: those of the source Redis, or of --from-users-dir."""
    if args.from_redis and source is not None:
        return await build_user_repository(source)
    if args.from_users_dir is not None:
        from app.repositories.file_users import FileUserRepository

        return FileUserRepository(root=args.from_users_dir)
    return None


def _bar(desc: str, unit: str) -> Any:
    from tqdm import tqdm

    # disable=None: no bar when stderr is not a terminal (logs, CI, tests).
    return tqdm(desc=desc, unit=unit, file=sys.stderr, disable=None, dynamic_ncols=True)


async def _copy(
    args: argparse.Namespace, settings: Settings, source: Settings | None, report: MigrationReport
) -> None:
    # Every store is closed by the stack, each as soon as it is built: a later one failing
    # to open leaks none of those before it.
    async with AsyncExitStack() as stack:
        sessions, blobs = await stack.enter_async_context(_stores(settings))
        if args.command == "import-legacy":
            with _bar("legacy sessions", "session") as bar:
                await import_legacy(
                    args.directory, sessions=sessions, blobs=blobs, report=report,
                    progress=bar, concurrency=args.concurrency,
                )  # fmt: skip
            return
        if source is not None:
            source_sessions = await build_session_repository(source)
            stack.push_async_callback(source_sessions.aclose)
            with _bar("sessions", "session") as bar:
                await copy_sessions(
                    source_sessions, sessions, blobs, report=report,
                    progress=bar, concurrency=args.concurrency,
                )  # fmt: skip
        source_users = await _source_users(args, source)
        if source_users is not None:
            stack.push_async_callback(source_users.aclose)
            users = await build_user_repository(settings)
            stack.push_async_callback(users.aclose)
            with _bar("people", "person") as bar:
                await copy_users(
                    source_users, users, report=report,
                    progress=bar, concurrency=args.concurrency,
                )  # fmt: skip
        if args.from_blobs_dir is not None:
            # A directory of its own, not <HERA_DATA_DIR>/blobs: built here, not by the factory.
            from app.repositories.disk_blobs import DiskBlobRepository

            prefix = (
                settings.blob_key_prefix if args.from_blob_prefix is None else args.from_blob_prefix
            )
            source_blobs = DiskBlobRepository(root=args.from_blobs_dir, key_prefix=prefix)
            with _bar("blobs", "blob") as bar:
                await copy_blobs(
                    source_blobs, blobs, report=report, progress=bar, concurrency=args.concurrency
                )


def _finish(report: MigrationReport, map_file: Path | None) -> int:
    if map_file is not None:
        text = json.dumps(report.id_map, ensure_ascii=False, indent=2, sort_keys=True)
        map_file.write_text(text + "\n", encoding="utf-8")
    for line in report.summary(show_map=map_file is None):
        print(line)
    if map_file is not None:
        print(f"id map ({len(report.id_map)} sessions) written to {map_file}")
    return 0 if report.ok else EXIT_FAILED


async def _prune(args: argparse.Namespace, settings: Settings) -> int:
    verb = "would remove" if args.dry_run else "removed"
    if settings.resolved_session_type != "file":
        print(
            f"Redis session keys expire by themselves (SESSION_TTL={settings.session_ttl}s): "
            "no session to prune"
        )
        if not args.orphan_blobs:
            return 0
    try:
        async with _stores(settings) as (sessions, blobs):
            result = await prune(
                sessions, blobs, dry_run=args.dry_run, orphan_blobs=args.orphan_blobs
            )
    except Exception as exc:
        print(f"prune failed: {describe_error(exc)}", file=sys.stderr)
        return EXIT_FAILED
    if args.dry_run:
        print("dry run: nothing was removed")
    if isinstance(sessions, SupportsPrune):
        print(f"sessions: {verb} {len(result.sessions)} expired")
        for sid in result.sessions:
            print(f"  {sid}")
    blob_count = "" if args.dry_run else f" ({result.blobs_deleted} objects)"
    print(f"blobs: {verb} those of {len(result.blob_sessions)} sessions{blob_count}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
