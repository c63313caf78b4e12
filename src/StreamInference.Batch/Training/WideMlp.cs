using StreamInference.Batch.Onnx;

namespace StreamInference.Batch.Training;

/// <summary>Shape of the large example model (<c>train --architecture wide-mlp</c>).</summary>
public sealed record WideMlpShape(int Hidden = 4096, int Layers = 3, int Seed = 42)
{
    /// <param name="features">Input width (the feature set's; 64 bounds it where it is not known yet).</param>
    public void Validate(int features = 64)
    {
        if (Hidden is < 8 or > 65_536) throw new ArgumentException($"--hidden must be between 8 and 65536 (was {Hidden}).");
        if (Layers is < 1 or > 64) throw new ArgumentException($"--layers must be between 1 and 64 (was {Layers}).");
        // One ONNX protobuf holds every weight: it must stay under 2 GB (and each layer under one array).
        if ((long)Hidden * Hidden > int.MaxValue / 4 || Parameters(features) * 4L > 1_900_000_000L)
            throw new ArgumentException($"--hidden {Hidden} --layers {Layers} gives {Parameters(features) * 4L / 1_000_000:N0} MB of weights; an ONNX file holds under 2 GB.");
    }

    /// <summary>Weights and biases of the residual branch (the logistic-regression path adds features + 1).</summary>
    public long Parameters(int features) =>
        (long)features * Hidden + Hidden + (long)(Layers - 1) * ((long)Hidden * Hidden + Hidden) + Hidden + 2L * features;

    /// <summary>Multiply-adds per scored row.</summary>
    public long MultiplyAddsPerRow(int features) => (long)features * Hidden + (long)(Layers - 1) * Hidden * Hidden + Hidden + features;
}

/// <summary>
/// The GPU-sized example model: the trained logistic regression's logit plus a residual branch, a
/// wide ReLU MLP over the standardized features (<see cref="WideMlpShape.Layers"/> layers of
/// <see cref="WideMlpShape.Hidden"/> units, He-initialized from a fixed seed, output weights scaled
/// so the branch moves the logit by about 0.1). Its cost is a large model's (tens of millions of
/// parameters, two GEMMs of Hidden² per row); its scores stay close to the trained model's, and
/// its held-out AUC is measured on the exported ONNX graph, not assumed.
/// </summary>
public static class WideMlp
{
    /// <param name="weights">The trained logistic regression's weights on the raw features.</param>
    /// <param name="bias">Its bias.</param>
    public static OnnxGraph Build(string graphName, float[] weights, float bias, double[] mean, double[] std, WideMlpShape shape)
    {
        var f = weights.Length;
        shape.Validate(f);
        var random = new Random(shape.Seed);
        var graph = new OnnxGraph(graphName)
            .InputMatrix("features", f)
            // Logistic-regression path, exactly as the trained model.
            .Initializer("lr_weights", weights, f, 1)
            .Initializer("lr_bias", [bias], 1)
            .Node("MatMul", ["features", "lr_weights"], ["lr_raw"])
            .Node("Add", ["lr_raw", "lr_bias"], ["lr_logit"])
            // Residual branch on standardized features.
            .Initializer("feature_mean", [.. mean.Select(m => (float)m)], f)
            .Initializer("feature_inv_std", [.. std.Select(s => (float)(s > 0 ? 1 / s : 1))], f)
            .Node("Sub", ["features", "feature_mean"], ["centered"])
            .Node("Mul", ["centered", "feature_inv_std"], ["standardized"]);

        var input = "standardized";
        var width = f;
        for (var layer = 1; layer <= shape.Layers; layer++)
        {
            graph.Initializer($"w{layer}", Gaussian(random, width * shape.Hidden, Math.Sqrt(2.0 / width)), width, shape.Hidden)
                 .Initializer($"b{layer}", new float[shape.Hidden], shape.Hidden)
                 .Node("MatMul", [input, $"w{layer}"], [$"z{layer}_raw"])
                 .Node("Add", [$"z{layer}_raw", $"b{layer}"], [$"z{layer}"])
                 .Node("Relu", [$"z{layer}"], [$"h{layer}"]);
            input = $"h{layer}";
            width = shape.Hidden;
        }
        // He initialization keeps E[h²] near 1, so N(0, 0.1²/Hidden) output weights give the branch a
        // standard deviation of about 0.1 in logit units.
        return graph
            .Initializer("w_out", Gaussian(random, width, 0.1 / Math.Sqrt(width)), width, 1)
            .Node("MatMul", [input, "w_out"], ["residual"])
            .Node("Add", ["lr_logit", "residual"], ["logit"])
            .Node("Sigmoid", ["logit"], ["probability"])
            .OutputTensor("probability", OnnxGraph.Float, -1, 1);
    }

    private static float[] Gaussian(Random random, int count, double std)
    {
        var values = new float[count];
        for (var i = 0; i < count; i += 2)
        {
            // Box–Muller: two independent normals per pair of uniforms.
            var u1 = 1.0 - random.NextDouble();
            var u2 = random.NextDouble();
            var r = Math.Sqrt(-2.0 * Math.Log(u1)) * std;
            values[i] = (float)(r * Math.Cos(2 * Math.PI * u2));
            if (i + 1 < count) values[i + 1] = (float)(r * Math.Sin(2 * Math.PI * u2));
        }
        return values;
    }
}
