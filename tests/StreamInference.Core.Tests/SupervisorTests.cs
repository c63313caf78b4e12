using Microsoft.Extensions.Time.Testing;
using StreamInference.Core.Pipeline;
using StreamInference.Core.Supervision;

namespace StreamInference.Core.Tests;

/// <summary>The supervisor's restart policy, backoff and failure precedence, on a fake clock.</summary>
public sealed class SupervisorTests
{
    private static readonly RestartPolicy Policy = new(e => e is TimeoutException);

    [Fact]
    public async Task RestartableFailures_RestartWithDoublingWaits_UntilTheRunEnds()
    {
        var (runs, waits) = await SuperviseAsync((run, _) => run <= 3 ? throw new PipelineFatalException("aborted", restartable: true) : Task.CompletedTask);
        Assert.Equal(4, runs);
        Assert.Equal([1, 2, 4], waits.Select(w => w.TotalSeconds));
    }

    [Fact]
    public async Task ARunThatLastedLongEnough_StartsTheBackoffOver()
    {
        var (_, waits) = await SuperviseAsync((run, time) =>
        {
            if (run == 3) time.Advance(TimeSpan.FromSeconds(61));   // the third run was healthy for a while
            return run <= 4 ? throw new PipelineFatalException("aborted", restartable: true) : Task.CompletedTask;
        });
        Assert.Equal([1, 2, 1, 2], waits.Select(w => w.TotalSeconds));
    }

    /// <summary>Supervises <paramref name="run"/> (given its 1-based number and the fake clock) until it ends; the runs and the waits between them.</summary>
    private static async Task<(int Runs, List<TimeSpan> Waits)> SuperviseAsync(Func<int, FakeTimeProvider, Task> run)
    {
        var time = new FakeTimeProvider();
        var waits = new List<TimeSpan>();
        var supervisor = new Supervisor(Policy, time) { Restarting = (_, w) => waits.Add(w) };
        var runs = 0;
        var task = supervisor.RunAsync(_ => run(++runs, time), () => true, CancellationToken.None);
        await ResilienceTests.AdvanceUntilDone(time, task, TimeSpan.FromMilliseconds(250));
        await task;
        return (runs, waits);
    }

    [Fact]
    public async Task APermanentFailure_EndsTheSupervisor_WithoutARestart()
    {
        var runs = 0;
        var supervisor = new Supervisor(Policy, new FakeTimeProvider());
        var e = await Assert.ThrowsAsync<PipelineFatalException>(() => supervisor.RunAsync(
            _ => { runs++; throw new PipelineFatalException("fenced", restartable: false); }, () => true, CancellationToken.None));
        Assert.Equal("fenced", e.Message);
        Assert.Equal(1, runs);
    }

    [Fact]
    public async Task ATransientFailure_FailsAFirstStart_ButRestartsAProcessorThatHasRun()
    {
        var supervisor = new Supervisor(Policy, new FakeTimeProvider());
        await Assert.ThrowsAsync<TimeoutException>(() => supervisor.RunAsync(_ => throw new TimeoutException(), () => false, CancellationToken.None));

        Assert.True(Policy.ShouldRestart(new TimeoutException(), hasRun: true));
        Assert.False(Policy.ShouldRestart(new TimeoutException(), hasRun: false));
        Assert.False(Policy.ShouldRestart(new InvalidDataException("bad model"), hasRun: true));
        Assert.True(Policy.ShouldRestart(new PipelineFatalException("aborted", restartable: true), hasRun: false));
    }

    [Fact]
    public async Task Cancellation_WhileWaitingToRestart_EndsTheSupervisor()
    {
        var time = new FakeTimeProvider();
        using var stop = new CancellationTokenSource();
        var supervisor = new Supervisor(Policy, time) { Restarting = (_, _) => stop.Cancel() };
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => supervisor.RunAsync(
            _ => throw new PipelineFatalException("aborted", restartable: true), () => true, stop.Token));
    }

    [Fact]
    public void FailurePrecedence_FencedWins_ThenTheRestartableCause_ThenTheConsumeSide()
    {
        var fenced = new PipelineFatalException("fenced", restartable: false);
        var aborted = new PipelineFatalException("aborted", restartable: true);
        var kafka = new InvalidOperationException("consumer closed");
        var model = new PipelineFatalException("model failed", restartable: false);

        Assert.Null(FailurePrecedence.Choose(null, null, fenced));                 // nothing failed: a stale commit failure alone ends nothing
        Assert.Same(fenced, FailurePrecedence.Choose(kafka, aborted, fenced));
        Assert.Same(aborted, FailurePrecedence.Choose(kafka, aborted, null));
        Assert.Same(aborted, FailurePrecedence.Choose(aborted, model, aborted));   // a restartable commit failure does not override
        Assert.Same(kafka, FailurePrecedence.Choose(kafka, model, null));
        Assert.Same(model, FailurePrecedence.Choose(null, model, null));
    }
}
