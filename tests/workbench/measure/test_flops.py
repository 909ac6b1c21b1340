"""FLOPs of a small hand-built Linear + Conv model against a count done by hand."""

import torch
from torch import nn

from workbench.measure.flops import onnx_flops, torch_flops
from workbench.models import load_model


class LinearConv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, kernel_size=3)  # 8x8 -> 6x6
        self.fc = nn.Linear(4 * 6 * 6, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).flatten(1))


# By hand, per image: the conv makes 4 x 6 x 6 outputs, each 3 x 3 x 3 multiply-adds = 3,888 MACs;
# the linear layer 144 inputs x 5 outputs = 720 MACs. 2 FLOPs per MAC, bias and ReLU not counted.
MACS_PER_IMAGE = 4 * 6 * 6 * (3 * 3 * 3) + 144 * 5
assert MACS_PER_IMAGE == 4608


def test_onnx_graph_and_torch_counts_equal_the_hand_count():
    handle = load_model(LinearConv(), example_input=torch.randn(1, 3, 8, 8))
    feed = handle.example_inputs(2)
    from_graph = onnx_flops(handle.onnx(), feed)
    from_torch = torch_flops(handle.torch_module, feed)
    assert from_graph.macs == 2 * MACS_PER_IMAGE
    assert from_graph.flops == 2 * 2 * MACS_PER_IMAGE
    assert from_graph.flops_per_item == 9216
    assert from_torch.flops == from_graph.flops
    assert (from_graph.method, from_torch.method) == ("onnx-graph", "torch-flopcounter")


def test_counts_agree_on_a_transformer_graph():
    handle = load_model("minilm", input_shapes={"input_ids": (1, 32)})
    feed = handle.example_inputs(1)
    graph, eager = onnx_flops(handle.onnx(), feed), torch_flops(handle.torch_module, feed)
    # 6 layers x (4 projections 384x384 + FFN 2 x 384x1536) x 32 tokens, plus attention products
    dense = 6 * 32 * (4 * 384 * 384 + 2 * 384 * 1536)
    assert dense < graph.macs < dense * 1.1
    assert abs(graph.flops - eager.flops) / eager.flops < 0.01
