"""The one atomic-write primitive: all or nothing, with the usual file mode."""

import os
import stat

import pytest

from ldnet.files import atomic_path


def test_atomic_path_writes_all_or_nothing_with_the_umask_mode(tmp_path):
    target = tmp_path / "results.json"
    with atomic_path(target) as temporary:
        temporary.write_text("[]")
        assert not target.exists()  # nothing visible until the block succeeds
    assert target.read_text() == "[]"
    mask = os.umask(0o022)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask
    with pytest.raises(RuntimeError), atomic_path(target) as temporary:
        temporary.write_text("[1, 2")
        raise RuntimeError("crash half-way")
    assert target.read_text() == "[]"  # the old file, untouched
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # no temporary left
