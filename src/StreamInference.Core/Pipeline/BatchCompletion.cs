namespace StreamInference.Core.Pipeline;

/// <summary>
/// When a batch is done: it counts the acknowledgements the batch waits for — today the producer's
/// delivery report of each message; another condition (say, the acknowledgement of its feature-state
/// write) is one more <see cref="Expect"/> and <see cref="Acknowledge"/> in the stage that owns it. When the
/// count reaches zero the pipeline completes the batch's records in their partitions' watermarks, which is
/// all the commit strategy reads.
/// </summary>
/// <remarks>
/// The pipeline holds one count from <see cref="Begin"/> until <see cref="Release"/> (after publishing), so a
/// fast acknowledgement cannot complete the batch while stages are still adding expectations.
/// Thread-safety: acknowledgements arrive on the producer's delivery thread; counts are interlocked.
/// </remarks>
public sealed class BatchCompletion
{
    private int _pending;
    private int _failures;
    private string? _firstError;

    internal BatchCompletion(Action completed) => Completed = completed;

    private Action Completed { get; }

    /// <summary>Some acknowledgement reported a failure: the batch's offsets must not complete.</summary>
    public bool Failed => Volatile.Read(ref _failures) > 0;

    /// <summary>The first failure's description.</summary>
    public string? Error => _firstError;

    /// <summary>The pipeline arms the batch (holding one count) when it starts to fill it.</summary>
    internal void Begin()
    {
        _failures = 0;
        _firstError = null;
        Volatile.Write(ref _pending, 1);
    }

    /// <summary>A stage will report <paramref name="acknowledgements"/> more acknowledgements (e.g. the sink, one per message produced).</summary>
    public void Expect(int acknowledgements)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(acknowledgements);
        Interlocked.Add(ref _pending, acknowledgements);
    }

    /// <summary>One expected acknowledgement arrived (any thread).</summary>
    public void Acknowledge(bool success, string? error = null)
    {
        if (!success && Interlocked.Increment(ref _failures) == 1) _firstError = error;
        Release();
    }

    /// <summary>The pipeline's own count, released after the batch was handed to the sink.</summary>
    internal void Release()
    {
        if (Interlocked.Decrement(ref _pending) == 0) Completed();
    }
}
