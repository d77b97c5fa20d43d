import pytest
import torch

from rdskd_dist.errors import UnknownNameError
from rdskd_dist.models import create_model, create_model_from_spec, list_models, model_spec

CLASSIFIERS = ["gapnet", "gapnet_half", "lenet5", "lenet5_half", "resnet18", "resnet34", "wrn16_1", "wrn16_2", "wrn40_1",
               "wrn40_2"]


def test_registry_lists_every_network():
    assert set(CLASSIFIERS) | {"dafl_generator"} == set(list_models())
    assert list_models("generator") == ["dafl_generator"]


@pytest.mark.parametrize("name", CLASSIFIERS)
@pytest.mark.parametrize("channels,classes", [(1, 10), (3, 100)])
def test_classifier_shapes_and_features(name, channels, classes):
    model = create_model(name, num_classes=classes, in_channels=channels, image_size=32).eval()
    out = model(torch.randn(2, channels, 32, 32), features=True)
    assert out.logits.shape == (2, classes)
    assert out.penultimate.shape == (2, model.penultimate_dim)
    assert out.preact.shape[:2] == (2, model.preact_channels)
    assert (out.preact.dim() == 4) == model.preact_spatial
    assert torch.equal(model(torch.zeros(1, channels, 32, 32)), model(torch.zeros(1, channels, 32, 32), features=True).logits)


def test_parameter_counts_match_the_reference_architectures():
    count = lambda n: sum(p.numel() for p in create_model(n).parameters())  # noqa: E731
    assert count("resnet18") == 11_173_962  # CIFAR ResNet-18, 10 classes
    assert count("resnet34") == 21_282_122
    assert count("wrn40_2") == 2_243_546
    assert count("wrn16_1") == 175_066
    half = create_model("lenet5_half", in_channels=1)
    assert [half.conv1.out_channels, half.conv2.out_channels, half.conv3.out_channels, half.fc1.out_features] == [3, 8, 60, 42]


def test_the_gap_student_takes_any_input_size_and_scores_an_object_wherever_it_sits():
    """The GAP student averages local evidence: an object moved by a multiple of its total stride (4), away from
    the borders, scores the same (LeNet-5 would not), and any input size gives logits."""
    torch.manual_seed(0)
    half = create_model("gapnet_half", in_channels=1, image_size=48).eval()
    assert [c.out_channels for c in half.convs] == [8, 16, 16, 32]
    assert sum(p.numel() for p in half.parameters()) < sum(p.numel() for p in create_model("lenet5_half").parameters())
    canvas = torch.zeros(1, 1, 48, 48)
    canvas[..., 16:22, 16:22] = torch.rand(6, 6)
    moved = torch.roll(canvas, (4, 8), (2, 3))
    assert torch.allclose(half(canvas), half(moved), atol=1e-6)
    assert not torch.allclose(half(canvas), half(torch.roll(canvas, (1, 0), (2, 3))), atol=1e-6)  # stride 4, not 1
    for size in (20, 28, 32):
        assert half(torch.randn(3, 1, size, size)).shape == (3, 10)


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_lenet_pooling_shortcut_gives_the_reference_stack_exactly(memory_format):
    """LeNet pools before its ReLU and, without a gradient, takes the maximum of strided sub-grids: the logits
    and every gradient must be the reference relu -> max_pool2d stack's, bit for bit, odd map sizes included."""
    import torch.nn.functional as F

    from rdskd_dist.models.lenet import max_pool_2x2

    odd = torch.randn(3, 5, 7, 9)
    with torch.no_grad():
        assert torch.equal(max_pool_2x2(odd), F.max_pool2d(odd, 2))
    torch.manual_seed(0)
    model = create_model("lenet5", in_channels=1, image_size=28).to(memory_format=memory_format)  # maps 24, 12, 8, 4

    def reference(x):
        x = F.max_pool2d(F.relu(model.conv1(x)), 2)
        x = F.max_pool2d(F.relu(model.conv2(x)), 2)
        return model.fc2(F.relu(model.fc1(F.relu(model.conv3(x)).flatten(1))))

    x = torch.randn(16, 1, 28, 28).contiguous(memory_format=memory_format).requires_grad_()
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))
    grads = []
    for forward in (model, reference):
        model.zero_grad()
        x.grad = None
        forward(x).square().sum().backward()
        grads.append([x.grad.clone(), *(p.grad.clone() for p in model.parameters())])
    assert all(torch.equal(a, b) for a, b in zip(*grads))


def test_bn_layers_exposed():
    assert len(create_model("resnet18").bn_layers()) == 20
    assert create_model("lenet5").bn_layers() == []


@pytest.mark.parametrize("channels,size,latent", [(1, 32, 100), (3, 32, 1000)])
def test_generator_output(channels, size, latent):
    g = create_model("dafl_generator", latent_dim=latent, out_channels=channels, image_size=size)
    x = g(torch.randn(8, latent))
    assert x.shape == (8, channels, size, size)
    # The final affine-free BN standardises each channel over the batch in train mode.
    assert torch.allclose(x.mean(dim=(0, 2, 3)), torch.zeros(channels), atol=1e-4)


def test_spec_round_trip_rebuilds_the_same_class():
    model = create_model("wrn16_2", num_classes=7, in_channels=3)
    spec = model_spec(model)
    assert spec == {"name": "wrn16_2", "num_classes": 7, "in_channels": 3}
    rebuilt = create_model_from_spec(spec)
    rebuilt.load_state_dict(model.state_dict())
    assert type(rebuilt) is type(model)


def test_unknown_model_lists_valid_names():
    with pytest.raises(UnknownNameError, match="unknown model 'resnet99'; valid: .*resnet18"):
        create_model("resnet99")
