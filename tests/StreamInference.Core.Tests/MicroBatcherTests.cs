using System.Threading.Channels;
using Microsoft.Extensions.Time.Testing;
using StreamInference.Core.Batching;

namespace StreamInference.Core.Tests;

public class MicroBatcherTests
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(10);

    [Fact]
    public async Task Batcher_FlushesAtMaxSize_WithoutWaitingForDeadline()
    {
        var channel = Channel.CreateUnbounded<int>();
        for (var i = 0; i < 10; i++) channel.Writer.TryWrite(i);
        var time = new FakeTimeProvider();
        var batcher = new MicroBatcher<int>(channel.Reader, 4, TimeSpan.FromMilliseconds(5), time);
        var buffer = new int[4];

        var n = await batcher.FillAsync(buffer, CancellationToken.None).AsTask().WaitAsync(Wait);

        Assert.Equal(4, n);
        Assert.Equal([0, 1, 2, 3], buffer);
    }

    /// <summary>
    /// Advances fake time in 1 ms steps (yielding real time between steps so the batcher's continuation
    /// can run) until the fill completes; returns the fake time that passed.
    /// </summary>
    private static async Task<TimeSpan> AdvanceUntilDone(Task<int> fill, FakeTimeProvider time)
    {
        var start = time.GetUtcNow();
        for (var i = 0; i < 2000 && !fill.IsCompleted; i++)
        {
            await Task.Delay(5);
            if (!fill.IsCompleted) time.Advance(TimeSpan.FromMilliseconds(1));
        }
        await fill.WaitAsync(Wait);
        return time.GetUtcNow() - start;
    }

    [Fact]
    public async Task Batcher_FlushesAtDeadline_WhenBatchNotFull()
    {
        var channel = Channel.CreateUnbounded<int>();
        var time = new FakeTimeProvider();
        var batcher = new MicroBatcher<int>(channel.Reader, 100, TimeSpan.FromMilliseconds(5), time);
        var buffer = new int[100];
        channel.Writer.TryWrite(1);
        channel.Writer.TryWrite(2);

        var fill = batcher.FillAsync(buffer, CancellationToken.None).AsTask();
        await Task.Delay(50);
        Assert.False(fill.IsCompleted);   // not full, and no fake time has passed
        channel.Writer.TryWrite(3);       // arrives before the deadline: joins the batch

        var waited = await AdvanceUntilDone(fill, time);

        Assert.True(waited >= TimeSpan.FromMilliseconds(5), $"flushed after {waited.TotalMilliseconds} ms of fake time, before the 5 ms deadline");
        Assert.Equal(3, await fill);
        Assert.Equal([1, 2, 3], buffer[..3]);
    }

    [Fact]
    public async Task Batcher_DeadlineStartsAtFirstItem_NotAtCallTime()
    {
        var channel = Channel.CreateUnbounded<int>();
        var time = new FakeTimeProvider();
        var batcher = new MicroBatcher<int>(channel.Reader, 100, TimeSpan.FromMilliseconds(5), time);
        var fill = batcher.FillAsync(new int[100], CancellationToken.None).AsTask();

        time.Advance(TimeSpan.FromSeconds(1));  // idle time before the first item does not count
        await Task.Delay(50);
        Assert.False(fill.IsCompleted);

        channel.Writer.TryWrite(7);
        var waited = await AdvanceUntilDone(fill, time);

        Assert.True(waited >= TimeSpan.FromMilliseconds(5));
        Assert.Equal(1, await fill);
    }

    [Fact]
    public async Task Batcher_FlushesPartialBatch_WhenChannelCompletes_ThenReturnsZero()
    {
        var channel = Channel.CreateUnbounded<int>();
        var batcher = new MicroBatcher<int>(channel.Reader, 10, TimeSpan.FromSeconds(30), new FakeTimeProvider());
        channel.Writer.TryWrite(1);
        channel.Writer.TryWrite(2);
        channel.Writer.Complete();
        var buffer = new int[10];

        Assert.Equal(2, await batcher.FillAsync(buffer, CancellationToken.None).AsTask().WaitAsync(Wait));
        Assert.Equal(0, await batcher.FillAsync(buffer, CancellationToken.None).AsTask().WaitAsync(Wait));
    }

    [Fact]
    public async Task Batcher_Cancellation_Throws()
    {
        var channel = Channel.CreateUnbounded<int>();
        var batcher = new MicroBatcher<int>(channel.Reader, 10, TimeSpan.FromSeconds(30), new FakeTimeProvider());
        channel.Writer.TryWrite(1);
        using var cts = new CancellationTokenSource();
        var fill = batcher.FillAsync(new int[10], cts.Token).AsTask();
        await Task.Delay(20);
        cts.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => fill.WaitAsync(Wait));
    }
}
