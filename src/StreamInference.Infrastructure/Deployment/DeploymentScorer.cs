using Microsoft.Extensions.Logging;
using StreamInference.Core.Deployment;
using StreamInference.Core.Pipeline;
using StreamInference.Infrastructure.Onnx;

namespace StreamInference.Infrastructure.Deployment;

/// <summary>
/// A shadow model of a deployment: scored on the same feature vectors as the champion, into its own buffers (the
/// champion's outputs are never touched), and published where the champion's consumers do not read. A shadow that
/// fails to score a batch publishes nothing for it; the champion's batch goes on as if there were no shadow.
/// </summary>
public sealed class ShadowModel : IDisposable
{
    public ShadowModel(OnnxScorer scorer, ShadowSpec spec, int capacity)
    {
        Scorer = scorer;
        Spec = spec;
        Scores = new double[capacity * scorer.OutputWidth];
        Labels = new string?[capacity];
        Sample = spec.Sample < 1 ? new EntitySampler($"shadow:{spec.Model}", spec.Sample) : null;
    }

    public OnnxScorer Scorer { get; }
    public ShadowSpec Spec { get; }
    public ModelIdentity Identity => Scorer.Identity;
    /// <summary>The last batch's outputs: <see cref="OnnxScorer.OutputWidth"/> scores and one label per clean row.</summary>
    public double[] Scores { get; }
    public string?[] Labels { get; }
    /// <summary>Which entities' predictions are published (sticky by entity key); null: every one.</summary>
    public EntitySampler? Sample { get; }
    /// <summary>Whether the last batch was scored (false after a failure).</summary>
    public bool Valid { get; private set; }
    public long Failures { get; private set; }

    public ReadOnlySpan<double> ScoreRow(int k) => Scores.AsSpan(k * Scorer.OutputWidth, Scorer.OutputWidth);

    /// <summary>Marks the outputs stale before a batch is scored: nothing of a previous batch is ever published.</summary>
    public void Invalidate() => Valid = false;

    public void Score(EventBatch batch, ILogger log)
    {
        Valid = false;
        try
        {
            Scorer.ScoreInto(batch, Scores, Labels);
            Valid = true;
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            Failures++;
            DeploymentLog.ShadowFailed(log, Identity.ToString(), batch.OkCount, e.Message);
        }
    }

    public void Dispose() => Scorer.Dispose();
}

/// <summary>
/// The score stage's scorer under a deployment: the champion scores the batch (its outputs are the predictions
/// consumers read), then each shadow scores the same vectors into its own buffers for the sink to publish apart.
/// The shadows are owned by the processor runtime, not by this scorer.
/// </summary>
public sealed class DeploymentScorer(IScorer champion, IReadOnlyList<ShadowModel> shadows, DeploymentSpec spec, ILogger log) : IScorer
{
    public IScorer Champion { get; } = champion;
    public IReadOnlyList<ShadowModel> Shadows { get; } = shadows;
    public DeploymentSpec Spec { get; } = spec;
    public string ModelName => Champion.ModelName;
    public string ModelVersion => Champion.ModelVersion;
    public int OutputWidth => Champion.OutputWidth;

    public void Score(EventBatch batch)
    {
        // A champion failure goes to the pipeline's retry and dead-letter policy, before any shadow runs.
        foreach (var shadow in Shadows) shadow.Invalidate();
        Champion.Score(batch);
        foreach (var shadow in Shadows) shadow.Score(batch, log);
    }
}

public static partial class DeploymentLog
{
    [LoggerMessage(Level = LogLevel.Warning, Message = "Shadow model {Model} failed to score a batch of {Rows}: {Reason}; the champion's predictions are published as usual")]
    public static partial void ShadowFailed(ILogger logger, string model, int rows, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "Deployment v{Version} from {Path}: champion {Champion}; shadows {Shadows} → {ShadowTopic}")]
    public static partial void Loaded(ILogger logger, long version, string path, string champion, string shadows, string shadowTopic);
}
