namespace StreamInference.Core.Pipeline;

public sealed class PipelineOptions
{
    /// <summary>A batch is flushed when it holds this many records.</summary>
    public int MaxBatchSize { get; set; } = 256;
    /// <summary>...or this long after its first record arrived, whichever comes first.</summary>
    public TimeSpan MaxBatchDelay { get; set; } = TimeSpan.FromMilliseconds(5);
    /// <summary>Capacity of the consume → batch channel; when full the consumer pauses its partitions.</summary>
    public int InputQueueCapacity { get; set; } = 4096;
    /// <summary>
    /// Batches that may exist at once between the batcher and the producer's acknowledgement. Bounds
    /// memory and the duplicate window after a crash (≈ MaxInFlightBatches × MaxBatchSize records).
    /// </summary>
    public int MaxInFlightBatches { get; set; } = 8;
    /// <summary>Longest backoff between retries of a retriable stage failure (e.g. Redis down).</summary>
    public TimeSpan MaxRetryBackoff { get; set; } = TimeSpan.FromSeconds(5);
    /// <summary>
    /// Feature store unavailable. Null (the Wait policy): retry with backoff; the input queue fills and
    /// consumption pauses until the store is back. Set (the Defaults policy): after this long, score the
    /// batch with every store-backed feature at its default and mark the records degraded; later batches
    /// skip the store until <see cref="FeatureStoreProbeInterval"/> has passed, then probe it again.
    /// </summary>
    public TimeSpan? FeatureStoreFallbackAfter { get; set; }
    /// <summary>
    /// A batch the model fails to score twice: true dead-letters its records (reason model-error) and
    /// goes on; false stops the processor.
    /// </summary>
    public bool DeadLetterOnModelError { get; set; } = true;
    /// <summary>Defaults policy: how long batches skip an unavailable store before the next probe.</summary>
    public TimeSpan FeatureStoreProbeInterval { get; set; } = TimeSpan.FromSeconds(1);
    /// <summary>
    /// Wait for a batch's feature-state write before publishing it, instead of in the persist stage beside the
    /// publish: for a commit strategy that commits the watermarks standing when it commits its outputs (a Kafka
    /// transaction), where a batch published before its state write completes would have its outputs committed
    /// without its offsets.
    /// </summary>
    public bool PersistBeforePublish { get; set; }
}
