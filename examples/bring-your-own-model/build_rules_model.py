#!/usr/bin/env python3
"""A fraud model this project did not train: a risk team's rules, written as an ONNX tree ensemble.

Three shallow trees over the card_payments v2 features, in the graph shape scikit-learn's converters
emit for a tree classifier: input float_input float [N, 12]; TreeEnsembleClassifier -> output_label
int64 [N] and probabilities [N, 2]; ZipMap -> output_probability seq(map(int64, float)). The trees
add log-odds (post_transform LOGISTIC), so the fraud probability is sigmoid(base + sum of leaves).

Needs only the onnx Python package (Debian: apt-get install python3-onnx):
    python3 build_rules_model.py fraud-rules.onnx
The committed fraud-rules.onnx was written by this script.
"""
import sys

import onnx
from onnx import TensorProto, helper

FEATURES = [
    "log_amount", "amount_band", "hour_of_day", "is_online", "is_atm", "is_foreign",
    "card_txn_count_1h", "card_txn_count_24h", "card_log_mean_amount_30d", "card_log_max_amount_7d",
    "merchant_fraud_rate_30d", "merchant_log_txn_count_30d",
]
F = {name: i for i, name in enumerate(FEATURES)}

# Each tree: nodes as (feature, threshold, left, right) for branches (left when value <= threshold)
# and ("leaf", log_odds) for leaves; node 0 is the root.
TREES = [
    # Spend: far above the card's own 30-day mean is the strongest signal.
    [("spend_gap", 1.0, 1, 2), ("leaf", -1.2), ("is_online", 0.5, 3, 4), ("leaf", 1.4), ("leaf", 2.6)],
    # Where: abroad at night.
    [("is_foreign", 0.5, 1, 2), ("hour_of_day", 5.5, 3, 4), ("hour_of_day", 5.5, 5, 6),
     ("leaf", 0.4), ("leaf", -0.6), ("leaf", 1.5), ("leaf", 0.6)],
    # Who: the merchant's recent fraud rate.
    [("merchant_fraud_rate_30d", 0.02, 1, 2), ("leaf", -0.5), ("merchant_fraud_rate_30d", 0.08, 3, 4),
     ("leaf", 0.7), ("leaf", 1.6)],
]
BASE_LOG_ODDS = -3.6


def flatten(trees):
    """TreeEnsembleClassifier attributes. 'spend_gap' (log_amount - card_log_mean_amount_30d) is not an input
    column: the graph computes it (Slice, Sub) and appends it as column 12 before the ensemble."""
    attrs = {k: [] for k in ["nodes_treeids", "nodes_nodeids", "nodes_featureids", "nodes_values", "nodes_modes",
                             "nodes_truenodeids", "nodes_falsenodeids", "class_treeids", "class_nodeids",
                             "class_ids", "class_weights"]}
    for t, nodes in enumerate(trees):
        for n, node in enumerate(nodes):
            attrs["nodes_treeids"].append(t)
            attrs["nodes_nodeids"].append(n)
            if node[0] == "leaf":
                attrs["nodes_featureids"].append(0)
                attrs["nodes_values"].append(0.0)
                attrs["nodes_modes"].append("LEAF")
                attrs["nodes_truenodeids"].append(0)
                attrs["nodes_falsenodeids"].append(0)
                attrs["class_treeids"].append(t)
                attrs["class_nodeids"].append(n)
                # Binary ensembles carry one score (class id 0) that ONNX Runtime turns into [1 - p, p],
                # as scikit-learn's converter writes a binary gradient-boosting model.
                attrs["class_ids"].append(0)
                attrs["class_weights"].append(node[1])
            else:
                feature, threshold, left, right = node
                attrs["nodes_featureids"].append(len(FEATURES) if feature == "spend_gap" else F[feature])
                attrs["nodes_values"].append(threshold)
                attrs["nodes_modes"].append("BRANCH_LEQ")
                attrs["nodes_truenodeids"].append(left)
                attrs["nodes_falsenodeids"].append(right)
    return attrs


def zipmap_type():
    """seq(map(int64, float)), spelled out (older onnx releases have no helper for map types)."""
    t = onnx.TypeProto()
    t.sequence_type.elem_type.map_type.key_type = TensorProto.INT64
    t.sequence_type.elem_type.map_type.value_type.tensor_type.elem_type = TensorProto.FLOAT
    return t


def build():
    n = "N"
    # spend_gap = log_amount - card_log_mean_amount_30d, appended as column 12.
    starts = helper.make_tensor("starts_amount", TensorProto.INT64, [1], [F["log_amount"]])
    ends = helper.make_tensor("ends_amount", TensorProto.INT64, [1], [F["log_amount"] + 1])
    starts_mean = helper.make_tensor("starts_mean", TensorProto.INT64, [1], [F["card_log_mean_amount_30d"]])
    ends_mean = helper.make_tensor("ends_mean", TensorProto.INT64, [1], [F["card_log_mean_amount_30d"] + 1])
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    nodes = [
        helper.make_node("Slice", ["float_input", "starts_amount", "ends_amount", "axes"], ["amount"]),
        helper.make_node("Slice", ["float_input", "starts_mean", "ends_mean", "axes"], ["mean_amount"]),
        helper.make_node("Sub", ["amount", "mean_amount"], ["spend_gap"]),
        helper.make_node("Concat", ["float_input", "spend_gap"], ["with_gap"], axis=1),
        helper.make_node("TreeEnsembleClassifier", ["with_gap"], ["output_label", "probabilities"], domain="ai.onnx.ml",
                         classlabels_int64s=[0, 1], post_transform="LOGISTIC", base_values=[BASE_LOG_ODDS],
                         **flatten(TREES)),
        helper.make_node("ZipMap", ["probabilities"], ["output_probability"], domain="ai.onnx.ml", classlabels_int64s=[0, 1]),
    ]
    graph = helper.make_graph(
        nodes, "fraud_rules",
        [helper.make_tensor_value_info("float_input", TensorProto.FLOAT, [n, len(FEATURES)])],
        [helper.make_tensor_value_info("output_label", TensorProto.INT64, [n]),
         helper.make_value_info("output_probability", zipmap_type())],
        initializer=[starts, ends, starts_mean, ends_mean, axes])
    model = helper.make_model(graph, producer_name="risk-team-rules", opset_imports=[
        helper.make_opsetid("", 13), helper.make_opsetid("ai.onnx.ml", 1)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


if __name__ == "__main__":
    onnx.save(build(), sys.argv[1] if len(sys.argv) > 1 else "fraud-rules.onnx")
