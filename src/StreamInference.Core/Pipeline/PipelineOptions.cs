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
}
