import numpy as np
import pytest
import torch
from torch import nn

from latentmix.errors import ConfigError
from latentmix.models.small import (
    SequenceEncoder,
    match_saved_widths,
    MLP,
    FusionNet,
    SmallCNN,
    SpiralMLP,
    TextClassifier,
    model_for_inputs,
)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _flat_names(mix_points):
    for entry in mix_points:
        if isinstance(entry, tuple):
            yield from entry
        else:
            yield entry


def _check_mix_points(model: nn.Module, inputs, expected_logits_shape):
    """Every mix-point module exists, runs exactly once per forward; returns the hooked outputs."""
    names = list(_flat_names(model.mix_points))
    assert names and len(set(names)) == len(names)
    counts = {name: 0 for name in names}
    outputs = {}
    handles = []
    for name in names:
        module = model.get_submodule(name)

        def hook(mod, args, out, name=name):
            counts[name] += 1
            outputs[name] = out

        handles.append(module.register_forward_hook(hook))
    try:
        logits = model(inputs)
    finally:
        for h in handles:
            h.remove()
    assert logits.shape == expected_logits_shape
    assert counts == {name: 1 for name in names}
    # replacing a mix point's output changes the logits (the output is really used downstream)
    name = names[-1]
    handle = model.get_submodule(name).register_forward_hook(lambda m, a, o: torch.zeros_like(o))
    try:
        changed = model(inputs)
    finally:
        handle.remove()
    assert not torch.allclose(changed, logits)
    return outputs


def test_mlp():
    model = MLP(7, 3, hidden=(16, 8, 4), activation="tanh").eval()
    assert model.mix_points == ("block1", "block2", "block3")
    out = _check_mix_points(model, torch.randn(5, 7), (5, 3))
    assert out["block2"].shape == (5, 8)
    assert isinstance(model.block1[1], nn.Tanh)
    with pytest.raises(ConfigError, match="activation"):
        MLP(3, 2, activation="gelu2")


def test_spiral_mlp_shapes():
    model = SpiralMLP().eval()
    assert SpiralMLP.mix_points == ("layer1", "layer2", "layer3", "layer4", "layer5")
    linears = [model.get_submodule(f"layer{i}")[0] for i in range(1, 6)] + [model.output]
    dims = [(m.in_features, m.out_features) for m in linears]
    assert dims == [(4, 16), (16, 24), (24, 24), (24, 24), (24, 16), (16, 2)]
    assert all(isinstance(model.get_submodule(f"layer{i}")[1], nn.Tanh) for i in range(1, 6))
    assert "output" not in model.mix_points
    out = _check_mix_points(model, torch.randn(6, 4), (6, 2))
    assert [out[f"layer{i}"].shape[1] for i in range(1, 6)] == [16, 24, 24, 24, 16]


def test_small_cnn():
    model = SmallCNN(in_channels=1, num_classes=10, width=8).eval()
    out = _check_mix_points(model, torch.randn(3, 1, 28, 28), (3, 10))
    assert out["block1"].shape == (3, 8, 14, 14)
    assert out["block2"].shape == (3, 16, 7, 7)
    assert out["block3"].shape == (3, 128)
    rgb = SmallCNN(in_channels=3, num_classes=4, width=4, image_size=(32, 20)).eval()
    assert rgb(torch.randn(2, 3, 32, 20)).shape == (2, 4)


def test_text_classifier():
    model = TextClassifier(vocab_size=30, num_classes=5, embed_dim=8, hidden=16).eval()
    assert model.mix_points == ("embed", "encoder", "block1")
    tokens = torch.randint(0, 30, (4, 11))
    out = _check_mix_points(model, tokens, (4, 5))
    assert out["embed"].shape == (4, 11, 8)
    assert out["encoder"].shape == (4, 16)
    assert out["block1"].shape == (4, 16)


def _multimodal(n=4):
    return {
        "image": torch.randn(n, 3, 12, 12),
        "text": torch.randint(0, 25, (n, 9)),
        "meta": torch.randn(n, 6),
    }


def test_fusion_net_dict_inputs():
    specs = {
        "image": {"kind": "image", "shape": (3, 12, 12)},
        "text": {"kind": "tokens", "vocab_size": 25},
        "meta": {"kind": "features", "dim": 6},
    }
    model = FusionNet(specs, num_classes=3, fusion_hidden=32).eval()
    assert model.mix_points == (("encoders.image", "encoders.text", "encoders.meta"), "fusion1", "fusion2")
    inputs = _multimodal()
    out = _check_mix_points(model, inputs, (4, 3))
    for key in specs:
        assert out[f"encoders.{key}"].shape == (4, 64)
    assert out["fusion1"].shape == (4, 32) and out["fusion2"].shape == (4, 32)
    # key order of the input dict does not matter
    reordered = {k: inputs[k] for k in reversed(list(inputs))}
    assert torch.allclose(model(reordered), model(inputs))
    with pytest.raises(KeyError, match="meta"):
        model({k: v for k, v in inputs.items() if k != "meta"})


def test_fusion_net_bad_specs():
    with pytest.raises(ConfigError, match="unknown kind"):
        FusionNet({"a": {"kind": "audio"}}, 2)
    with pytest.raises(ConfigError, match="vocab_size"):
        FusionNet({"a": {"kind": "tokens"}}, 2)
    with pytest.raises(ConfigError, match="'.'"):
        FusionNet({"a.b": {"kind": "features", "dim": 2}}, 2)


def test_model_for_inputs():
    assert isinstance(model_for_inputs(torch.randn(5, 3), 2), MLP)
    cnn = model_for_inputs(torch.zeros(5, 1, 28, 28, dtype=torch.uint8), 10)
    assert isinstance(cnn, SmallCNN)
    tokens = torch.randint(0, 40, (5, 7))
    tokens[0, 0] = 39
    text = model_for_inputs(tokens, 3)
    assert isinstance(text, TextClassifier) and text.embed.num_embeddings == 40
    inputs = _multimodal()
    fusion = model_for_inputs(inputs, 3)
    assert isinstance(fusion, FusionNet)
    assert fusion(inputs).shape == (4, 3)
    explicit = model_for_inputs(torch.randn(5, 3), 2, {"x": "features"})
    assert isinstance(explicit, MLP) and explicit.in_features == 3


def test_model_for_dataset(tmp_path):
    from latentmix.data.arrays import load_arrays

    rng = np.random.default_rng(0)
    n = 30
    np.savez(
        tmp_path / "mm.npz",
        image=rng.integers(0, 256, (n, 1, 8, 8), dtype=np.uint8),
        text=rng.integers(0, 20, (n, 6)),
        meta=rng.normal(size=(n, 3)),
        labels=np.arange(n) % 3,
    )
    ds = load_arrays(tmp_path / "mm.npz")
    model = model_for_inputs(ds).eval()
    assert isinstance(model, FusionNet)
    assert model(ds.eval_transform(ds.val_inputs)).shape == (ds.num_val, 3)

    np.savez(tmp_path / "t.npz", tokens=rng.integers(0, 20, (n, 6)), labels=np.arange(n) % 2)
    ds = load_arrays(tmp_path / "t.npz")
    model = model_for_inputs(ds)
    assert isinstance(model, TextClassifier)
    assert model.embed.num_embeddings == ds.info["vocab_sizes"]["tokens"]


def test_the_default_fusion_model_flattens_the_image_map_as_the_default_image_model_does():
    """A user's image + tokens file gets an image encoder that keeps the flattened map, like
    SmallCNN: with global average pooling CE on clean image + tokens pairs (4,000 Fashion-MNIST
    images) ended at 74.2% against 87.0% (docs/robust-defaults.md). Images under 4x4 keep the
    average (they cannot be max-pooled twice)."""
    from latentmix.models.small import model_for_inputs

    tokens = torch.randint(0, 16, (8, 49))
    model = model_for_inputs({"image": torch.zeros(8, 1, 28, 28, dtype=torch.uint8), "tokens": tokens}, num_classes=10)
    layers = list(model.encoders["image"].net)
    assert any(isinstance(layer, nn.Flatten) for layer in layers)
    assert not any(isinstance(layer, nn.AdaptiveAvgPool2d) for layer in layers)
    # the head sees 2*width channels of a 7x7 map (28 / 4), as SmallCNN's block3 does
    linear = next(layer for layer in layers if isinstance(layer, nn.Linear))
    assert linear.in_features == 64 * 7 * 7
    small = model_for_inputs({"image": torch.zeros(8, 1, 3, 3), "tokens": tokens}, num_classes=10)
    assert any(isinstance(layer, nn.AdaptiveAvgPool2d) for layer in small.encoders["image"].net)


def test_sequence_encoder_widths():
    """Width 1 sees each token alone: with max pooling its output cannot depend on the order of the
    tokens. Width 3 sees neighbours, so it does. Several widths share `hidden` between them."""
    torch.manual_seed(0)
    x = torch.randn(2, 9, 5)
    shuffled = x[:, torch.randperm(9)]
    bag = SequenceEncoder(5, 12, kernel_sizes=(1,)).eval()
    assert torch.allclose(bag(x), bag(shuffled), atol=1e-6)
    ordered = SequenceEncoder(5, 12, kernel_sizes=(3,)).eval()
    assert not torch.allclose(ordered(x), ordered(shuffled), atol=1e-3)
    both = SequenceEncoder(5, 13, kernel_sizes=(1, 3, 4)).eval()
    assert [conv.out_channels for conv in both.convs] == [5, 4, 4]
    assert both(x).shape == (2, 13)
    # the width-1 channels of the mixed encoder are the bag part: order-free on their own
    assert torch.allclose(both(x)[:, :5], both(shuffled)[:, :5], atol=1e-6)
    assert TextClassifier(vocab_size=30, num_classes=5).encoder.kernel_sizes == (1, 3)
    with pytest.raises(ConfigError, match="kernel_sizes"):
        SequenceEncoder(5, 12, kernel_sizes=())
    assert SequenceEncoder(5, 12, 5).kernel_sizes == (5,)  # one width as an int, as before
    assert SequenceEncoder(5, 12, 4)(x).shape == (2, 12)  # an even width keeps the T positions


def test_a_width_3_token_model_saved_before_loads_into_todays_default():
    """A run folder of the token model before it had widths 1 and 3 holds `encoder.conv.*` of
    width 3: `match_saved_widths` gives today's default model that encoder back, and the loaded
    model computes what the saved one did."""
    torch.manual_seed(0)
    saved = TextClassifier(vocab_size=30, num_classes=5, embed_dim=8, hidden=16, kernel_sizes=(3,)).eval()
    state = saved.state_dict()
    assert "encoder.conv.weight" in state and tuple(state["encoder.conv.weight"].shape) == (16, 8, 3)
    today = TextClassifier(vocab_size=30, num_classes=5, embed_dim=8, hidden=16).eval()
    with pytest.raises(RuntimeError):
        today.load_state_dict(state)
    match_saved_widths(today, state)
    today.load_state_dict(state)
    tokens = torch.randint(0, 30, (4, 11))
    assert torch.equal(today(tokens), saved(tokens))
    assert today.encoder.kernel_sizes == (3,)
    # already matching: nothing is rebuilt
    encoder = today.encoder
    match_saved_widths(today, state)
    assert today.encoder is encoder
