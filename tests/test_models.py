import numpy as np
import pytest
import torch
from PIL import Image

from isc_helpers.core import models


@pytest.fixture(scope="module")
def lite0():
    return models.efficientnet_lite0(pretrained=True)


def test_offline_imagenet_weights_classify_known_photos(lite0):
    """The renamed weights really are ImageNet weights: scikit-image's cat and coffee photos."""
    from skimage import data
    cat = models.imagenet_top5(lite0, Image.fromarray(data.chelsea()))
    coffee = models.imagenet_top5(lite0, Image.fromarray(data.coffee()))
    assert cat[0][0] in range(281, 286) and cat[0][1] > 0.5      # a domestic cat class, confidently
    assert coffee[0][0] in (967, 968)                             # espresso / cup


def test_random_init_does_not_classify():
    torch.manual_seed(0)
    from skimage import data
    net = models.efficientnet_lite0(pretrained=False)
    top = models.imagenet_top5(net, Image.fromarray(data.chelsea()))
    assert top[0][1] < 0.2


def test_conversion_rejects_wrong_shapes():
    import timm
    state = torch.load(models.lite0_weights_path(), map_location="cpu", weights_only=True)
    net = timm.create_model(models.LITE0_ARCH, pretrained=False)
    converted = models.convert_lite0_state_dict(state, net)
    assert set(converted) == set(net.state_dict())
    bad = dict(state)
    bad["_conv_stem.weight"] = torch.zeros(16, 3, 3, 3)
    with pytest.raises(ValueError, match="does not fit"):
        models.convert_lite0_state_dict(bad, net)
    partial = {k: v for k, v in state.items() if not k.startswith("_fc")}
    with pytest.raises(ValueError, match="unset"):
        models.convert_lite0_state_dict(partial, net)


def test_gem_limits():
    x = torch.rand(2, 4, 5, 5) + 0.1
    assert torch.allclose(models.GeM(p=1)(x), x.mean(dim=(2, 3)), atol=1e-6)
    big = models.GeM(p=50)(x)
    assert torch.allclose(big, x.amax(dim=(2, 3)), rtol=0.1)


def test_descriptor_net_and_extract(tmp_path, lite0):
    net = models.DescriptorNet(lite0, dim=64)
    paths = []
    rng = np.random.RandomState(0)
    for i in range(3):
        p = tmp_path / f"{i}.jpg"
        Image.fromarray(rng.randint(0, 255, (50 + 10 * i, 70, 3), np.uint8)).save(p)
        paths.append(p)
    x = models.extract(net, paths, size=64, batch_size=2, device="cpu")
    assert x.shape == (3, 64) and x.dtype == np.float32
    assert np.allclose(np.linalg.norm(x, axis=1), 1, atol=1e-5)
