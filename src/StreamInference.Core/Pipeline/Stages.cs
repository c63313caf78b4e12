namespace StreamInference.Core.Pipeline;

// Stage contracts. Each works on a whole batch so the per-event loop stays inside one method
// (no interface call per event). Implementations live in StreamInference.Infrastructure.

/// <summary>Decodes <c>batch.Records[0..Count)</c> into the batch's slots; marks undecodable rows as dead letters.</summary>
public interface IEventDecoder
{
    ValueTask DecodeAsync(EventBatch batch, CancellationToken cancellationToken);
}

/// <summary>
/// Fills the clean rows' window and lookup values (NaN for missing or stale) in one round trip, and applies the
/// batch's events to the stored state. A store may let the batch go on before that state write is acknowledged
/// (write-behind): the pipeline then calls <see cref="PersistAsync"/> for every batch, in the order fetched, and
/// completes the batch's offsets only after it returned.
/// </summary>
public interface IFeatureStore
{
    /// <summary>Retried as a whole for the same batch after a failure.</summary>
    ValueTask FetchAsync(EventBatch batch, CancellationToken cancellationToken);

    /// <summary>Returns when the batch's state write is acknowledged. Retried after a failure.</summary>
    ValueTask PersistAsync(EventBatch batch, CancellationToken cancellationToken) => ValueTask.CompletedTask;

    /// <summary>The state write could not be acknowledged in time (Defaults policy): give it up.</summary>
    void Abandon(EventBatch batch) { }
}

/// <summary>The model version that scored a batch; a hot swap changes it between batches.</summary>
public sealed class ModelIdentity(string name, string version, int primaryScoreIndex)
{
    public string Name => name;
    public string Version => version;
    public int PrimaryScoreIndex => primaryScoreIndex;
    public byte[] NameUtf8 { get; } = System.Text.Encoding.UTF8.GetBytes(name);
    public byte[] VersionUtf8 { get; } = System.Text.Encoding.UTF8.GetBytes(version);
    /// <summary>Where the model was loaded from (its version directory), when it came from a repository.</summary>
    public string? Directory { get; init; }
    public override string ToString() => $"{name}@{version}";
}

/// <summary>Scores the clean rows' feature vectors.</summary>
public interface IScorer
{
    string ModelName { get; }
    string ModelVersion { get; }
    /// <summary>Number of score values per row.</summary>
    int OutputWidth { get; }
    void Score(EventBatch batch);
}

/// <summary>
/// Publishes predictions for clean rows and dead letters for the others: <see cref="BatchCompletion.Expect"/>
/// the messages it produces, and report each delivery through <see cref="BatchCompletion.Acknowledge"/>.
/// </summary>
public interface IPredictionSink
{
    void Publish(EventBatch batch);
}

/// <summary>Per-batch notifications for metrics and live views. Called on the stage threads; keep them cheap.</summary>
public interface IPipelineObserver
{
    void OnBatchAssembled(EventBatch batch, TimeSpan decode, TimeSpan enrich);
    void OnBatchScored(EventBatch batch, TimeSpan score);
    void OnBatchPublished(EventBatch batch, TimeSpan publish);
    /// <summary>Called when every acknowledgement of the batch arrived (its messages and its state write): on the producer's delivery thread or the persist stage's.</summary>
    void OnBatchDelivered(EventBatch batch, long nowMs);
    void OnRetry(string stage, Exception error);
}

public sealed class NullPipelineObserver : IPipelineObserver
{
    public static readonly NullPipelineObserver Instance = new();
    public void OnBatchAssembled(EventBatch batch, TimeSpan decode, TimeSpan enrich) { }
    public void OnBatchScored(EventBatch batch, TimeSpan score) { }
    public void OnBatchPublished(EventBatch batch, TimeSpan publish) { }
    public void OnBatchDelivered(EventBatch batch, long nowMs) { }
    public void OnRetry(string stage, Exception error) { }
}

/// <summary>Calls two observers in order.</summary>
public sealed class CompositeObserver(IPipelineObserver first, IPipelineObserver second) : IPipelineObserver
{
    public void OnBatchAssembled(EventBatch batch, TimeSpan decode, TimeSpan enrich) { first.OnBatchAssembled(batch, decode, enrich); second.OnBatchAssembled(batch, decode, enrich); }
    public void OnBatchScored(EventBatch batch, TimeSpan score) { first.OnBatchScored(batch, score); second.OnBatchScored(batch, score); }
    public void OnBatchPublished(EventBatch batch, TimeSpan publish) { first.OnBatchPublished(batch, publish); second.OnBatchPublished(batch, publish); }
    public void OnBatchDelivered(EventBatch batch, long nowMs) { first.OnBatchDelivered(batch, nowMs); second.OnBatchDelivered(batch, nowMs); }
    public void OnRetry(string stage, Exception error) { first.OnRetry(stage, error); second.OnRetry(stage, error); }
}

/// <summary>A failure the pipeline cannot recover from by itself (stop the host, restart re-delivers).</summary>
public sealed class PipelineFatalException : Exception
{
    public PipelineFatalException(string message, Exception? inner = null, bool restartable = false) : base(message, inner) => Restartable = restartable;
    public PipelineFatalException(string message, bool restartable) : base(message) => Restartable = restartable;

    /// <summary>
    /// The processor can recover by starting over from the committed offsets (an aborted transaction, a
    /// failed delivery after an outage); false when a restart would fail the same way (bad model, fenced).
    /// </summary>
    public bool Restartable { get; }
}
