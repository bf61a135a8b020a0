"""The content-addressed cache: whole entries only, damage refused or recomputed."""

import pytest
import torch
from safetensors.torch import load_file, save_file

from kanbench.suite.cache import ContentCache
from kanbench.suite.errors import KanbenchError

TENSORS = {"w": torch.arange(6.0).reshape(2, 3)}


def stored(tmp_path, recompute_damaged=False) -> ContentCache:
    cache = ContentCache(tmp_path, "things", "thing cache", recompute_damaged)
    with cache.making("k"):
        assert cache.lookup("k") is None
        cache.store("k", lambda path: save_file(TENSORS, path), {"seconds": 1.5})
    return cache


def test_an_entry_round_trips_with_its_meta_and_nothing_else_is_left(tmp_path):
    cache = stored(tmp_path)
    assert cache.lookup("k")["seconds"] == 1.5
    assert torch.equal(load_file(str(cache.tensors_path("k")))["w"], TENSORS["w"])
    assert sorted(p.name for p in cache.folder.iterdir() if not p.name.endswith(".lock")) == \
        ["k.json", "k.safetensors"]


def test_tensors_without_their_meta_are_no_entry(tmp_path):
    cache = stored(tmp_path)
    (cache.folder / "k.json").unlink()                # killed between the two writes
    assert cache.lookup("k") is None


@pytest.mark.parametrize("damage", ["flip", "meta"])
def test_damage_is_one_line_or_with_recompute_both_files_go(tmp_path, damage):
    cache = stored(tmp_path)
    if damage == "flip":
        data = bytearray(cache.tensors_path("k").read_bytes())
        data[-1] ^= 1
        cache.tensors_path("k").write_bytes(bytes(data))
    else:
        (cache.folder / "k.json").write_text("[1, 2]")
    with pytest.raises(KanbenchError, match=r"^thing cache k.safetensors / k.json in .*damaged"):
        cache.lookup("k")
    again = ContentCache(tmp_path, "things", "thing cache", recompute_damaged=True)
    assert again.lookup("k") is None
    assert not cache.tensors_path("k").exists() and not (cache.folder / "k.json").exists()
