"""A stand-in for filelock, which the official package imports at module level for its NDJSON dataset converter
(never used by the benchmarks). Debian 12's filelock is too old to have AsyncFileLock. Using it raises."""


class Timeout(Exception):
    pass


class AsyncFileLock:
    def __init__(self, *args, **kwargs):
        raise ImportError("filelock is stubbed for the side-by-side benchmarks (AsyncFileLock is not available)")


FileLock = AsyncFileLock
