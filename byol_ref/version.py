"""The package version: the one place it is written (pyproject.toml reads it from here)."""
import re

__version__ = "0.1.0"


def release(version: str) -> tuple:
    """(3, 8, 4) of "3.8.4", "3.8.4.post1" or "3.10.0rc1": the numbers that order two releases."""
    return tuple(int(part) for part in re.findall(r"\d+", version.split("+")[0])[:3])
