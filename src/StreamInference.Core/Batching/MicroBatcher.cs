using System.Threading.Channels;

namespace StreamInference.Core.Batching;

/// <summary>
/// Collects items from a channel into batches that flush at <c>maxBatchSize</c> items or
/// <c>maxBatchDelay</c> after the first item of the batch arrived, whichever comes first.
/// </summary>
/// <remarks>
/// Under load the channel already holds enough items and a batch fills with no await at all; the
/// deadline timer is only created when the batcher actually has to wait for more items.
/// </remarks>
public sealed class MicroBatcher<T>
{
    private readonly ChannelReader<T> _reader;
    private readonly TimeProvider _time;

    public MicroBatcher(ChannelReader<T> reader, int maxBatchSize, TimeSpan maxBatchDelay, TimeProvider? timeProvider = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxBatchSize, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxBatchDelay, TimeSpan.Zero);
        _reader = reader;
        MaxBatchSize = maxBatchSize;
        MaxBatchDelay = maxBatchDelay;
        _time = timeProvider ?? TimeProvider.System;
    }

    public int MaxBatchSize { get; }
    public TimeSpan MaxBatchDelay { get; }

    /// <summary>
    /// Fills <paramref name="buffer"/> with the next batch. Returns the number of items, 0 when the
    /// channel is completed and drained. Waits without a deadline for the first item.
    /// </summary>
    public async ValueTask<int> FillAsync(T[] buffer, CancellationToken cancellationToken)
    {
        var max = Math.Min(MaxBatchSize, buffer.Length);
        var n = 0;
        while (n == 0)
        {
            if (!await _reader.WaitToReadAsync(cancellationToken).ConfigureAwait(false)) return 0;
            while (n < max && _reader.TryRead(out var item)) buffer[n++] = item;
        }
        if (n == max || MaxBatchDelay == TimeSpan.Zero) return n;

        var started = _time.GetTimestamp();
        CancellationTokenSource? deadline = null;
        CancellationTokenSource? linked = null;
        try
        {
            while (n < max)
            {
                var remaining = MaxBatchDelay - _time.GetElapsedTime(started);
                if (remaining <= TimeSpan.Zero) break;
                if (deadline is null)
                {
                    deadline = new CancellationTokenSource(remaining, _time);
                    linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, deadline.Token);
                }
                var wait = _reader.WaitToReadAsync(linked!.Token).AsTask();
                // Suppress the cancellation exception: a deadline is the normal way a batch ends.
                await ((Task)wait).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
                if (!wait.IsCompletedSuccessfully)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    break; // deadline
                }
                if (!wait.Result) break; // channel completed: flush what we have
                while (n < max && _reader.TryRead(out var item)) buffer[n++] = item;
            }
        }
        finally
        {
            linked?.Dispose();
            deadline?.Dispose();
        }
        return n;
    }
}
