"""A stand-in for polars, which the official package imports at module level for result tables that the timed
training run never builds. Anything used from it raises, naming this stub."""


def __getattr__(name):
    raise ImportError(f"polars is stubbed for the device check (polars.{name} is not available)")
