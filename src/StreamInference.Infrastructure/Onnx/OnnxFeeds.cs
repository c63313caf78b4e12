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
        if (meta.ElementDataType == TensorElementType.String)
            return OrtValue.CreateFromStringTensor(new DenseTensor<string>(
                Enumerable.Repeat(value.ToString(CultureInfo.InvariantCulture), count).ToArray(), [.. shape.Select(d => (int)d)]));
        return Over(Buffer(meta, count, value), count, shape);
    }

    /// <summary>An array of <paramref name="meta"/>'s numeric or bool element type holding <paramref name="count"/> times <paramref name="value"/>.</summary>
    public static Array Buffer(NodeMetadata meta, int count, double value) => meta.ElementDataType switch
    {
        TensorElementType.Float => Enumerable.Repeat((float)value, count).ToArray(),
        TensorElementType.Double => Enumerable.Repeat(value, count).ToArray(),
        TensorElementType.Int64 => Enumerable.Repeat((long)value, count).ToArray(),
        TensorElementType.Int32 => Enumerable.Repeat((int)value, count).ToArray(),
        TensorElementType.Bool => Enumerable.Repeat(value != 0, count).ToArray(),
        var other => throw new NotSupportedException($"an input of element type {other} cannot be fed a constant"),
    };

    /// <summary>A tensor over the first <paramref name="count"/> elements of a <see cref="Buffer"/> (no copy).</summary>
    public static OrtValue Over(Array buffer, int count, long[] shape) => buffer switch
    {
        float[] f => OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, f.AsMemory(0, count), shape),
        double[] d => OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, d.AsMemory(0, count), shape),
        long[] l => OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, l.AsMemory(0, count), shape),
        int[] i => OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, i.AsMemory(0, count), shape),
        bool[] b => OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, b.AsMemory(0, count), shape),
        _ => throw new ArgumentException($"no tensor over a {buffer.GetType().Name}", nameof(buffer)),
    };
}
