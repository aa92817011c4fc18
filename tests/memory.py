"""peak_bytes: what a call allocates at its peak, counted by tracemalloc (which sees every NumPy
allocation), for the tests that hold byol-ref's memory promises by bytes, not by time."""
import tracemalloc


def peak_bytes(call):
    """``(call(), peak)``: peak is the most bytes allocated during the call above what it began with
    (arrays made before the call and still held are not counted)."""
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        out = call()
        return out, tracemalloc.get_traced_memory()[1] - start
    finally:
        tracemalloc.stop()
