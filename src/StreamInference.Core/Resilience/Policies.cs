using Polly;
using Polly.CircuitBreaker;
using Polly.Retry;
using Polly.Timeout;

namespace StreamInference.Core.Resilience;

/// <summary>
/// How one retry site backs off: the first delay, doubling (or growing linearly) up to <see cref="Max"/>,
/// for at most <see cref="MaxRetries"/> retries (unbounded by default: until the caller's token is cancelled).
/// </summary>
public sealed record Backoff(TimeSpan First, TimeSpan Max, int MaxRetries = int.MaxValue, bool Linear = false)
{
    /// <summary>The delay before retry number <paramref name="retry"/> (1-based), as the pipelines compute it.</summary>
    public TimeSpan DelayBefore(int retry)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(retry, 1);
        var ticks = Linear ? First.Ticks * (double)retry : First.Ticks * Math.Pow(2, Math.Min(retry - 1, 62));
        return TimeSpan.FromTicks((long)Math.Min(ticks, Max.Ticks));
    }
}

/// <summary>
/// Every retry, backoff and breaker of the processor in one place: the sites' defaults (this class) and
/// the pipelines built from them (<see cref="Policies"/>). A site that needs a setting from
/// configuration takes its default with <c>with { … }</c>.
/// </summary>
public static class Backoffs
{
    /// <summary>Redis (the enrich stage's fetch): 50 ms doubling to Pipeline MaxRetryBackoff.</summary>
    public static readonly Backoff FeatureStore = new(TimeSpan.FromMilliseconds(50), TimeSpan.FromSeconds(5));

    /// <summary>Schema registry unreachable while an unknown writer schema id waits (Wait policy).</summary>
    public static readonly Backoff RegistryWait = new(TimeSpan.FromMilliseconds(200), TimeSpan.FromSeconds(10));

    /// <summary>One registry HTTP request that got no answer or a 5xx: 100 ms doubling, 4 retries (5 attempts).</summary>
    public static readonly Backoff RegistryRequest = new(TimeSpan.FromMilliseconds(100), TimeSpan.FromSeconds(2), MaxRetries: 4);

    /// <summary>The Kafka producer's local queue is full: wait for acknowledgements, 1 ms doubling to 100 ms.</summary>
    public static readonly Backoff ProducerQueueFull = new(TimeSpan.FromMilliseconds(1), TimeSpan.FromMilliseconds(100));

    /// <summary>A transactional call failed with a retriable error: 100 ms more per attempt, at most 1 s, within the transaction timeout.</summary>
    public static readonly Backoff TransactionCall = new(TimeSpan.FromMilliseconds(100), TimeSpan.FromSeconds(1), Linear: true);

    /// <summary>The supervisor restarting the processor after a restartable failure: 1 s doubling to 30 s.</summary>
    public static readonly Backoff Restart = new(TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(30));

    /// <summary>The model failed to score a batch: once more at once, then the model-error policy decides.</summary>
    public static readonly Backoff ModelScore = new(TimeSpan.Zero, TimeSpan.Zero, MaxRetries: 1);
}

/// <summary>
/// Builds the Polly v8 pipelines every site uses. One clock (<see cref="TimeProvider"/>), one backoff
/// formula (<see cref="Backoff"/>), failures classified by type through the predicate each site passes.
/// Cancellation of the caller's token is never retried.
/// </summary>
public static class Policies
{
    /// <summary>Retries <paramref name="retryOn"/> failures with <paramref name="backoff"/>; anything else, or the last failure, is rethrown.</summary>
    public static ResiliencePipeline Retry(Backoff backoff, Func<Exception, bool> retryOn, TimeProvider? time = null,
        Action<Exception, int, TimeSpan>? onRetry = null) =>
        backoff.MaxRetries == 0
            ? ResiliencePipeline.Empty
            : new ResiliencePipelineBuilder { TimeProvider = time ?? TimeProvider.System }
                .AddRetry(RetryOptions(backoff, retryOn, onRetry))
                .Build();

    /// <summary>
    /// Like <see cref="Retry"/>, but with a result: a result <paramref name="retryResult"/> accepts is retried too,
    /// and the last one is returned when the retries are spent (the retried ones are disposed).
    /// </summary>
    public static ResiliencePipeline<T> Retry<T>(Backoff backoff, Func<Exception, bool> retryOn, Func<T, bool> retryResult,
        TimeProvider? time = null, Action<Exception?, int, TimeSpan>? onRetry = null)
    {
        if (backoff.MaxRetries == 0) return ResiliencePipeline<T>.Empty;
        return new ResiliencePipelineBuilder<T> { TimeProvider = time ?? TimeProvider.System }
            .AddRetry(Shaped(new RetryStrategyOptions<T>(), backoff, retryOn, retryResult, onRetry))
            .Build();
    }

    /// <summary>
    /// A dependency the caller can do without for a while (a degraded answer instead of waiting): retries
    /// inside a <paramref name="budget"/> per call; when calls keep failing (at least two, and at least half
    /// of those within <paramref name="budget"/> + <paramref name="probeInterval"/>) the breaker opens and
    /// calls fail at once with <see cref="BrokenCircuitException"/> until <paramref name="probeInterval"/>
    /// has passed, then one probe call decides. A spent budget fails with <see cref="TimeoutRejectedException"/>;
    /// <see cref="IsDegraded"/> recognises both. A null budget leaves the timeout out (the callee bounds its own
    /// calls); then <paramref name="window"/> must cover two failing calls (a call's bound twice), or failures
    /// spaced wider than the window would never open the breaker.
    /// </summary>
    public static ResiliencePipeline RetryThenBreak(TimeSpan? budget, TimeSpan probeInterval, Backoff backoff, Func<Exception, bool> retryOn,
        TimeProvider? time = null, Action<Exception, int, TimeSpan>? onRetry = null, TimeSpan? window = null)
    {
        var builder = new ResiliencePipelineBuilder { TimeProvider = time ?? TimeProvider.System };
        builder.AddCircuitBreaker(new CircuitBreakerStrategyOptions
        {
            FailureRatio = 0.5,
            MinimumThroughput = 2,
            SamplingDuration = Clamp((window ?? budget ?? TimeSpan.Zero) + probeInterval),
            BreakDuration = Clamp(probeInterval),
            ShouldHandle = args => ValueTask.FromResult(args.Outcome.Exception is { } e
                && (e is TimeoutRejectedException || (e is not OperationCanceledException && retryOn(e)))),
        });
        if (budget is { } b) builder.AddTimeout(b < MinimumTimeout ? MinimumTimeout : b);
        if (backoff.MaxRetries > 0) builder.AddRetry(RetryOptions(backoff, retryOn, onRetry));
        return builder.Build();
    }

    /// <summary>The call was not answered because a <see cref="RetryThenBreak"/> pipeline gave up (budget spent, or breaker open).</summary>
    public static bool IsDegraded(Exception e) => e is TimeoutRejectedException or BrokenCircuitException;

    /// <summary>Polly's bounds: a breaker's durations are at least 0.5 s, a timeout at least 10 ms.</summary>
    public static readonly TimeSpan MinimumBreakDuration = TimeSpan.FromMilliseconds(500);
    public static readonly TimeSpan MinimumTimeout = TimeSpan.FromMilliseconds(10);

    private static TimeSpan Clamp(TimeSpan t) => t < MinimumBreakDuration ? MinimumBreakDuration : t;

    private static RetryStrategyOptions RetryOptions(Backoff backoff, Func<Exception, bool> retryOn, Action<Exception, int, TimeSpan>? onRetry) =>
        (RetryStrategyOptions)Shaped(new RetryStrategyOptions(), backoff, retryOn, static _ => false, onRetry is null ? null : (e, attempt, delay) => onRetry(e!, attempt, delay));

    /// <summary>The backoff, the predicate (never the caller's cancellation) and the retry callback (1-based attempt) on <paramref name="options"/>.</summary>
    private static RetryStrategyOptions<T> Shaped<T>(RetryStrategyOptions<T> options, Backoff backoff, Func<Exception, bool> retryOn, Func<T, bool> retryResult,
        Action<Exception?, int, TimeSpan>? onRetry)
    {
        options.ShouldHandle = args => ValueTask.FromResult(args.Outcome.Exception is { } e
            ? e is not OperationCanceledException && retryOn(e)
            : retryResult(args.Outcome.Result!));
        if (onRetry is not null)
        {
            options.OnRetry = args =>
            {
                onRetry(args.Outcome.Exception, args.AttemptNumber + 1, args.RetryDelay);
                return default;
            };
        }
        options.MaxRetryAttempts = backoff.MaxRetries;
        options.Delay = backoff.First;
        options.MaxDelay = backoff.Max;
        options.BackoffType = backoff.Linear ? DelayBackoffType.Linear : DelayBackoffType.Exponential;
        options.UseJitter = false;
        return options;
    }
}
