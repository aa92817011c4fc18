"""Weight interchange (byol_ref.interchange): byol-ref and PyTorch layouts round trip, Linear weights
are transposed, the shipped byol-pytorch and lightly mappings name every tensor, safetensors
read/write, custom mappings, and pickles are refused with the export recipe."""
import json
import re
import struct
import warnings

import numpy as np
import pytest

from byol_ref.interchange import (from_layout, from_torch_layout, load_arrays, load_networks, network_names,
                                  networks_to_arrays, read_safetensors, resolve_mapping, save_networks, to_layout,
                                  to_torch_layout, torch_mapping, transpose_weights, write_safetensors)
from byol_ref.model import build_from_config
from byol_ref.presets import get_preset
from byol_ref.trace import TraceError, load_trace, networks_from_inputs, trace_inputs


def _nets(preset="deepmind"):
    cfg = get_preset(preset).config(encoder_dim=5, hidden_size=6, projection_dim=4, predictor_dim=3,
                                    projector_hidden_dim=7)
    return build_from_config(cfg, seed=3)


@pytest.mark.parametrize("ext", ["npz", "safetensors"])
@pytest.mark.parametrize("preset", ["deepmind", "lightly", "byol-pytorch", "edifice"])
def test_round_trips(tmp_path, preset, ext):
    online, target = _nets(preset)
    ref = networks_to_arrays(online, target)
    path = save_networks(tmp_path / f"own.{ext}", online, target)
    back = load_networks(path)
    assert list(back) == list(ref)
    for k in ref:
        np.testing.assert_array_equal(back[k], ref[k])
        assert back[k].dtype == ref[k].dtype
    style = "lightly" if preset == "lightly" else "byol-pytorch"
    tpath = save_networks(tmp_path / f"torch.{ext}", online, target, layout="torch", mapping=style)
    state = load_arrays(tpath)  # the file holds the torch names and layout, not ours
    expected = to_torch_layout(ref, torch_mapping(style, online.config))
    assert list(state) == list(expected) and set(state).isdisjoint(ref)
    for k in expected:
        np.testing.assert_array_equal(state[k], expected[k])
    back = load_networks(tpath, layout="torch", mapping=style, config=online.config)
    assert set(back) == set(ref)
    for k in ref:
        np.testing.assert_array_equal(back[k], ref[k])


def test_torch_layout_transposes_and_renames():
    online, target = _nets("byol-pytorch")
    ref = networks_to_arrays(online, target)
    m = torch_mapping("byol-pytorch", online.config)
    state = to_torch_layout(ref, m)
    w = ref["online.param.projector.fc1.weight"]  # (in, out) = (6, 7)
    assert w.shape == (6, 7)
    np.testing.assert_array_equal(state["online_encoder.projector.0.weight"], w.T)  # torch (out, in)
    np.testing.assert_array_equal(state["online_encoder.projector.1.weight"], ref["online.param.projector.norm1.gamma"])
    np.testing.assert_array_equal(state["online_encoder.projector.1.bias"], ref["online.param.projector.norm1.beta"])
    assert state["online_encoder.projector.1.num_batches_tracked"].dtype == np.int64
    floaty = {k: (v.astype("float64") if k.endswith("num_batches_tracked") else v) for k, v in state.items()}
    back = from_torch_layout(floaty, m)
    assert back["online.buffer.projector.norm1.count"].dtype == np.int64  # counts come back as integers
    np.testing.assert_array_equal(state["online_predictor.3.weight"], ref["online.param.predictor.fc2.weight"].T)
    assert "target_encoder.projector.3.bias" in state and "target_encoder.net.4.running_var" in state
    # forward in torch convention (x @ W.T + b) equals byol-ref's x @ w + b
    x = np.random.default_rng(0).standard_normal((3, 6))
    np.testing.assert_allclose(x @ state["online_encoder.projector.0.weight"].T, x @ w)


def test_from_torch_layout_copies_and_names_a_tensor_numpy_cannot_read():
    """The biases, gammas and counts read were the caller's own arrays (a torch model's, through .numpy()):
    an in-place update of the params moved the model's; and a tensor that requires grad, or a bfloat16
    one, failed in torch's words, naming no key."""
    online, target = _nets("byol-pytorch")
    m = torch_mapping("byol-pytorch", online.config)
    state = to_torch_layout(networks_to_arrays(online, target), m)
    ref = networks_to_arrays(online, target)  # (the networks' own arrays)
    before = {k: v.copy() for k, v in ref.items()}
    exported = to_torch_layout(ref, m)  # (and the way out: torch.from_numpy would share the network's arrays)
    for a in exported.values():
        a[...] = 7
    for k in ref:
        np.testing.assert_array_equal(ref[k], before[k], err_msg=k)
    kept = {k: v.copy() for k, v in state.items()}
    back = from_torch_layout(state, m)
    for a in back.values():
        a[...] = 7
    for k in state:
        np.testing.assert_array_equal(state[k], kept[k], err_msg=k)

    class Unreadable:  # (a torch Parameter: np.array raises torch's RuntimeError)
        def __array__(self, *args, **kwargs):
            raise RuntimeError("Can't call numpy() on Tensor that requires grad. Use tensor.detach().numpy() instead.")

    key = "online_encoder.projector.0.weight"
    with pytest.raises(TypeError, match=rf"^the torch state's '{key}' \(for online.param.projector.fc1.weight\) is "
                                        r"no array NumPy can read \(Unreadable: Can't call numpy\(\) on Tensor that "
                                        r"requires grad\. .*\); pass plain arrays, \{k: v.detach\(\).cpu\(\)"):
        from_torch_layout({**state, key: Unreadable()}, m)


def test_lightly_mapping_names():
    online, _ = _nets("lightly")
    m = torch_mapping("lightly", online.config)
    assert m["online.param.projector.fc1.weight"] == "projection_head.layers.0.weight"
    assert "online.param.projector.fc1.bias" not in m  # lightly: Linear1 without bias (BN follows)
    assert m["online.param.projector.fc2.bias"] == "projection_head.layers.3.bias"
    assert m["online.param.predictor.norm1.gamma"] == "prediction_head.layers.1.weight"
    assert m["target.buffer.projector.norm1.count"] == "projection_head_momentum.layers.1.num_batches_tracked"
    assert m["target.param.encoder.fc2.weight"] == "backbone_momentum.3.weight"


def test_byol_pytorch_mapping_with_simplicial_embedding():
    """byol-pytorch 0.9 nests its projector: Sequential(Sequential(Linear, BatchNorm1d), SEM, MLP)."""
    cfg = get_preset("byol-pytorch").config(encoder_dim=5, hidden_size=6, projection_dim=4, predictor_dim=3,
                                            sem_simplices=2, sem_simplex_dim=3)
    m = torch_mapping("byol-pytorch", cfg)
    assert m["online.param.projector.sem_fc.weight"] == "online_encoder.projector.0.0.weight"
    assert m["online.param.projector.sem_norm.gamma"] == "online_encoder.projector.0.1.weight"
    assert m["target.buffer.projector.sem_norm.count"] == "target_encoder.projector.0.1.num_batches_tracked"
    assert m["online.param.projector.fc1.weight"] == "online_encoder.projector.2.0.weight"
    assert m["online.buffer.projector.norm1.running_var"] == "online_encoder.projector.2.1.running_var"
    assert m["target.param.projector.fc2.bias"] == "target_encoder.projector.2.3.bias"
    assert m["online.param.predictor.fc2.weight"] == "online_predictor.3.weight"  # the predictor is unchanged
    assert m["online.param.encoder.norm2.beta"] == "online_encoder.net.4.bias"
    online, target = build_from_config(cfg, seed=0)
    arrays = networks_to_arrays(online, target)
    assert set(m) == set(arrays)  # every tensor named
    back = from_torch_layout(to_torch_layout(arrays, m), m)
    assert all(np.array_equal(back[k], v) for k, v in arrays.items())
    with pytest.raises(ValueError, match="lightly has no simplicial embedding"):
        torch_mapping("lightly", cfg)


def test_byol_pytorch_aliases_and_custom_mapping(tmp_path):
    online, target = _nets("byol-pytorch")
    ref = networks_to_arrays(online, target)
    m = torch_mapping("byol-pytorch", online.config)
    state = to_torch_layout(ref, m)
    state.update({k.replace("online_encoder.net.", "net."): v for k, v in state.items()
                  if k.startswith("online_encoder.net.")})  # BYOL.net is online_encoder.net, listed twice
    np.savez(tmp_path / "sd.npz", **state)
    back = load_networks(tmp_path / "sd.npz", layout="torch", mapping="byol-pytorch", config=online.config)
    assert set(back) == set(ref)
    with pytest.raises(ValueError, match="no byol-ref name"):
        from_torch_layout(state, m)
    custom = {k: "my." + k.replace(".", "_") for k in ref}
    (tmp_path / "map.json").write_text(json.dumps(custom))
    st = to_torch_layout(ref, resolve_mapping(str(tmp_path / "map.json")))
    back = from_torch_layout(st, custom)
    for k in ref:
        np.testing.assert_array_equal(back[k], ref[k])


def test_loaded_weights_trace(tmp_path):
    """Weights exported in torch layout load back into a trace identical to the original one."""
    online, target = _nets("lightly")
    ref = networks_to_arrays(online, target)
    rng = np.random.default_rng(0)
    views = {"step0.input.view1": rng.standard_normal((4, 5)), "step0.input.view2": rng.standard_normal((4, 5))}
    a = trace_inputs({**ref, **views}, "lightly")
    tpath = save_networks(tmp_path / "w.safetensors", online, target, layout="torch", mapping="lightly")
    loaded = load_networks(tpath, layout="torch", mapping="lightly", config=online.config)
    b = trace_inputs({**loaded, **views}, "lightly")
    for k in a.arrays:
        np.testing.assert_array_equal(a.arrays[k], b.arrays[k])


def test_transpose_weights():
    d = {"step0.online.grad.encoder.fc1.weight": np.arange(6.0).reshape(2, 3), "x.norm1.weight": np.ones(3),
         "step0.opt.momentum.projector.fc2.weight": np.zeros((4, 5)), "loss.total": np.asarray(1.0)}
    t = transpose_weights(d)
    assert t["step0.online.grad.encoder.fc1.weight"].shape == (3, 2)
    assert t["step0.opt.momentum.projector.fc2.weight"].shape == (5, 4)
    assert t["x.norm1.weight"].shape == (3,) and list(t) == list(d)
    np.testing.assert_array_equal(transpose_weights(t)["step0.online.grad.encoder.fc1.weight"], d[
        "step0.online.grad.encoder.fc1.weight"])


def test_safetensors_dtypes(tmp_path):
    arrays = {"a": np.arange(6, dtype="float64").reshape(2, 3), "b": np.ones(3, "float32"), "c": np.array(7, "int64"),
              "d": np.array([True, False])}
    write_safetensors(tmp_path / "x.safetensors", arrays)
    back = read_safetensors(tmp_path / "x.safetensors")
    for k in arrays:
        np.testing.assert_array_equal(back[k], arrays[k])
        assert back[k].dtype == arrays[k].dtype and back[k].shape == arrays[k].shape
    raw = (tmp_path / "x.safetensors").read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    assert n % 8 == 0 and raw[8:8 + n].decode().rstrip(" ").endswith("}")  # header padded with spaces to 8 bytes
    # bf16: the top 16 bits of a float32
    bits = (np.array([1.5, -2.0], dtype="float32").view("<u4") >> 16).astype("<u2").tobytes()
    header = json.dumps({"w": {"dtype": "BF16", "shape": [2], "data_offsets": [0, 4]}}).encode()
    (tmp_path / "bf.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + bits)
    np.testing.assert_array_equal(read_safetensors(tmp_path / "bf.safetensors")["w"], [1.5, -2.0])


@pytest.mark.parametrize("dtype, code", [("uint16", "U16"), ("uint32", "U32"), ("uint64", "U64")])
def test_safetensors_unsigned_integers_are_read_and_written(tmp_path, dtype, code):
    """The format's U16, U32 and U64 (which Nx and safetensors write: a step count, a key) were refused
    both ways ("'s' has dtype uint32; .safetensors here holds ..."); their largest values come back whole,
    from a file laid out by hand as the format gives it."""
    big = np.array([0, 1, np.iinfo(dtype).max], dtype=dtype)
    write_safetensors(tmp_path / "u.safetensors", {"s": big})
    back = read_safetensors(tmp_path / "u.safetensors")["s"]
    assert back.dtype == np.dtype(dtype) and back.tolist() == big.tolist()
    header = json.dumps({"s": {"dtype": code, "shape": [3], "data_offsets": [0, big.nbytes]}}).encode()
    data = big.astype(big.dtype.newbyteorder("<")).tobytes()
    (tmp_path / "h.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + data)
    assert read_safetensors(tmp_path / "h.safetensors")["s"].tolist() == big.tolist()
    assert (tmp_path / "u.safetensors").read_bytes()[8:].startswith(b'{"s":{"dtype":"%s"' % code.encode())


def test_bad_files_and_mappings(tmp_path):
    online, target = _nets()
    for name in ("model.pt", "model.pth", "pytorch_model.bin"):
        (tmp_path / name).write_bytes(b"\x80\x02}q\x00.")
        with pytest.raises(TraceError, match="never reads pickles.*np.savez"):
            load_networks(tmp_path / name, layout="torch", mapping="byol-pytorch", config=online.config)
    (tmp_path / "bad.safetensors").write_bytes(struct.pack("<Q", 10 ** 6) + b"{}")
    with pytest.raises(TraceError, match="header length"):
        load_arrays(tmp_path / "bad.safetensors")
    header = json.dumps({"w": {"dtype": "F64", "shape": [4], "data_offsets": [0, 64]}}).encode()
    (tmp_path / "short.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 8)
    with pytest.raises(TraceError, match="outside"):
        load_arrays(tmp_path / "short.safetensors")
    with pytest.raises(ValueError, match="mapping style must be one of|mapping must be one of"):
        resolve_mapping("timm", online.config)
    with pytest.raises(ValueError, match="needs a mapping"):
        save_networks(tmp_path / "x.npz", online, target)
        load_networks(tmp_path / "x.npz", layout="torch")
    np.savez(tmp_path / "other.npz", **{"fc.weight": np.zeros((2, 2))})
    with pytest.raises(ValueError, match=r"^\S*other.npz: .*lacks .* mapped name"):  # names the file
        load_networks(tmp_path / "other.npz", layout="torch", mapping="lightly", config=online.config)
    with pytest.raises(ValueError, match=r"layout must be one of \('byol-ref', 'torch', 'axon'\), got 'jax'"):
        load_networks(tmp_path / "other.npz", layout="jax")
    for convert in (to_layout, from_layout):  # byol-ref's own layout is not a conversion
        for layout in ("jax", "byol-ref"):
            with pytest.raises(ValueError, match=rf"layout must be one of \('torch', 'axon'\), got '{layout}'"):
                convert({}, {}, layout=layout)
    with pytest.raises(ValueError, match="no torch name"):
        to_torch_layout({"online.param.zzz": np.zeros(2)}, {})
    mapping = torch_mapping("lightly", online.config)
    with pytest.raises(ValueError, match="lacks .* mapped name"):  # nothing matches: a wrong style, even non-strict
        from_torch_layout({"fc.weight": np.zeros((2, 2))}, mapping, strict=False)
    with pytest.raises(ValueError, match="two byol-ref names to the same torch or axon name"):
        resolve_mapping({"online.param.encoder.fc1.weight": "w", "online.param.encoder.fc2.weight": "w"})


def test_cli_convert_round_trip(tmp_path):
    from byol_ref.cli import main

    online, target = _nets("lightly")
    own = save_networks(tmp_path / "own.npz", online, target)
    assert main(["convert", own, str(tmp_path / "t.safetensors"), "--from", "byol-ref", "--to", "torch",
                 "--mapping", "lightly", "--preset", "lightly"]) == 0
    assert main(["convert", str(tmp_path / "t.safetensors"), str(tmp_path / "back.npz"), "--from", "torch",
                 "--to", "byol-ref", "--mapping", "lightly", "--preset", "lightly"]) == 0
    a, b = load_arrays(own), load_arrays(tmp_path / "back.npz")
    assert set(a) == set(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert main(["convert", own, str(tmp_path / "x.npz"), "--from", "byol-ref", "--to", "torch"]) == 2


def test_cli_convert_names_the_mapping_file_that_does_not_fit(tmp_path, capsys):
    from byol_ref.cli import main

    online, target = _nets("lightly")
    save_networks(tmp_path / "t.npz", online, target, layout="torch", mapping="lightly")
    mapping = torch_mapping("lightly", online.config)
    del mapping["online.param.encoder.fc1.weight"]
    (tmp_path / "m.json").write_text(json.dumps(mapping))
    assert main(["convert", str(tmp_path / "t.npz"), str(tmp_path / "b.npz"), "--from", "torch", "--to",
                 "byol-ref", "--mapping", str(tmp_path / "m.json"), "--preset", "lightly"]) == 2
    err = capsys.readouterr().err
    assert f"error: {tmp_path / 't.npz'} (mapping file {tmp_path / 'm.json'}): " in err
    assert "pass --partial to leave them out" in err and not (tmp_path / "b.npz").exists()


def test_cli_trace_from_torch_layout(tmp_path):
    from byol_ref.cli import main
    from byol_ref.trace import load_trace

    online, target = _nets("byol-pytorch")
    ref = networks_to_arrays(online, target)
    state = to_torch_layout(ref, torch_mapping("byol-pytorch", online.config))
    rng = np.random.default_rng(1)
    state["view1"], state["view2"] = rng.standard_normal((4, 5)), rng.standard_normal((4, 5))
    np.savez(tmp_path / "sd.npz", **state)
    assert main(["trace", "--inputs", str(tmp_path / "sd.npz"), "--layout", "torch", "--mapping", "byol-pytorch",
                 "--preset", "byol-pytorch", "--steps", "2", "--out", str(tmp_path / "t.npz")]) == 0
    tr = load_trace(tmp_path / "t.npz")
    np.testing.assert_array_equal(tr.arrays["init.online.param.encoder.fc1.weight"],
                                  ref["online.param.encoder.fc1.weight"])
    online2, _, views, _ = networks_from_inputs(tr.arrays, get_preset("byol-pytorch"))
    assert len(views) == 2


def test_unmapped_tensors_are_named_and_structural_ones_refused(tmp_path, capsys):
    """A classifier head the mapping does not name is left out, and the trace says so; a bias on
    a layer the mapping does name, which the byol-ref config builds without, is an error (leaving
    it out would compute another network: lightly's heads with a biased MLP backbone)."""
    from byol_ref.cli import main

    online, target = _nets("byol-pytorch")
    m = torch_mapping("byol-pytorch", online.config)
    state = to_torch_layout(networks_to_arrays(online, target), m)
    state["online_encoder.net.6.weight"] = np.ones((10, 6))  # a classifier after the encoder
    assert set(from_torch_layout(state, m, strict=False)) == set(m)
    rng = np.random.default_rng(1)
    state["view1"], state["view2"] = rng.standard_normal((4, 5)), rng.standard_normal((4, 5))
    np.savez(tmp_path / "sd.npz", **state)
    args = ["trace", "--inputs", str(tmp_path / "sd.npz"), "--layout", "torch", "--mapping", "byol-pytorch",
            "--preset", "byol-pytorch", "--steps", "1", "--out", str(tmp_path / "t.npz")]
    assert main(args) == 0
    assert "left out 1 input tensor(s) the mapping does not name: online_encoder.net.6.weight" in capsys.readouterr().err
    no_bias = get_preset("byol-pytorch", hidden_bias=False).config(encoder_dim=1)
    with pytest.raises(ValueError, match=r"has \['online_encoder.net.0.bias'.*hidden_bias"):
        from_torch_layout(state, torch_mapping("byol-pytorch", no_bias), strict=False)
    assert main(args + ["--set", "hidden_bias=false"]) == 2
    assert "tensor(s) of layers the byol-ref network maps but has no place for" in capsys.readouterr().err
    # encoder_bias: biases in the encoder only (lightly's bias-free heads behind a biased MLP backbone)
    assert main(args + ["--set", "hidden_bias=false", "--set", "head_bias=true", "--set", "encoder_bias=true"]) == 2
    assert "online_encoder.projector.0.bias" in capsys.readouterr().err  # the heads' first bias is still extra
    lightly = get_preset("lightly").config(encoder_dim=1)
    names = set(torch_mapping("lightly", lightly.replace(encoder_bias=True)).values())
    assert {"backbone.0.bias", "backbone.3.bias", "backbone_momentum.0.bias"} <= names
    assert "projection_head.layers.0.bias" not in names
    assert names - set(torch_mapping("lightly", lightly).values()) == {
        "backbone.0.bias", "backbone.3.bias", "backbone_momentum.0.bias", "backbone_momentum.3.bias"}


def test_a_safetensors_header_that_is_not_an_object_is_refused(tmp_path):
    header = json.dumps([1, 2]).encode()
    (tmp_path / "list.safetensors").write_bytes(struct.pack("<Q", len(header)) + header)
    with pytest.raises(TraceError, match="the .safetensors header is a JSON list, expected an object"):
        load_arrays(tmp_path / "list.safetensors")


def _safetensors_bytes(header: dict, data: bytes = b"") -> bytes:
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + data


@pytest.mark.parametrize("entry, says", [
    ({"dtype": "F64", "shape": [10**23, 0], "data_offsets": [0, 32]}, r"shape \[10+, 0\], which no NumPy array "),
    ({"dtype": "F64", "shape": [10**23, 1], "data_offsets": [0, 32]}, r"shape \[10+, 1\], which no NumPy array "),
    ({"dtype": "F64", "shape": [2**40, 0], "data_offsets": [0, 32]}, r"holds 32 bytes but its shape .* needs 0"),
    ({"dtype": "F64", "shape": [4], "data_offsets": [0, 31]}, r"holds 31 bytes but its shape \[4\] of F64 needs 32"),
    ({"dtype": "F64", "shape": "4", "data_offsets": [0, 32]}, r"has shape '4', expected a list of ints >= 0"),
    ({"dtype": "F64", "shape": [4.0], "data_offsets": [0, 32]}, r"has shape \[4.0\], expected a list of ints"),
    ({"dtype": "F64", "shape": [-2, -2], "data_offsets": [0, 32]}, r"has shape \[-2, -2\], expected a list"),
    ({"dtype": "F64", "shape": [4], "data_offsets": ["0", "32"]}, r"has data offsets \['0', '32'\], expected"),
    ({"dtype": "F64", "shape": [4], "data_offsets": [False, True]}, r"has data offsets \[False, True\]"),
    ({"dtype": "F64", "shape": [4], "data_offsets": [0, 40]},
     r"outside the 32-byte data buffer: expected \[begin, end\] with 0 <= begin <= end <= 32"),
    ({"dtype": ["F64"], "shape": [4], "data_offsets": [0, 32]}, r"has dtype \['F64'\], which byol-ref does not"),
    ({"dtype": "F8_E4M3", "shape": [32], "data_offsets": [0, 32]}, r"has dtype 'F8_E4M3', which byol-ref does not"),
    ({"shape": [4], "data_offsets": [0, 32]}, r"malformed header entry for 'w'"),
    ({"dtype": "F64", "shape": [4], "offsets": [0, 32]}, r"malformed header entry for 'w'"),  # a key misspelt
    ([1, 2], r"malformed header entry for 'w'"),
])
def test_a_safetensors_header_entry_that_lies_is_named(tmp_path, entry, says):
    """Each header entry is checked against the format and the data buffer before anything is read:
    never an OverflowError, a NumPy reshape error or a comparison of str and int."""
    (tmp_path / "bad.safetensors").write_bytes(_safetensors_bytes({"w": entry}, bytes(32)))
    with pytest.raises(TraceError, match=r"bad.safetensors: " + ("" if "malformed" in says else "'w' .*") + says):
        load_arrays(tmp_path / "bad.safetensors")


@pytest.mark.parametrize("meta, says", [
    ([1], "is a JSON list"), ("by hand", "is a JSON str"), ({"format": "pt", "step": 3}, "gives 'step' a JSON int"),
    ({"nested": {"a": "b"}}, "gives 'nested' a JSON dict")])
def test_a_safetensors_metadata_that_is_not_a_map_of_strings_is_refused(tmp_path, meta, says):
    """The format's ``__metadata__`` is a string-to-string map (safetensors refuses any other, and so
    does byol-ref's writer); the reader took any JSON there. A map of strings is read, and ignored."""
    entry = {"dtype": "F64", "shape": [1], "data_offsets": [0, 8]}
    (tmp_path / "m.safetensors").write_bytes(_safetensors_bytes({"__metadata__": meta, "w": entry}, bytes(8)))
    with pytest.raises(TraceError, match=re.escape(f"m.safetensors: the .safetensors __metadata__ {says}, expected "
                                                   "an object of strings")):
        load_arrays(tmp_path / "m.safetensors")
    (tmp_path / "ok.safetensors").write_bytes(_safetensors_bytes({"__metadata__": {"format": "pt"}, "w": entry},
                                                                 bytes(8)))
    assert list(load_arrays(tmp_path / "ok.safetensors")) == ["w"]


def test_a_safetensors_header_naming_a_tensor_twice_is_refused(tmp_path):
    entry = '{"dtype": "F64", "shape": [1], "data_offsets": [0, 8]}'
    header = ('{"w": ' + entry + ', "w": ' + entry + '}').encode()
    (tmp_path / "twice.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + bytes(8))
    with pytest.raises(TraceError, match=r"twice.safetensors: the .safetensors header gives \['w'\] more than once"):
        load_arrays(tmp_path / "twice.safetensors")


@pytest.mark.parametrize("offsets, data, says", [
    ({"a": [0, 8], "b": [0, 8]}, 8, r"'b' starts at data byte 0, but the tensors before it end at byte 8; "
                                   r".safetensors packs tensors end to end \(overlap\)"),
    ({"a": [0, 8], "b": [16, 24]}, 24, r"'b' starts at data byte 16, .* end at byte 8; .* \(gap\)"),
    ({"a": [8, 16], "b": [16, 24]}, 24, r"'a' starts at data byte 8, but the data begin at byte 0; .* \(gap\)"),
    ({"a": [0, 8], "b": [8, 16]}, 20, r"the tensors end at data byte 16, but the file holds 20 data bytes"),
])
def test_safetensors_data_must_be_packed_end_to_end(tmp_path, offsets, data, says):
    """As the format requires (and the safetensors library checks): no two names for the same bytes,
    no hidden bytes between or after the tensors."""
    header = {k: {"dtype": "F64", "shape": [1], "data_offsets": v} for k, v in offsets.items()}
    (tmp_path / "bad.safetensors").write_bytes(_safetensors_bytes(header, bytes(data)))
    with pytest.raises(TraceError, match="bad.safetensors: " + says):
        load_arrays(tmp_path / "bad.safetensors")
    header["b"]["data_offsets"], header["a"]["data_offsets"] = [0, 8], [8, 16]  # packed, in another order
    header["z"] = {"dtype": "F32", "shape": [0], "data_offsets": [16, 16]}
    (tmp_path / "good.safetensors").write_bytes(_safetensors_bytes(header, np.array([1.0, 2.0]).tobytes()))
    assert {k: v.tolist() for k, v in load_arrays(tmp_path / "good.safetensors").items()} == {
        "a": [2.0], "b": [1.0], "z": []}


@pytest.mark.parametrize("shape, says", [
    ([1] * 65, "of 65 dimensions"), ([0, 2**70], r"\[0, 1180591620717411303424\]"),
    ([0, 2**40, 2**21], r"\[0, 1099511627776, 2097152\]"),
])
def test_a_safetensors_shape_no_numpy_array_holds_is_named(tmp_path, shape, says):
    header = {"w": {"dtype": "F64", "shape": shape, "data_offsets": [0, 0]}}
    (tmp_path / "big.safetensors").write_bytes(_safetensors_bytes(header))
    with pytest.raises(TraceError, match=rf"big.safetensors: 'w' has shape {says}, which no NumPy array holds"):
        load_arrays(tmp_path / "big.safetensors")
    header["w"]["shape"] = [0, 2**58, 2]  # zero elements, and 2**62 bytes counting the 0 as 1: NumPy holds it
    (tmp_path / "ok.safetensors").write_bytes(_safetensors_bytes(header))
    assert load_arrays(tmp_path / "ok.safetensors")["w"].shape == (0, 2**58, 2)


@pytest.mark.parametrize("text, says", [
    ('"lightly"', r"holds a JSON str, expected an object \{byol-ref name: torch or axon name\}"),
    ('"other.json"', r"holds a JSON str, expected an object"),  # never followed to another file
    ("[1, 2]", r"holds a JSON list, expected an object"),
    ('{"a": 5}', r"mapping must map str to str, got \[\('a', 5\)\]"),
    ('{"a": "x", "a": "y"}', r"gives \['a'\] more than once"),
    ("[" * 100_000, r"is not JSON that byol-ref reads: nested deeper"),
    (b"{\"a\": \"\xe9\"}", r"is not valid JSON \(UnicodeDecodeError"),
])
def test_a_mapping_file_is_one_json_object_and_its_errors_name_it(tmp_path, text, says):
    path = tmp_path / "map.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises((TypeError, ValueError), match=rf"^mapping file {path}:? " + says):
        resolve_mapping(str(path))


def test_a_mapping_file_that_is_not_there_or_a_folder_says_so(tmp_path):
    (tmp_path / "dir.json").mkdir()  # (the OS's own words named neither the mapping nor what it may be)
    for name, says in (("no.json", "does not exist"), ("dir.json", "is a folder")):
        with pytest.raises(FileNotFoundError, match=rf"^mapping file {tmp_path / name} {says}; a mapping is a style "
                                                    r"\(byol-pytorch, edifice, lightly\) or a .json file"):
            resolve_mapping(str(tmp_path / name))


def test_a_mapping_file_may_be_named_by_a_path_object(tmp_path):
    """Found by a mutation audit: mapping_path took a str only (as cli._mapping_file once did) and every
    test passed; resolve_mapping, mapping_file_note and the CLI's never-write-over-an-input checks all read
    a pathlib.Path ending in .json as the file it names, and a style name or a dict as no file."""
    from byol_ref.interchange import mapping_file_note, mapping_path

    custom = {"online.param.encoder.fc1.weight": "my.w"}
    path = tmp_path / "m.json"
    path.write_text(json.dumps(custom))
    assert mapping_path(path) == mapping_path(str(path)) == str(path) and isinstance(mapping_path(path), str)
    assert resolve_mapping(path) == resolve_mapping(str(path)) == custom
    assert mapping_file_note(path) == f" (mapping file {path})"
    for no_file in ("lightly", custom, None, tmp_path / "m.npz"):
        assert mapping_path(no_file) is None and mapping_file_note(no_file) == ""
    with pytest.raises(FileNotFoundError, match=rf"^mapping file {tmp_path / 'no.json'} does not exist"):
        resolve_mapping(tmp_path / "no.json")


def test_a_mapping_key_no_byol_ref_network_has_is_refused_and_errors_name_the_mapping_file(tmp_path):
    """A misspelt key would be written out under that name by convert --to byol-ref."""
    online, target = _nets("byol-pytorch")
    mapping = torch_mapping("byol-pytorch", online.config)
    ref = "online.param.encoder.fc2.bias"
    typo = {("online.param.encoder.fc2.biaU" if k == ref else k): v for k, v in mapping.items()}
    with pytest.raises(ValueError, match=r"mapping names 1 array\(s\) no byol-ref network has, e.g. "
                                         r"'online.param.encoder.fc2.biaU' \(did you mean "
                                         r"'online.param.encoder.fc2.bias'\?\)"):
        resolve_mapping(typo)
    assert network_names() >= set(mapping)  # every shipped name is one
    simplex = {f"{role}.param.projector.sem_fc.weight": f"{role}.sem" for role in ("online", "target")}
    assert resolve_mapping(simplex) == simplex  # and so are the names of every structure's optional layers
    (tmp_path / "m.json").write_text(json.dumps(typo))
    with pytest.raises(ValueError, match=rf"^mapping file {tmp_path / 'm.json'}: mapping names 1 array"):
        resolve_mapping(str(tmp_path / "m.json"))
    # A mapping that lacks a name the file holds: the weights file and the mapping file are both named.
    save_networks(tmp_path / "w.npz", online, target, layout="torch", mapping="byol-pytorch")
    del mapping[ref]
    (tmp_path / "m.json").write_text(json.dumps(mapping))
    with pytest.raises(ValueError, match=rf"^{tmp_path / 'w.npz'} \(mapping file {tmp_path / 'm.json'}\): "):
        load_networks(tmp_path / "w.npz", layout="torch", mapping=str(tmp_path / "m.json"))


def test_a_deeply_nested_safetensors_header_is_not_json_to_us(tmp_path):
    header = b"[" * 100_001 + b"]" * 100_001  # JSON, but deeper than Python's parser recurses
    (tmp_path / "deep.safetensors").write_bytes(struct.pack("<Q", len(header)) + header)
    with pytest.raises(TraceError, match="the .safetensors header is not JSON"):
        load_arrays(tmp_path / "deep.safetensors")


def test_a_structural_mismatch_is_named_as_such_in_strict_mode_too():
    """strict (the default) also says that a bias the config has no place for is a structure
    mismatch, not a name to add to the mapping."""
    online, target = _nets("byol-pytorch")
    state = to_torch_layout(networks_to_arrays(online, target), torch_mapping("byol-pytorch", online.config))
    no_bias = get_preset("byol-pytorch", hidden_bias=False).config(encoder_dim=1)
    with pytest.raises(ValueError, match=r"has \['online_encoder.net.0.bias'.*the model's structure differs"):
        from_torch_layout(state, torch_mapping("byol-pytorch", no_bias))


def test_unmapped_buffers_of_a_mapped_norm_layer_are_named_as_buffers_to_map():
    """A user's own mapping that names a batch norm's gamma and beta but not its running statistics
    (as a first mapping, written from the parameters, does) is told to map them as byol-ref's
    buffers, not that a bias has no place."""
    online, target = _nets("byol-pytorch")
    mapping = torch_mapping("byol-pytorch", online.config)
    state = to_torch_layout(networks_to_arrays(online, target), mapping)
    params_only = {k: v for k, v in mapping.items() if ".param." in k}
    with pytest.raises(ValueError, match=r"unmapped tensor\(s\) of norm layer\(s\) the mapping names the gamma and "
                                         r"beta of\. If they are running statistics, map them to byol-ref's buffers, "
                                         r"e\.g\. (online|target)\.buffer\.[a-z]+\.norm1\.running_mean, "
                                         r"\.running_var and \.count .*h / \(1 - decay\^count\)"):
        from_torch_layout(state, params_only)
    from_torch_layout(state, mapping)  # mapped whole, it reads
    # an unmapped tensor of a Linear among them is a structure mismatch, said as such
    no_bias = {k: v for k, v in params_only.items() if not k.endswith("encoder.fc1.bias")}
    with pytest.raises(ValueError, match="tensor\\(s\\) of layers the byol-ref network maps but has no place for"):
        from_torch_layout(state, no_bias)


# --------------------------------------------------------------------------- Axon layout (Edifice)
# Edifice.Contrastive.BYOL, transliterated from its Elixir source (lib/edifice/contrastive/byol.ex) with
# Axon's dense (x . kernel + bias, kernel (in, out)) and layer_norm (Axon.Layers.layer_norm: biased
# variance over the features, gamma * rsqrt(var + 1e-5) * (x - mean) + beta). Its parameters are named
# as Axon.ModelState.data flattened to "<layer>.<param>".

def _axon_dense(p, name, x):
    return x @ p[f"{name}.kernel"] + p[f"{name}.bias"]


def _axon_layer_norm(p, name, x, eps=1e-5):
    mean, var = x.mean(axis=-1, keepdims=True), x.var(axis=-1, keepdims=True)
    return p[f"{name}.gamma"] * (1 / np.sqrt(var + eps)) * (x - mean) + p[f"{name}.beta"]


def _edifice_projection(p, role, x):
    h = _axon_layer_norm(p, f"{role}_encoder_norm", np.maximum(_axon_dense(p, f"{role}_encoder_fc1", x), 0))
    h = np.maximum(_axon_dense(p, f"{role}_encoder_fc2", h), 0)
    h = _axon_layer_norm(p, f"{role}_proj_norm", np.maximum(_axon_dense(p, f"{role}_proj_fc1", h), 0))
    return _axon_dense(p, f"{role}_proj_fc2", h)


def _edifice_online(p, x):  # build_online
    z = _edifice_projection(p, "online", x)
    return _axon_dense(p, "predictor_fc2", np.maximum(_axon_dense(p, "predictor_fc1", z), 0))


def _edifice_loss(online_pred, target_proj):  # BYOL.loss
    def l2_normalize(x):
        return x / np.sqrt((x * x).sum(axis=1, keepdims=True) + 1e-8)
    return 2.0 - 2.0 * (l2_normalize(online_pred) * l2_normalize(target_proj)).sum(axis=1).mean()


def _edifice_ema(online, target, momentum):  # BYOL.ema_update
    return {k: momentum * t + (1.0 - momentum) * online[k.replace("target_", "online_", 1)] for k, t in target.items()}


def _edifice_params(seed, d=5, h=7, p=6, q=3):
    """Random Axon parameters of both Edifice models (every tensor random, gamma and beta included)."""
    rng = np.random.default_rng(seed)
    shapes = {}
    for role in ("online", "target"):
        shapes.update({f"{role}_encoder_fc1.kernel": (d, h), f"{role}_encoder_fc1.bias": (h,),
                       f"{role}_encoder_norm.gamma": (h,), f"{role}_encoder_norm.beta": (h,),
                       f"{role}_encoder_fc2.kernel": (h, h), f"{role}_encoder_fc2.bias": (h,),
                       f"{role}_proj_fc1.kernel": (h, p), f"{role}_proj_fc1.bias": (p,),
                       f"{role}_proj_norm.gamma": (p,), f"{role}_proj_norm.beta": (p,),
                       f"{role}_proj_fc2.kernel": (p, p), f"{role}_proj_fc2.bias": (p,)})
    shapes.update({"predictor_fc1.kernel": (p, q), "predictor_fc1.bias": (q,), "predictor_fc2.kernel": (q, p),
                   "predictor_fc2.bias": (p,)})
    return {k: rng.standard_normal(s) * (0.2 if k.endswith(".bias") or k.endswith(".beta") else 0.6) + (
        1.0 if k.endswith(".gamma") else 0.0) for k, s in shapes.items()}


def test_edifice_mapping_names_every_axon_parameter():
    cfg = get_preset("edifice").config(encoder_dim=1)
    m = resolve_mapping("edifice", cfg, "axon")
    assert set(m.values()) == set(_edifice_params(0))  # every Axon tensor of both models, each once
    assert m["online.param.encoder.fc1.weight"] == "online_encoder_fc1.kernel"
    assert m["online.param.encoder.norm1.gamma"] == "online_encoder_norm.gamma"
    assert m["online.param.projector.fc2.bias"] == "online_proj_fc2.bias"
    assert m["online.param.predictor.fc1.weight"] == "predictor_fc1.kernel"
    assert m["target.param.projector.norm1.beta"] == "target_proj_norm.beta"
    assert not any(k.startswith(("online.buffer.", "target.buffer.")) for k in m)  # layer norm has no buffers


@pytest.mark.parametrize("seed", [0, 1])
def test_axon_layout_computes_the_edifice_module(seed):
    """Edifice's parameters, read through the edifice mapping, give byol-ref networks whose loss,
    gradient and EMA are those of the transliterated Elixir module: a swapped or mis-transposed
    tensor (most share a shape) would change the loss."""
    from byol_ref.interchange import from_layout, to_layout
    from byol_ref.model import ema_update, loss_and_grads

    axon = _edifice_params(seed)
    preset = get_preset("edifice")
    mapping = resolve_mapping("edifice", preset.config(encoder_dim=1), "axon")
    ref = from_layout(axon, mapping, layout="axon")
    np.testing.assert_array_equal(ref["online.param.encoder.fc1.weight"], axon["online_encoder_fc1.kernel"])
    rng = np.random.default_rng(seed + 10)
    v1, v2 = rng.standard_normal((4, 5)), rng.standard_normal((4, 5))
    online, target, _, _ = networks_from_inputs({**ref, "view1": v1, "view2": v2}, preset)
    res = loss_and_grads(online, target, v1, v2)

    def edifice_loss(p):
        return _edifice_loss(_edifice_online(p, v1), _edifice_projection(p, "target", v2))

    np.testing.assert_allclose(float(res.loss), edifice_loss(axon), rtol=1e-12)
    grads = to_layout({f"online.param.{k}": g for k, g in res.grads.items()}, mapping, layout="axon")
    assert set(grads) == {k for k in axon if not k.startswith("target_")}
    for name, g in grads.items():  # central differences of the Elixir module's loss, entry by entry
        num = np.zeros_like(g)
        for i in np.ndindex(g.shape):
            plus, minus = dict(axon), dict(axon)
            plus[name], minus[name] = axon[name].copy(), axon[name].copy()
            plus[name][i] += 1e-6
            minus[name][i] -= 1e-6
            num[i] = (edifice_loss(plus) - edifice_loss(minus)) / 2e-6
        np.testing.assert_allclose(g, num, rtol=1e-5, atol=1e-8, err_msg=name)
    new_target = ema_update(online.params, target.params, 0.9)
    back = to_layout({f"target.param.{k}": v for k, v in new_target.items()}, mapping, layout="axon")
    expected = _edifice_ema(axon, {k: v for k, v in axon.items() if k.startswith("target_")}, 0.9)
    assert set(back) == set(expected)
    for k in expected:
        np.testing.assert_allclose(back[k], expected[k], rtol=1e-15, atol=1e-15, err_msg=k)


def test_axon_layout_round_trips_and_does_not_transpose(tmp_path):
    online, target = _nets("edifice")
    ref = networks_to_arrays(online, target)
    path = save_networks(tmp_path / "edifice.safetensors", online, target, layout="axon")  # mapping: edifice
    flat = load_arrays(path)
    assert set(flat) == set(resolve_mapping("edifice", online.config, "axon").values())
    np.testing.assert_array_equal(flat["online_encoder_fc1.kernel"], ref["online.param.encoder.fc1.weight"])
    assert flat["online_encoder_fc1.kernel"].shape == (5, 6)  # (in, out), as Axon's dense kernel
    back = load_networks(path, layout="axon", config=online.config)
    assert set(back) == set(ref)
    for k in ref:
        np.testing.assert_array_equal(back[k], ref[k])


def test_axon_layout_errors(tmp_path):
    from byol_ref.cli import main
    from byol_ref.interchange import axon_mapping

    deepmind = get_preset("deepmind").config(encoder_dim=1)
    with pytest.raises(ValueError, match=r"layers of Edifice.Contrastive.BYOL.*'layout': 'paper', 'norm': 'batch'"):
        axon_mapping("edifice", deepmind)
    with pytest.raises(ValueError, match="'sem_simplices': 4"):
        axon_mapping("edifice", get_preset("edifice").config(encoder_dim=1, sem_simplices=4, sem_simplex_dim=2))
    with pytest.raises(ValueError, match="mapping style 'edifice' names axon parameters, not torch ones"):
        resolve_mapping("edifice", deepmind, "torch")
    with pytest.raises(ValueError, match="mapping style 'lightly' names torch parameters, not axon ones"):
        resolve_mapping("lightly", deepmind, "axon")
    with pytest.raises(ValueError, match=r"torch mapping style must be one of \('byol-pytorch', 'lightly'\).*Axon"):
        torch_mapping("edifice", deepmind)
    online, target = _nets("edifice")
    own = save_networks(tmp_path / "own.npz", online, target)
    dst = str(tmp_path / "x.npz")
    assert main(["convert", own, dst, "--from", "byol-ref", "--to", "axon"]) == 2  # deepmind's structure
    assert main(["convert", own, dst, "--from", "byol-ref", "--to", "axon", "--preset", "deepmind"]) == 2
    assert main(["convert", own, dst, "--from", "torch", "--to", "axon", "--preset", "edifice"]) == 2
    assert main(["convert", own, dst, "--from", "byol-ref", "--to", "torch", "--mapping", "edifice",
                 "--preset", "edifice"]) == 2
    assert main(["trace", "--dims", "5,6,4,3", "--layout", "axon", "--out", dst]) == 2


def test_cli_convert_and_trace_in_the_axon_layout(tmp_path, capsys):
    """Edifice's parameters, converted or traced straight from the Axon layout, give the trace of
    the same networks in byol-ref's layout."""
    from byol_ref.cli import main
    from byol_ref.trace import load_trace

    axon = _edifice_params(3)
    rng = np.random.default_rng(4)
    views = {"view1": rng.standard_normal((4, 5)), "view2": rng.standard_normal((4, 5))}
    write_safetensors(tmp_path / "edifice.safetensors", {**axon, **views})
    assert main(["convert", str(tmp_path / "edifice.safetensors"), str(tmp_path / "own.npz"), "--from", "axon",
                 "--to", "byol-ref", "--preset", "edifice"]) == 0
    assert "kept 2 view array(s) unchanged" in capsys.readouterr().err
    own = load_arrays(tmp_path / "own.npz")
    np.testing.assert_array_equal(own["target.param.projector.norm1.gamma"], axon["target_proj_norm.gamma"])
    assert main(["convert", str(tmp_path / "own.npz"), str(tmp_path / "again.npz"), "--from", "byol-ref",
                 "--to", "axon", "--preset", "edifice"]) == 0
    again = load_arrays(tmp_path / "again.npz")
    assert set(again) == set(axon) | set(views)
    for k in axon:
        np.testing.assert_array_equal(again[k], axon[k])
    for src, extra in ((tmp_path / "edifice.safetensors", ["--layout", "axon"]), (tmp_path / "own.npz", [])):
        assert main(["trace", "--inputs", str(src), *extra, "--preset", "edifice", "--steps", "2",
                     "--out", str(tmp_path / f"{src.stem}.trace.npz")]) == 0
    a, b = load_trace(tmp_path / "edifice.trace.npz"), load_trace(tmp_path / "own.trace.npz")
    assert set(a.arrays) == set(b.arrays)
    for k in a.arrays:
        np.testing.assert_array_equal(a.arrays[k], b.arrays[k])
    # Reading the axon layout with its edifice mapping implies the module's preset: the same file. Writing
    # it does not (byol-ref weights of another structure would be renamed wrongly): --preset is needed.
    assert main(["convert", str(tmp_path / "edifice.safetensors"), str(tmp_path / "own2.npz"), "--from", "axon",
                 "--to", "byol-ref"]) == 0
    p, q = load_arrays(tmp_path / "own.npz"), load_arrays(tmp_path / "own2.npz")
    assert set(p) == set(q) and all(np.array_equal(p[k], q[k]) for k in p)
    capsys.readouterr()
    for partial in ([], ["--partial"]):
        assert main(["convert", str(tmp_path / "own.npz"), str(tmp_path / "again2.npz"), "--from", "byol-ref",
                     "--to", "axon", *partial]) == 2
        assert "but the config has {'layout': 'paper', 'norm': 'batch'}: use --preset edifice" in (
            capsys.readouterr().err)
    assert not (tmp_path / "again2.npz").exists()
    assert main(["trace", "--inputs", str(tmp_path / "edifice.safetensors"), "--layout", "axon", "--steps", "2",
                 "--out", str(tmp_path / "implied.trace.npz")]) == 0
    assert "preset edifice" in capsys.readouterr().out
    c = load_trace(tmp_path / "implied.trace.npz")
    assert set(c.arrays) == set(a.arrays) and all(np.array_equal(c.arrays[k], a.arrays[k]) for k in a.arrays)


def test_axon_layout_cli_messages(tmp_path, capsys):
    """Each refusal names the option and the way out; a JSON mapping of renamed Axon tensors traces as
    the shipped one; a missing or transposed tensor is named as the file names it."""
    from byol_ref.cli import main
    from byol_ref.trace import load_trace

    axon = _edifice_params(5)
    rng = np.random.default_rng(6)
    views = {"view1": rng.standard_normal((4, 5)), "view2": rng.standard_normal((4, 5))}
    src = tmp_path / "edifice.safetensors"
    write_safetensors(src, {**axon, **views})
    own = tmp_path / "own.npz"
    assert main(["convert", str(src), str(own), "--from", "axon", "--to", "byol-ref", "--preset", "edifice"]) == 0
    capsys.readouterr()

    def refused(args, message):
        assert main(args) == 2
        assert message in capsys.readouterr().err

    dst = str(tmp_path / "x.npz")
    refused(["convert", str(own), dst, "--from", "byol-ref", "--to", "torch", "--preset", "edifice"],
            "--to torch needs --mapping (byol-pytorch or lightly, or a JSON file)")
    refused(["convert", str(src), dst, "--from", "torch", "--to", "axon", "--mapping", "byol-pytorch"],
            "convert goes between byol-ref's layout and another one, got torch -> axon")
    refused(["convert", str(src), dst, "--from", "axon", "--to", "axon", "--mapping", "lightly"],
            "src and dst are both in the axon layout, so nothing is renamed: drop --mapping")
    refused(["trace", "--inputs", str(src), "--layout", "torch", "--mapping", "edifice", "--preset", "edifice",
             "--out", dst], "use it with the axon layout (trace --layout axon")
    trace = ["--preset", "edifice", "--steps", "1", "--out"]
    missing = tmp_path / "missing.safetensors"
    write_safetensors(missing, {k: v for k, v in {**axon, **views}.items() if k != "online_encoder_fc1.bias"})
    refused(["trace", "--inputs", str(missing), "--layout", "axon", *trace, dst],
            "lacks 1 axon tensor(s) that the edifice mapping names, e.g. ['online_encoder_fc1.bias']")
    flipped = tmp_path / "flipped.safetensors"
    write_safetensors(flipped, {**{k: v.T if k.endswith(".kernel") else v for k, v in axon.items()}, **views})
    refused(["trace", "--inputs", str(flipped), "--layout", "axon", *trace, dst],
            "online_encoder_fc1.kernel has shape (7, 5) but its bias online_encoder_fc1.bias has 7 features: "
            "axon weights are (in, out). It looks transposed.")
    # a JSON mapping of the same model under other Axon names
    renamed = {k: "m." + k.replace("online_", "o_").replace("target_", "t_") for k in axon}
    write_safetensors(tmp_path / "renamed.safetensors", {**{renamed[k]: v for k, v in axon.items()}, **views})
    shipped = resolve_mapping("edifice", get_preset("edifice").config(encoder_dim=1), "axon")
    (tmp_path / "map.json").write_text(json.dumps({ref: renamed[name] for ref, name in shipped.items()}))
    assert main(["trace", "--inputs", str(tmp_path / "renamed.safetensors"), "--layout", "axon", "--mapping",
                 str(tmp_path / "map.json"), *trace, str(tmp_path / "a.npz")]) == 0
    assert main(["trace", "--inputs", str(src), "--layout", "axon", *trace, str(tmp_path / "b.npz")]) == 0
    a, b = load_trace(tmp_path / "a.npz").arrays, load_trace(tmp_path / "b.npz").arrays
    assert set(a) == set(b) and all(np.array_equal(a[k], b[k]) for k in a)
    capsys.readouterr()
    assert main(["trace", "--inputs", str(tmp_path / "renamed.safetensors"), "--layout", "axon", "--mapping",
                 str(tmp_path / "map.json"), "--steps", "1", "--out", dst]) == 2  # deepmind's structure
    assert "note: --layout axon with preset deepmind (layout 'paper', norm 'batch')" in capsys.readouterr().err


def test_axon_layout_reads_old_axon_biases():
    """Older Axon versions shaped a dense bias {1, units}: read as (units,), the same networks. So is any
    other per-feature tensor stored {1, F} (Haiku keeps batch-norm scales, offsets and moving averages so);
    a weight is never reshaped."""
    from byol_ref.interchange import from_layout

    axon = _edifice_params(7)
    mapping = resolve_mapping("edifice", get_preset("edifice").config(encoder_dim=1), "axon")
    old = {k: v[None, :] if k.endswith(".bias") else v for k, v in axon.items()}
    new, back = from_layout(axon, mapping, layout="axon"), from_layout(old, mapping, layout="axon")
    assert set(back) == set(new)
    for k in new:
        np.testing.assert_array_equal(back[k], new[k])
        assert back[k].shape == new[k].shape
    haiku = from_layout({**axon, "online_proj_norm.beta": axon["online_proj_norm.beta"][None, :]}, mapping,
                        layout="axon")
    np.testing.assert_array_equal(haiku["online.param.projector.norm1.beta"], axon["online_proj_norm.beta"])
    one_in = {"online.param.encoder.fc1.weight": "fc.kernel"}  # a (1, out) weight: one input, not a bias
    assert from_layout({"fc.kernel": np.ones((1, 4))}, one_in, layout="axon")["online.param.encoder.fc1.weight"] \
        .shape == (1, 4)


# ----------------------------------------------------------------------------------------------
# Corners of the axon and torch layouts (each test kills a mutant the tests above let through)

def _edifice_structure():
    return get_preset("edifice").config(encoder_dim=1)


def test_axon_mapping_refuses_a_torch_style():
    from byol_ref.interchange import axon_mapping

    with pytest.raises(ValueError, match="Axon mapping style must be 'edifice'"):
        axon_mapping("lightly", _edifice_structure())


def test_only_a_dense_bias_stored_one_by_units_is_reshaped():
    """Older Axon's {1, units} bias, under any name the mapping gives it, and for a single unit too,
    reads as (units,); a (units, 1) column, and anything in the torch layout, is left as stored."""
    axon = _edifice_params(7)
    mapping = resolve_mapping("edifice", _edifice_structure(), "axon")
    column = {**axon, "online_encoder_fc1.bias": axon["online_encoder_fc1.bias"][:, None]}
    assert from_layout(column, mapping, layout="axon")["online.param.encoder.fc1.bias"].shape == (7, 1)
    custom = {"online.param.encoder.fc1.weight": "fc.k", "online.param.encoder.fc1.bias": "fc.b"}
    got = from_layout({"fc.k": np.zeros((2, 3)), "fc.b": np.arange(3.0)[None, :]}, custom, layout="axon")
    assert got["online.param.encoder.fc1.bias"].shape == (3,)
    np.testing.assert_array_equal(got["online.param.encoder.fc1.bias"], [0.0, 1.0, 2.0])
    one = {"online.param.encoder.fc1.weight": "fc.kernel", "online.param.encoder.fc1.bias": "fc.bias"}
    got = from_layout({"fc.kernel": np.zeros((2, 1)), "fc.bias": np.zeros((1, 1))}, one, layout="axon")
    assert got["online.param.encoder.fc1.bias"].shape == (1,)
    online, target = _nets("byol-pytorch")
    tmap = torch_mapping("byol-pytorch", online.config)
    state = to_torch_layout(networks_to_arrays(online, target), tmap)
    state["online_encoder.net.0.bias"] = state["online_encoder.net.0.bias"][None, :]
    assert from_torch_layout(state, tmap)["online.param.encoder.fc1.bias"].shape == (1, 6)


def test_a_transposed_torch_weight_is_named_as_stored():
    online, target = _nets("byol-pytorch")
    tmap = torch_mapping("byol-pytorch", online.config)
    state = to_torch_layout(networks_to_arrays(online, target), tmap)
    state["online_encoder.net.0.weight"] = state["online_encoder.net.0.weight"].T  # stored (in, out) = (5, 6)
    with pytest.raises(ValueError, match=r"online_encoder.net.0.weight has shape \(5, 6\) but its bias "
                                         r"online_encoder.net.0.bias has 6 features: torch weights are \(out, in\)\. "
                                         r"It looks transposed\."):
        from_torch_layout(state, tmap)


def test_save_and_load_networks_check_the_mapping(tmp_path):
    online, target = _nets("byol-pytorch")
    with pytest.raises(ValueError, match=r"needs a mapping: one of \('byol-pytorch', 'lightly'\),"):
        save_networks(tmp_path / "t.npz", online, target, layout="torch")
    online, target = _nets("edifice")
    partial = {"online.param.encoder.fc1.weight": "fc1.kernel"}
    with pytest.raises(ValueError, match="pass strict=False"):  # nothing is left out without a word
        save_networks(tmp_path / "p.npz", online, target, layout="axon", mapping=partial)
    assert not (tmp_path / "p.npz").exists()
    path = save_networks(tmp_path / "p.npz", online, target, layout="axon", mapping=partial, strict=False)
    assert set(load_arrays(path)) == {"fc1.kernel"}
    path = save_networks(tmp_path / "e.safetensors", online, target, layout="axon")
    with pytest.raises(ValueError, match="mapping style 'edifice' names axon parameters, not torch ones"):
        load_networks(path, layout="torch", mapping="edifice", config=online.config)


@pytest.fixture
def axon_file(tmp_path):
    axon = _edifice_params(5)
    rng = np.random.default_rng(6)
    views = {"view1": rng.standard_normal((4, 5)), "view2": rng.standard_normal((4, 5))}
    src = tmp_path / "edifice.safetensors"
    write_safetensors(src, {**axon, **views})
    return src, axon, views


def test_trace_layout_messages(tmp_path, axon_file, capsys):
    from byol_ref.cli import main

    src, axon, views = axon_file
    out = ["--steps", "1", "--out", str(tmp_path / "x.npz")]

    def refused(args, *says, absent=()):
        assert main(args) == 2
        err = capsys.readouterr().err
        for text in says:
            assert text in err, err
        for text in absent:
            assert text not in err, err

    refused(["trace", "--inputs", str(src), "--layout", "axon", "--preset", "edifice", "--set", "norm=batch", *out],
            "note: --layout axon with preset edifice (layout 'edifice', norm 'batch')")
    refused(["trace", "--inputs", str(src), "--layout", "torch", "--preset", "edifice", *out],
            "--layout torch needs --mapping (byol-pytorch or lightly, or a JSON file)")
    online, target = _nets("edifice")
    own = save_networks(tmp_path / "own.npz", online, target)
    refused(["trace", "--inputs", own, "--layout", "axon", *out], "the axon state lacks")  # none of its names
    miss = tmp_path / "m.safetensors"
    write_safetensors(miss, {k: v for k, v in {**axon, **views}.items()
                             if k not in ("online_encoder_fc1.bias", "online_encoder_fc1.kernel")})
    refused(["trace", "--inputs", str(miss), "--layout", "axon", *out], "lacks 2 axon tensor(s)",
            absent=["a model without these biases"])  # the hint is for missing biases only


@pytest.mark.parametrize("extra, flag", [(["--preset", "edifice"], "--preset"),
                                         (["--set", "ln_var=one_pass"], "--set")])
def test_convert_between_equal_layouts_refuses_structure_options(tmp_path, capsys, extra, flag):
    from byol_ref.cli import main

    online, target = _nets("edifice")
    own = save_networks(tmp_path / "own.npz", online, target)
    assert main(["convert", own, str(tmp_path / "x.npz"), "--from", "byol-ref", "--to", "byol-ref", *extra]) == 2
    assert f"so nothing is renamed: drop {flag}" in capsys.readouterr().err


def test_convert_with_nothing_to_write_names_the_mapping_used(tmp_path, capsys):
    from byol_ref.cli import main

    np.savez(tmp_path / "foo.npz", foo=np.zeros(3))
    assert main(["convert", str(tmp_path / "foo.npz"), str(tmp_path / "x.npz"), "--from", "byol-ref", "--to", "axon",
                 "--preset", "edifice", "--partial"]) == 2
    assert "no array of" in (err := capsys.readouterr().err) and "has a name in the edifice mapping" in err


def test_convert_a_run_of_another_structure_to_axon_says_why(tmp_path, capsys):
    """A run's structure is its own (--preset is refused with it): the refusal says which runs convert."""
    from byol_ref.cli import main

    run = tmp_path / "run"
    assert main(["train", "--data", "synthetic", "--epochs", "1", "--hidden-size", "8", "--projection-dim", "4",
                 "--predictor-dim", "4", "--out", str(run), "--no-eval", "--no-progress", "--no-plots"]) == 0
    capsys.readouterr()
    assert main(["convert", str(run), str(tmp_path / "x.npz"), "--from", "byol-ref", "--to", "axon"]) == 2
    err = capsys.readouterr().err
    assert f"{run} holds a network that the edifice mapping does not name" in err
    assert "only a run trained with --preset edifice converts with it" in err and "use --preset" not in err


@pytest.mark.parametrize("bad, says", [(np.nan, "must hold whole numbers"), (np.inf, "must hold whole numbers"),
                                       (1e300, r"must be a step count in \[0, 2\*\*62\]"),
                                       (1.5, "must hold whole numbers"), (-2, "must be a step count")])
def test_a_torch_batch_count_that_is_no_count_is_refused(bad, says):
    """num_batches_tracked is cast to int64 only once it is a whole number in range: a cast alone makes NaN,
    inf and 1e300 the count -2**63, and 1.5 the count 1."""
    online, target = _nets("lightly")
    tmap = torch_mapping("lightly", online.config)
    state = to_torch_layout(networks_to_arrays(online, target), tmap)
    name = next(k for k in state if k.endswith("num_batches_tracked"))
    with pytest.raises(ValueError, match=rf"{re.escape(name)} {says}"):
        from_torch_layout({**state, name: np.array(bad)}, tmap)
    assert from_torch_layout({**state, name: np.array(7.0)}, tmap)  # a float count that is whole is fine
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # float16 cannot hold 2**62: compared in float64, with no overflow warning
        assert from_torch_layout({**state, name: np.array(7.0, dtype="float16")}, tmap)


def test_arrays_named_like_savez_arguments_are_written(tmp_path):
    """np.savez(f, **arrays) would take these names for its own arguments (one dropped, one an error);
    an object array, which only pickle could read back, is refused before anything is written."""
    from byol_ref.interchange import save_arrays

    arrays = {"allow_pickle": np.arange(3.0), "file": np.ones((2, 2)), "x": np.zeros(1)}
    save_arrays(tmp_path / "a.npz", arrays)
    back = load_arrays(tmp_path / "a.npz")
    assert list(back) == list(arrays) and all(np.array_equal(back[k], arrays[k]) for k in arrays)
    with pytest.raises(ValueError, match="allow_pickle=False"):
        save_arrays(tmp_path / "o.npz", {"o": np.array([{}, 1], dtype=object)})
    assert not (tmp_path / "o.npz").exists()


def test_the_mapping_helpers_name_what_they_were_given(tmp_path):
    from byol_ref.interchange import axon_mapping

    for call in (lambda: torch_mapping("lightly", None), lambda: resolve_mapping("lightly", {"a": 1}),
                 lambda: axon_mapping("edifice", 3)):
        with pytest.raises(TypeError, match=r"config must be a byol_ref Config \(e.g. preset.config\("):
            call()
    with pytest.raises(TypeError, match="online must be a byol_ref Network, got NoneType"):
        networks_to_arrays(None)
    for name in (1, "", "__metadata__"):  # (the last is the format's own header entry)
        with pytest.raises(ValueError, match=f"array names must be non-empty strings other than '__metadata__', got "
                                             f"{name!r}"):
            write_safetensors(tmp_path / "w.safetensors", {name: np.ones(2)})
    assert not (tmp_path / "w.safetensors").exists()
    with pytest.raises(TypeError, match=r"the torch state's 'x' \(for online.param.encoder.fc1.weight\) holds <U3 "
                                        "data, expected numbers"):
        from_layout({"x": np.array(["0.5"])}, {"online.param.encoder.fc1.weight": "x"}, layout="torch", strict=False)


def test_a_weight_of_another_rank_or_of_integers_is_refused():
    """Both passed through unconverted (a 1-D or 3-D weight was not transposed; integers were cast later)."""
    ref = "online.param.encoder.fc1.weight"
    for layout, want in (("torch", r"\(out, in\)"), ("axon", r"\(in, out\)")):
        for shape in ((3,), (), (2, 3, 4)):
            with pytest.raises(ValueError, match=rf"the {layout} state's 'x' \(for {ref}\) has shape "
                                                 rf"{re.escape(str(shape))}, expected a 2-D Linear weight {want}"):
                from_layout({"x": np.ones(shape)}, {ref: "x"}, layout=layout, strict=False)
    with pytest.raises(TypeError, match=r"holds int64 data, expected floating point \(only a batch count"):
        from_layout({"x": np.ones((2, 3), np.int64)}, {ref: "x"}, layout="torch", strict=False)
    count = "online.buffer.encoder.norm1.count"  # (a count is a whole number)
    assert from_layout({"n": np.array(3)}, {count: "n"}, layout="torch", strict=False)[count] == 3
    gamma = "online.param.encoder.norm1.gamma"  # (a norm's torch "weight" is 1-D: its byol-ref name says gamma)
    assert from_layout({"bn.weight": np.ones(3)}, {gamma: "bn.weight"}, layout="torch", strict=False)[gamma].shape \
        == (3,)


def test_a_tensor_of_bools_is_no_weight():
    with pytest.raises(TypeError, match=r"the torch state's 'x' \(for online.param.encoder.fc1.weight\) holds bool "
                                        "data, expected numbers"):
        from_layout({"x": np.ones((2, 3), bool)}, {"online.param.encoder.fc1.weight": "x"}, layout="torch",
                    strict=False)


def test_a_haiku_export_traces_through_the_axon_layout_with_no_edifice_note(tmp_path, capsys):
    """Haiku names through a mapping file, its per-feature tensors stored (1, F): the same trace as
    the byol-ref layout, and no note about Edifice (the note is for weights that then do not fit)."""
    from byol_ref.cli import main

    online, target = _nets()
    hk = {"weight": "w", "bias": "b", "gamma": "scale", "beta": "offset", "running_mean": "~/mean_ema/average",
          "running_var": "~/var_ema/average", "count": "~/mean_ema/counter"}
    mapping, haiku, plain = {}, {}, {}
    for net in (online, target):
        for kind, tree in (("param", net.params), ("buffer", net.buffers)):
            for name, value in tree.items():
                part, layer, what = name.split(".")
                ref, theirs = f"{net.role}.{kind}.{name}", f"{net.role}/{part}_{layer}/{hk[what]}"
                mapping[ref], plain[ref] = theirs, np.asarray(value)
                haiku[theirs] = plain[ref][None] if plain[ref].ndim == 1 and what != "bias" else plain[ref]
    rng = np.random.default_rng(0)
    views = dict(zip(("view1", "view2"), rng.standard_normal((2, 4, 5))))
    np.savez(tmp_path / "hk.npz", **haiku, **views)
    np.savez(tmp_path / "plain.npz", **plain, **views)
    (tmp_path / "hk.json").write_text(json.dumps(mapping))
    capsys.readouterr()
    assert main(["trace", "--inputs", str(tmp_path / "hk.npz"), "--layout", "axon", "--mapping",
                 str(tmp_path / "hk.json"), "--steps", "1", "--out", str(tmp_path / "a.npz")]) == 0
    assert "note" not in capsys.readouterr().err
    assert main(["trace", "--inputs", str(tmp_path / "plain.npz"), "--steps", "1", "--out",
                 str(tmp_path / "b.npz")]) == 0
    a, b = load_trace(tmp_path / "a.npz").arrays, load_trace(tmp_path / "b.npz").arrays
    assert set(a) == set(b) and all(np.array_equal(a[k], b[k]) for k in a)


def test_the_edifice_note_goes_with_a_mapping_files_from_layout_error(tmp_path, capsys):
    from byol_ref.cli import main

    axon = _edifice_params(5)
    rng = np.random.default_rng(6)
    views = {"view1": rng.standard_normal((4, 5)), "view2": rng.standard_normal((4, 5))}
    renamed = {k: "m." + k.replace("online_", "o_").replace("target_", "t_") for k in axon}
    shipped = resolve_mapping("edifice", get_preset("edifice").config(encoder_dim=1), "axon")
    (tmp_path / "map.json").write_text(json.dumps({ref: renamed[name] for ref, name in shipped.items()}))
    flipped = {renamed[k]: (v.T if k.endswith(".kernel") else v) for k, v in axon.items()}
    write_safetensors(tmp_path / "f.safetensors", {**flipped, **views})
    assert main(["trace", "--inputs", str(tmp_path / "f.safetensors"), "--layout", "axon", "--mapping",
                 str(tmp_path / "map.json"), "--steps", "1", "--out", str(tmp_path / "a.npz")]) == 2
    err = capsys.readouterr().err
    assert "It looks transposed. (note: --layout axon with preset deepmind (layout 'paper', norm 'batch')" in err


# ---------------------------------------------------------------------------------------
# Which arrays a transpose touches; .safetensors int32 (a mutation audit found these unpinned).
# ---------------------------------------------------------------------------------------


def test_transpose_weights_leaves_other_two_dimensional_arrays_alone():
    out = np.arange(12.0).reshape(4, 3)
    square = np.arange(9.0).reshape(3, 3)
    d = {"step0.online.view1.encoder.fc1.out": out, "step0.online.view1.p.normed": square,
         "step0.online.grad.encoder.fc1.weight": square}
    t = transpose_weights(d)
    np.testing.assert_array_equal(t["step0.online.view1.encoder.fc1.out"], out)
    np.testing.assert_array_equal(t["step0.online.view1.p.normed"], square)
    np.testing.assert_array_equal(t["step0.online.grad.encoder.fc1.weight"], square.T)


def test_safetensors_int32_is_four_bytes_each_both_ways(tmp_path):
    """A hand-built I32 tensor (Haiku's batch-norm counter, say) reads as int32; int32 writes as I32."""
    data = struct.pack("<3i", 7, -1, 2**31 - 1)
    header = json.dumps({"c": {"dtype": "I32", "shape": [3], "data_offsets": [0, 12]}}).encode()
    (tmp_path / "i.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + data)
    back = read_safetensors(tmp_path / "i.safetensors")["c"]
    assert back.dtype == np.int32 and back.tolist() == [7, -1, 2**31 - 1]
    write_safetensors(tmp_path / "w.safetensors", {"c": np.array([7, -1], dtype=np.int32)})
    raw = (tmp_path / "w.safetensors").read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    assert json.loads(raw[8:8 + n]) == {"c": {"dtype": "I32", "shape": [2], "data_offsets": [0, 8]}}
    assert raw[8 + n:] == struct.pack("<2i", 7, -1)


def test_arrays_state_and_mapping_that_are_no_dicts_are_named():
    """Found by an API audit: transpose_weights(None), to_layout with a None mapping and from_layout
    with a list state were AttributeErrors or 'argument of type NoneType is not iterable' from inside."""
    from byol_ref import interchange as ic

    with pytest.raises(TypeError, match="arrays must be a dict name -> array, got NoneType"):
        ic.transpose_weights(None)
    with pytest.raises(TypeError, match="arrays must be a dict name -> array, got list"):
        ic.to_layout([1], {}, layout="torch")
    with pytest.raises(TypeError, match=r"mapping must be a dict \{byol-ref name: torch name\} .*got NoneType"):
        ic.to_torch_layout({"a": np.zeros(2)}, None)
    with pytest.raises(TypeError, match=r"mapping must be a dict \{byol-ref name: axon name\} .*got str"):
        ic.from_layout({"a": np.zeros(2)}, "edifice", layout="axon")
    with pytest.raises(TypeError, match="state must be a dict name -> array, got list"):
        ic.from_torch_layout([1], {})


def test_arrays_keyed_by_other_than_names_are_refused_and_any_mapping_is_a_dict():
    """Found by a mutation audit: arrays keyed by a number reached the name rules (an AttributeError from
    transpose_weights, 'no torch name' from to_layout) with no test of it; and a read-only mapping (a
    MappingProxyType, a dict in all but type) is taken as a dict."""
    from types import MappingProxyType

    w = np.arange(6.0).reshape(2, 3)
    for call in (lambda a: transpose_weights(a), lambda a: to_torch_layout(a, {"x.weight": "x.weight"})):
        with pytest.raises(TypeError, match="arrays must be a dict name -> array, got dict"):
            call({1: w})
    with pytest.raises(TypeError, match="state must be a dict name -> array, got dict"):
        from_torch_layout({("x", "weight"): w.T}, {"x.weight": "x.weight"})
    np.testing.assert_array_equal(transpose_weights(MappingProxyType({"x.weight": w}))["x.weight"], w.T)
    back = from_torch_layout(MappingProxyType({"t.weight": w.T}), MappingProxyType({"x.weight": "t.weight"}))
    np.testing.assert_array_equal(back["x.weight"], w)


def test_a_strict_load_names_a_single_mapped_tensor_the_state_lacks():
    """One missing bias must not come back as a partial dict (the network would be built without it)."""
    online, target = _nets("byol-pytorch")
    mapping = torch_mapping("byol-pytorch", online.config)
    state = to_torch_layout(networks_to_arrays(online, target), mapping)
    del state["online_predictor.3.bias"]
    with pytest.raises(ValueError, match=r"lacks 1 mapped name\(s\), e\.g\. \['online_predictor\.3\.bias'\]"):
        from_torch_layout(state, mapping)


def test_safetensors_arrays_come_back_writable_in_native_byte_order(tmp_path):
    """Not read-only views of the file's bytes: a caller may edit what it loaded."""
    write_safetensors(tmp_path / "x.safetensors", {"w": np.arange(6.0).reshape(2, 3), "c": np.array(3, "int64")})
    for k, a in read_safetensors(tmp_path / "x.safetensors").items():
        assert a.flags.writeable and a.flags.owndata and a.dtype.isnative, k
        a += 1


def test_the_safetensors_writer_and_reader_name_a_bad_argument(tmp_path):
    # Found by a bad-input fuzz of the .safetensors reader and writer: arrays=None was an AttributeError
    # ('NoneType' object has no attribute 'items'); a folder for the path was "[Errno 21] Is a directory",
    # the writer's naming its temporary file first; a path with a NUL in it was "embedded null byte".
    from byol_ref.interchange import save_arrays
    kept = tmp_path / "w.safetensors"
    kept.write_bytes(b"mine")
    for arrays in (None, [np.ones(2)]):
        with pytest.raises(TypeError, match=r"arrays must be a dict name -> array, got (NoneType|list)"):
            write_safetensors(kept, arrays)
    assert kept.read_bytes() == b"mine"
    folder = tmp_path / "folder.safetensors"
    folder.mkdir()
    with pytest.raises(IsADirectoryError, match=r"folder.safetensors is a folder; expected the path of a file to "
                                                r"write"):
        write_safetensors(folder, {"a": np.ones(2)})
    with pytest.raises(FileNotFoundError, match=r"weights file .*folder.safetensors is a directory; expected a "
                                                r"\.safetensors file"):
        read_safetensors(folder)
    assert list(folder.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["folder.safetensors",
                                                                                           "w.safetensors"]
    for call in (lambda p: read_safetensors(p), lambda p: write_safetensors(p, {"a": np.ones(2)}),
                 lambda p: save_arrays(p, {"a": np.ones(2)})):
        with pytest.raises(ValueError, match=r"path '.*a\\x00b.npz' holds a NUL character, which no file path can"):
            call(str(tmp_path / "a\0b.npz"))


def test_resolve_mapping_refuses_an_empty_mapping_and_an_unknown_layout(tmp_path):
    # Found by a bad-input fuzz of resolve_mapping: {} (or a JSON file of {}) was taken, and load_networks
    # with strict=False then returned no arrays; a layout other than torch or axon was not looked at when
    # the mapping was a dict.
    with pytest.raises(ValueError, match=r"mapping is empty; expected \{byol-ref name: torch or axon name\}"):
        resolve_mapping({})
    (tmp_path / "m.json").write_text("{}")
    with pytest.raises(ValueError, match=r"mapping file .*m.json: mapping is empty"):
        resolve_mapping(str(tmp_path / "m.json"))
    mapping = {"online.param.encoder.fc1.weight": "backbone.0.weight"}
    for layout in ("bogus", "byol-ref", 3):
        with pytest.raises(ValueError, match=r"layout must be None or one of \('torch', 'axon'\), got "):
            resolve_mapping(mapping, None, layout)
    assert resolve_mapping(mapping, None, "torch") == mapping


def test_a_checkpoint_is_not_written_over_a_folder(tmp_path):
    from byol_ref import checkpoint as ckpt
    (tmp_path / "c.npz").mkdir()
    with pytest.raises(IsADirectoryError, match=r"c.npz is a folder; expected the path of a file to write"):
        ckpt.save(tmp_path / "c.npz", {"opt": {"a": np.ones(2)}}, {"step": 0})
    assert [p.name for p in tmp_path.iterdir()] == ["c.npz"] and not any((tmp_path / "c.npz").iterdir())


def test_a_style_mapping_without_the_config_it_is_built_for_is_refused(tmp_path):
    """load_networks(path, layout="torch", mapping="lightly") without config=: a style's names depend on the
    network's structure, so the style is named with what it needs (the axon layout's default style too)."""
    online, target = _nets("lightly")
    path = save_networks(tmp_path / "w.npz", online, target, layout="torch", mapping="lightly")
    for layout, style in (("torch", "lightly"), ("axon", "edifice")):
        with pytest.raises(ValueError, match=rf"^mapping style '{style}' needs the network config \(layout, norm, "
                                             r"biases\)$"):
            load_networks(path, layout=layout, mapping=style if layout == "torch" else None)


def test_byol_pytorch_weights_with_a_simplicial_embedding_read_without_one_get_the_fix():
    """byol-pytorch 0.9 builds a simplicial embedding by default; its weights (projector.0.0, 0.1, 2.<i>)
    read with a config that has none lack the projector's mapped names: the refusal says what they look
    like and the option that reads them."""
    sizes = dict(encoder_dim=5, hidden_size=6, projection_dim=4, predictor_dim=3)
    with_sem = get_preset("byol-pytorch").config(**sizes, sem_simplices=2, sem_simplex_dim=3)
    online, target = build_from_config(with_sem, seed=0)
    state = to_torch_layout(networks_to_arrays(online, target), torch_mapping("byol-pytorch", with_sem))
    with pytest.raises(ValueError, match=r"lacks 18 mapped name\(s\).* These look like byol-pytorch 0.9's default "
                                         r"simplicial embedding \(projector.0.0, 0.1, 2.<i>\): add --set "
                                         r"sem_simplices=32 \(model.Config.sem_simplices\), or build its BYOL with "
                                         r"use_simplicial_embeddings=False.$"):
        from_torch_layout(state, torch_mapping("byol-pytorch", get_preset("byol-pytorch").config(**sizes)))


def test_byol_pytorch_weights_of_use_momentum_false_are_told_as_simsiam(tmp_path, capsys):
    """byol-pytorch's BYOL(use_momentum=False) is SimSiam: no target network, and a SimSiamMLP projector
    (projector.0, 3, 6, bias-free, batch norm 1, 4 and an affine-less 7). Its weights got "lacks 25
    mapped name(s) ... Wrong mapping style, or a model of another structure?", and a user was left to
    guess which; the refusal now says what they are and that byol-ref does not build them."""
    from byol_ref.cli import main

    sizes = dict(encoder_dim=5, hidden_size=6, projection_dim=4, predictor_dim=3)
    cfg = get_preset("byol-pytorch").config(**sizes)
    plain = to_torch_layout(networks_to_arrays(*build_from_config(cfg, seed=0)), torch_mapping("byol-pytorch", cfg))
    rng = np.random.default_rng(0)
    simsiam = {k: v for k, v in plain.items() if k.startswith(("online_encoder.net.", "online_predictor."))}
    for i, (n_out, n_in) in zip((0, 3, 6), ((6, 5), (6, 6), (4, 6))):
        simsiam[f"online_encoder.projector.{i}.weight"] = rng.standard_normal((n_out, n_in))
        bn = f"online_encoder.projector.{i + 1}."
        simsiam.update({bn + "running_mean": np.zeros(n_out), bn + "running_var": np.ones(n_out),
                        bn + "num_batches_tracked": np.array(0)})
        if i < 6:
            simsiam.update({bn + "weight": np.ones(n_out), bn + "bias": np.zeros(n_out)})
    said = (r"These look like byol-pytorch's BYOL\(use_momentum=False\), which is SimSiam, not BYOL: its projector "
            r"is SimSiamMLP \(projector.0, 3 and 6: .*\), which byol-ref does not build; docs/verifying.md says")
    with pytest.raises(ValueError, match=r"lacks \d+ mapped name\(s\).* " + said):
        from_torch_layout(simsiam, torch_mapping("byol-pytorch", cfg))
    np.savez(tmp_path / "simsiam.npz", **simsiam)
    assert main(["convert", str(tmp_path / "simsiam.npz"), str(tmp_path / "out.npz"), "--from", "torch", "--to",
                 "byol-ref", "--mapping", "byol-pytorch", "--preset", "byol-pytorch"]) == 2
    assert re.search(said, capsys.readouterr().err) and not (tmp_path / "out.npz").exists()
    with pytest.raises(ValueError, match=r"lacks \d+ mapped name\(s\).*layout\)\?$"):  # (BYOL's, told no such thing)
        from_torch_layout({k: v for k, v in plain.items() if "projector.3.bias" not in k},
                          torch_mapping("byol-pytorch", cfg))


@pytest.mark.parametrize("raw", [b"", b"abc", b"\x08\x00\x00\x00\x00\x00\x00"])
def test_a_safetensors_file_shorter_than_its_length_field_is_named(tmp_path, raw):
    """A .safetensors file of fewer than the 8 bytes of its header length (empty, or cut off): the file is
    named as too short to be one, where unpacking the length would fail on a struct error."""
    (tmp_path / "w.safetensors").write_bytes(raw)
    with pytest.raises(TraceError, match=r"w.safetensors is too short to be a .safetensors file$"):
        load_networks(tmp_path / "w.safetensors")


@pytest.mark.parametrize("value, dtype", [(np.zeros(2, complex), "complex128"), (np.array(["a"]), "<U1"),
                                          (np.array([None]), "object")])
def test_the_safetensors_writer_names_an_array_of_a_dtype_it_cannot_hold(tmp_path, value, dtype):
    """An array of complex numbers, strings or objects for a .safetensors file: the array is named with
    its dtype and the dtypes the format holds here, and nothing is written."""
    with pytest.raises(TypeError, match=rf"^'b' has dtype {dtype}; .safetensors here holds \['bool', 'float16', "
                                        r"'float32', 'float64', 'int16', 'int32', 'int64', 'int8', 'uint16', "
                                        r"'uint32', 'uint64', 'uint8'\]$"):
        write_safetensors(tmp_path / "w.safetensors", {"a": np.ones(2), "b": value})
    assert list(tmp_path.iterdir()) == []


def test_save_networks_writes_the_online_network_alone_and_refuses_an_unknown_layout(tmp_path):
    """save_networks(path, online) (no target): only online.* arrays are written, and read back equal; a
    layout byol-ref does not write is named with the three it does, and nothing is written."""
    online, target = _nets()
    path = save_networks(tmp_path / "online.safetensors", online)
    back = load_networks(path)
    assert set(back) == set(networks_to_arrays(online)) and all(k.startswith("online.") for k in back)
    for k, v in networks_to_arrays(online).items():
        np.testing.assert_array_equal(back[k], v)
    for layout in ("jax", "byol_ref"):
        with pytest.raises(ValueError, match=rf"^layout must be one of \('byol-ref', 'torch', 'axon'\), got "
                                             rf"'{layout}'$"):
            save_networks(tmp_path / "x.npz", online, target, layout=layout)
    assert [p.name for p in tmp_path.iterdir()] == ["online.safetensors"]


def test_networks_to_arrays_gives_copies_the_networks_do_not_share():
    """networks_to_arrays returned the networks' own arrays on NumPy: scaling one in place (to try a
    perturbation, say) changed the network it came from, params and buffers alike."""
    online, target = _nets()
    before = {k: v.copy() for k, v in networks_to_arrays(online, target).items()}
    arrays = networks_to_arrays(online, target)
    for v in arrays.values():
        v *= 0
    assert before.keys() == arrays.keys() and any(k.startswith("online.buffer.") for k in arrays)
    for k, v in networks_to_arrays(online, target).items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)


def test_every_conversion_is_strict_unless_told_otherwise(tmp_path):
    """to_layout, from_layout and load_networks leave nothing out by default: an array the mapping does not
    name, or a tensor of a module it does not touch (a classifier head), is an error until strict=False."""
    online, target = _nets("edifice")
    arrays = networks_to_arrays(online, target)
    partial = {"online.param.encoder.fc1.weight": "fc1.kernel"}
    with pytest.raises(ValueError, match=r"no axon name for \d+ byol-ref array\(s\).*pass strict=False"):
        to_layout(arrays, partial, layout="axon")
    assert set(to_layout(arrays, partial, layout="axon", strict=False)) == {"fc1.kernel"}
    mapping = resolve_mapping("edifice", online.config, "axon")
    state = {**to_layout(arrays, mapping, layout="axon"), "classifier.kernel": np.ones((4, 2))}
    with pytest.raises(ValueError, match=r"1 axon name\(s\) have no byol-ref name, e\.g\. \['classifier\.kernel'\]"):
        from_layout(state, mapping, layout="axon")
    assert set(from_layout(state, mapping, layout="axon", strict=False)) == set(arrays)
    path = tmp_path / "with_head.safetensors"
    write_safetensors(path, state)
    with pytest.raises(ValueError, match=r"have no byol-ref name, e\.g\. \['classifier\.kernel'\]"):
        load_networks(path, layout="axon", config=online.config)
    assert set(load_networks(path, layout="axon", config=online.config, strict=False)) == set(arrays)


def test_one_unmapped_running_statistic_is_named_with_its_own_layer_s_buffers():
    """The advice names the buffers of the norm layer the first unmapped tensor belongs to; with a single
    one (a mapping that forgot one running mean) there is no second to look at."""
    online, target = _nets("byol-pytorch")
    mapping = torch_mapping("byol-pytorch", online.config)
    state = to_torch_layout(networks_to_arrays(online, target), mapping)
    forgot = {k: v for k, v in mapping.items() if k != "target.buffer.projector.norm1.running_mean"}
    with pytest.raises(ValueError, match=r"has \['target_encoder\.projector\.1\.running_mean'\], unmapped .* e\.g\. "
                                         r"target\.buffer\.projector\.norm1\.running_mean, \.running_var"):
        from_torch_layout(state, forgot)


def test_a_weight_named_weight_alone_is_transposed_too():
    """A bare nn.Linear's state_dict names its weight ``weight``: it is a Linear weight as ``fc.weight`` is."""
    w, b = np.arange(6.0).reshape(2, 3), np.ones(2)
    t = transpose_weights({"weight": w, "bias": b, "weights": w})
    np.testing.assert_array_equal(t["weight"], w.T)
    assert t["bias"] is b and t["weights"] is w
