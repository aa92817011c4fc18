"""version.release: the numbers by which the plots tell a matplotlib too old and a checkpoint tells a
later byol-ref."""
import pytest

from byol_ref.version import __version__, release


@pytest.mark.parametrize("version, numbers", [
    ("3.8.4", (3, 8, 4)),
    ("3.10.0", (3, 10, 0)),  # (taken as [1:3], (10, 0): minor numbers compared with major ones)
    ("3.8.4.post1", (3, 8, 4)),  # (taken as [:4], a post-release is newer than the check's 3.8.4)
    ("3.10.0rc1", (3, 10, 0)),
    ("1.2.3+local.4", (1, 2, 3)),  # (a local label's numbers are not the release's)
    ("2.0", (2, 0)),
])
def test_release_is_the_first_three_numbers_of_a_version(version, numbers):
    assert release(version) == numbers


def test_the_ordering_the_plots_and_checkpoints_rely_on():
    assert release("3.10.0") > release("3.8.4") > release("3.8.3") and release("3.8.4.post1") == release("3.8.4")
    assert release("99.0.1") > release(__version__) and not release(__version__) > release(__version__)
