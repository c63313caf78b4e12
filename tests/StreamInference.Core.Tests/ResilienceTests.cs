using Microsoft.Extensions.Time.Testing;
using Polly.CircuitBreaker;
using StreamInference.Core.Resilience;

namespace StreamInference.Core.Tests;

/// <summary>The one resilience mechanism (Polly v8 pipelines from <see cref="Policies"/>) on a fake clock.</summary>
public sealed class ResilienceTests
{
    [Fact]
    public void Backoff_DoublesFromTheFirstDelay_UpToTheMaximum()
    {
        var b = new Backoff(TimeSpan.FromMilliseconds(50), TimeSpan.FromMilliseconds(300));
        Assert.Equal([50, 100, 200, 300, 300], Enumerable.Range(1, 5).Select(r => b.DelayBefore(r).TotalMilliseconds));
        var linear = Backoffs.TransactionCall;
        Assert.Equal([100, 200, 1000], new[] { 1, 2, 12 }.Select(r => linear.DelayBefore(r).TotalMilliseconds));
    }

    [Fact]
    public async Task Retry_WaitsTheBackoffBetweenAttempts_OnTheGivenClock_UntilItSucceeds()
    {
        var time = new FakeTimeProvider();
        var delays = new List<TimeSpan>();
        var backoff = new Backoff(TimeSpan.FromMilliseconds(50), TimeSpan.FromMilliseconds(150));
        var pipeline = Policies.Retry(backoff, e => e is TimeoutException, time, (_, _, d) => delays.Add(d));
        var attempts = 0;
        var run = pipeline.ExecuteAsync(_ => ++attempts < 5 ? throw new TimeoutException() : ValueTask.CompletedTask).AsTask();
        await AdvanceUntilDone(time, run);
        Assert.Equal(5, attempts);
        Assert.Equal([50, 100, 150, 150], delays.Select(d => d.TotalMilliseconds));
        // Nothing waited on the real clock: the fake clock moved exactly by the delays (in 10 ms steps).
        Assert.InRange(time.GetUtcNow() - time.Start, TimeSpan.FromMilliseconds(450), TimeSpan.FromMilliseconds(460));
    }

    [Fact]
    public void Retry_DoesNotRetryWhatItDoesNotClassifyAsRetriable()
    {
        var attempts = 0;
        var pipeline = Policies.Retry(Backoffs.ProducerQueueFull, e => e is TimeoutException);
        Assert.Throws<InvalidOperationException>(() => pipeline.Execute(() => { attempts++; throw new InvalidOperationException(); }));
        Assert.Equal(1, attempts);
    }

    [Fact]
    public void Retry_WithAMaximum_RethrowsTheLastFailure()
    {
        var attempts = 0;
        var pipeline = Policies.Retry(Backoffs.ModelScore, _ => true);
        var e = Assert.Throws<InvalidOperationException>(() => pipeline.Execute(() => throw new InvalidOperationException("attempt " + ++attempts)));
        Assert.Equal("attempt 2", e.Message);
    }

    [Fact]
    public async Task Retry_NeverRetriesTheCallersCancellation()
    {
        var attempts = 0;
        using var cts = new CancellationTokenSource();
        var pipeline = Policies.Retry(Backoffs.FeatureStore, _ => true);
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => pipeline.ExecuteAsync(ct =>
        {
            attempts++;
            cts.Cancel();
            ct.ThrowIfCancellationRequested();
            return ValueTask.CompletedTask;
        }, cts.Token).AsTask());
        Assert.Equal(1, attempts);
    }

    [Fact]
    public async Task RetryThenBreak_GivesUpWhenTheBudgetIsSpent_AsDegraded()
    {
        var time = new FakeTimeProvider();
        var pipeline = Policies.RetryThenBreak(TimeSpan.FromMilliseconds(200), TimeSpan.FromSeconds(5), Backoffs.FeatureStore, _ => true, time);
        // A dependency that never answers (it waits until the budget cancels it).
        var run = pipeline.ExecuteAsync(async ct => await Task.Delay(Timeout.Infinite, ct)).AsTask();
        await AdvanceUntilDone(time, run);
        var e = await Assert.ThrowsAnyAsync<Exception>(() => run);
        Assert.True(Policies.IsDegraded(e), e.GetType().Name);
    }

    [Fact]
    public async Task RetryThenBreak_OpensAfterTwoFailures_SkipsTheCallee_AndProbesAfterTheInterval()
    {
        var time = new FakeTimeProvider();
        var probe = TimeSpan.FromSeconds(5);
        var pipeline = Policies.RetryThenBreak(null, probe, Backoffs.FeatureStore with { MaxRetries = 0 }, e => e is TimeoutException, time);
        var calls = 0;
        var down = true;
        ValueTask Call(CancellationToken _)
        {
            calls++;
            return down ? throw new TimeoutException("down") : ValueTask.CompletedTask;
        }

        await Assert.ThrowsAsync<TimeoutException>(() => pipeline.ExecuteAsync(Call).AsTask());
        await Assert.ThrowsAsync<TimeoutException>(() => pipeline.ExecuteAsync(Call).AsTask());
        var open = await Assert.ThrowsAsync<BrokenCircuitException>(() => pipeline.ExecuteAsync(Call).AsTask());
        Assert.True(Policies.IsDegraded(open));
        Assert.Equal(2, calls);                 // the open breaker did not call the store

        time.Advance(probe);
        down = false;
        await pipeline.ExecuteAsync(Call);      // the probe goes through and closes the breaker
        await pipeline.ExecuteAsync(Call);
        Assert.Equal(4, calls);
    }

    [Fact]
    public async Task RetryThenBreak_StaysClosed_WhenFailuresAreRareAmongSuccesses()
    {
        var time = new FakeTimeProvider();
        var pipeline = Policies.RetryThenBreak(null, TimeSpan.FromSeconds(5), Backoffs.FeatureStore with { MaxRetries = 0 }, _ => true, time);
        var calls = 0;
        for (var i = 0; i < 20; i++)
        {
            var fail = i % 5 == 4;
            try
            {
                await pipeline.ExecuteAsync(_ => { calls++; return fail ? throw new TimeoutException() : ValueTask.CompletedTask; });
            }
            catch (TimeoutException)
            {
            }
        }
        Assert.Equal(20, calls);    // 4 failures in 20 calls never opened it
    }

    /// <summary>Moves the fake clock in 10 ms steps until <paramref name="task"/> ends (each step lets its continuations run).</summary>
    internal static async Task AdvanceUntilDone(FakeTimeProvider time, Task task, TimeSpan? step = null)
    {
        for (var i = 0; i < 1_000_000 && !task.IsCompleted; i++)
        {
            await Task.Delay(1);
            if (!task.IsCompleted) time.Advance(step ?? TimeSpan.FromMilliseconds(10));
        }
        try
        {
            await task;
        }
        catch
        {
            // The caller asserts on the outcome.
        }
    }
}
