import torch

from lit_superposition.analysis.neurons import top_feature, top_feature_share


def test_top_feature_share_on_hand_built_neurons():
    W = torch.tensor([[
        [0.0, 2.0, 0.0],     # monosemantic on feature 1
        [1.0, -1.0, 0.0],    # shared evenly by two features (the sign does not matter)
        [1.0, 1.0, 1.0],     # three features
        [0.0, 0.0, 0.0],     # a dead neuron
    ]])  # (n_instances=1, d_hidden=4, n_features=3)
    torch.testing.assert_close(top_feature_share(W), torch.tensor([[1.0, 0.5, 1 / 3, 0.0]]))
    assert top_feature(W)[0, 0] == 1
