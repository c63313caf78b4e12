using System.Globalization;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace StreamInference.Infrastructure.Onnx;

/// <summary>Input tensors filled with one value, for any input ONNX Runtime describes: constant inputs, probes, warm-up.</summary>
public static class OnnxFeeds
{
    /// <summary>The shape of <paramref name="meta"/> for <paramref name="rows"/> rows: a dynamic first dimension is the row count, other dynamic ones 1.</summary>
    public static long[] Shape(NodeMetadata meta, int rows) =>
        meta.Dimensions.Length == 0 ? [] : [.. meta.Dimensions.Select((d, i) => i == 0 && d <= 0 ? rows : d <= 0 ? 1L : d)];

    /// <summary>Element types an input can have and still be fed a constant.</summary>
    public static bool CanFill(NodeMetadata meta) =>
        meta.OnnxValueType == OnnxValueType.ONNX_TYPE_TENSOR && meta.ElementDataType is TensorElementType.Float or TensorElementType.Double
            or TensorElementType.Int64 or TensorElementType.Int32 or TensorElementType.Bool or TensorElementType.String;

    /// <summary>A tensor of <paramref name="meta"/>'s type and shape for <paramref name="rows"/> rows, every element <paramref name="value"/>.</summary>
    public static OrtValue Filled(NodeMetadata meta, int rows, double value)
    {
        var shape = Shape(meta, rows);
        var count = (int)shape.Aggregate(1L, (a, b) => a * b);
        return meta.ElementDataType switch
        {
            TensorElementType.Float => OrtValue.CreateTensorValueFromMemory(Enumerable.Repeat((float)value, count).ToArray(), shape),
            TensorElementType.Double => OrtValue.CreateTensorValueFromMemory(Enumerable.Repeat(value, count).ToArray(), shape),
            TensorElementType.Int64 => OrtValue.CreateTensorValueFromMemory(Enumerable.Repeat((long)value, count).ToArray(), shape),
            TensorElementType.Int32 => OrtValue.CreateTensorValueFromMemory(Enumerable.Repeat((int)value, count).ToArray(), shape),
            TensorElementType.Bool => OrtValue.CreateTensorValueFromMemory(Enumerable.Repeat(value != 0, count).ToArray(), shape),
            TensorElementType.String => OrtValue.CreateFromStringTensor(new DenseTensor<string>(
                Enumerable.Repeat(value.ToString(CultureInfo.InvariantCulture), count).ToArray(), [.. shape.Select(d => (int)d)])),
            var other => throw new NotSupportedException($"an input of element type {other} cannot be fed a constant"),
        };
    }
}
