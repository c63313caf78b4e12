using Polly;
using Polly.Retry;
using StreamInference.Core.Pipeline;
using StreamInference.Core.Resilience;

namespace StreamInference.Core.Supervision;

/// <summary>
/// Which failures end the processor and which restart it from the committed offsets.
/// </summary>
/// <param name="IsTransient">Infrastructure that may come back (a broker, the registry or Redis not answering); supplied by the adapters, which know the exception types.</param>
public sealed record RestartPolicy(Func<Exception, bool> IsTransient)
{
    /// <summary>
    /// A restartable pipeline failure (an aborted transaction, deliveries that failed after an outage outlasted
    /// the producer's timeouts) always restarts. A transient failure restarts only once the processor has run:
    /// a first start fails fast (bad configuration, unreachable services), while an outage that outlasts a
    /// restart is waited out. Anything else (a model that does not load, a fenced producer) ends the processor.
    /// </summary>
    public bool ShouldRestart(Exception failure, bool hasRun) =>
        failure is PipelineFatalException { Restartable: true } || (hasRun && IsTransient(failure));
}

/// <summary>How the failures of one run's two halves (the consume loop and the pipeline) and its commit strategy combine into the one that ends it.</summary>
public static class FailurePrecedence
{
    /// <summary>
    /// Nothing failed: null. A permanent commit failure (e.g. fenced by a newer instance) wins whenever the
    /// run failed: restarting would fail the same way. Otherwise, when both halves failed, the restartable
    /// cause wins (the other is usually its consequence), then the consume loop's failure, then the pipeline's.
    /// </summary>
    public static Exception? Choose(Exception? consume, Exception? pipeline, PipelineFatalException? commit)
    {
        if (consume is null && pipeline is null) return null;
        if (commit is { Restartable: false }) return commit;
        if (consume is PipelineFatalException { Restartable: true }) return consume;
        if (pipeline is PipelineFatalException { Restartable: true }) return pipeline;
        return consume ?? pipeline;
    }
}

/// <summary>
/// Runs the processor and restarts it after a failure its <see cref="RestartPolicy"/> accepts, with the
/// <see cref="Backoffs.Restart"/> backoff (restarted from the first step once a run lasted
/// <see cref="HealthyAfter"/>). Cancelling the token ends it without a failure.
/// </summary>
public sealed class Supervisor(RestartPolicy policy, TimeProvider? time = null)
{
    private readonly TimeProvider _time = time ?? TimeProvider.System;

    /// <summary>A run that lasted this long counts as healthy: the next failure waits the first backoff again.</summary>
    public TimeSpan HealthyAfter { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>Called before each restart with the failure and the wait.</summary>
    public Action<Exception, TimeSpan>? Restarting { get; init; }

    /// <param name="run">One run of the processor; returns when it was stopped.</param>
    /// <param name="hasRun">Whether the processor has become ready at least once.</param>
    public async Task RunAsync(Func<CancellationToken, Task> run, Func<bool> hasRun, CancellationToken stop)
    {
        var restarted = false;
        var started = _time.GetTimestamp();
        var retry = 0;
        var pipeline = new ResiliencePipelineBuilder { TimeProvider = _time }
            .AddRetry(new RetryStrategyOptions
            {
                MaxRetryAttempts = int.MaxValue,
                ShouldHandle = args => ValueTask.FromResult(args.Outcome.Exception is { } e && !stop.IsCancellationRequested
                                                                                     && policy.ShouldRestart(e, restarted || hasRun())),
                DelayGenerator = _ =>
                {
                    retry = _time.GetElapsedTime(started) >= HealthyAfter ? 1 : retry + 1;
                    return ValueTask.FromResult<TimeSpan?>(Backoffs.Restart.DelayBefore(retry));
                },
                OnRetry = args =>
                {
                    restarted = true;
                    Restarting?.Invoke(args.Outcome.Exception!, args.RetryDelay);
                    return default;
                },
            })
            .Build();
        await pipeline.ExecuteAsync(async ct =>
        {
            started = _time.GetTimestamp();
            await run(ct).ConfigureAwait(false);
        }, stop).ConfigureAwait(false);
    }
}
