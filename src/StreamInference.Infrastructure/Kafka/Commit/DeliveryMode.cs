using Confluent.Kafka;
using Microsoft.Extensions.Logging;
using StreamInference.Infrastructure.Processing;

namespace StreamInference.Infrastructure.Kafka.Commit;

/// <summary>
/// The one place where Kafka:Delivery is decided: the commit strategy and the producers it needs. The
/// output producer carries predictions and dead letters (transactional in exactly-once mode); the
/// telemetry producer carries drift reports, which are never inside a transaction (they must not hold
/// one open). Everything else receives the strategy and never asks which mode runs.
/// </summary>
public sealed class DeliveryMode : IDisposable
{
    private readonly IProducer<byte[], byte[]>? _ownTelemetry;

    private DeliveryMode(ICommitStrategy commit, IProducer<byte[], byte[]> output, IProducer<byte[], byte[]>? ownTelemetry)
    {
        Commit = commit;
        Output = output;
        _ownTelemetry = ownTelemetry;
    }

    public ICommitStrategy Commit { get; }
    public IProducer<byte[], byte[]> Output { get; }
    public IProducer<byte[], byte[]> Telemetry => _ownTelemetry ?? Output;

    /// <param name="wedged">Exactly-once: a transactional call hangs past every timeout (see <see cref="TransactionalCommit.Wedged"/>).</param>
    /// <param name="decorate">Wraps the strategy (dev services: see the embedded cluster's offset mirror).</param>
    public static DeliveryMode Create(KafkaOptions k, ILoggerFactory loggers, Action<string> wedged, Func<ICommitStrategy, ICommitStrategy>? decorate = null)
    {
        var log = loggers.CreateLogger<DeliveryMode>();
        var built = new List<IDisposable>();
        try
        {
            var config = KafkaConfigs.Producer(k);
            if (k.Delivery == DeliveryGuarantee.AtLeastOnce)
            {
                var producer = Own(built, Build(config, log));
                var commit = Own(built, new AtLeastOnceCommit(producer, loggers.CreateLogger<AtLeastOnceCommit>()));
                return new DeliveryMode(Decorate(commit, decorate), producer, null);
            }
            // Drift reports never go into a transaction, whatever Kafka:Producer says.
            var telemetryConfig = KafkaConfigs.Producer(k);
            telemetryConfig.TransactionalId = null;
            var telemetry = Own(built, Build(telemetryConfig, log));
            config.TransactionalId = k.EffectiveTransactionalId;
            config.TransactionTimeoutMs ??= Math.Max(60_000, k.TransactionTimeoutMs * 2);
            var output = Own(built, Build(config, log));
            var transactional = Own(built, new TransactionalCommit(output, loggers.CreateLogger<TransactionalCommit>(),
                TimeSpan.FromMilliseconds(k.TransactionCommitIntervalMs), TimeSpan.FromMilliseconds(k.TransactionTimeoutMs),
                TimeSpan.FromMilliseconds(k.Producer.SocketTimeoutMs ?? 60_000)) { Wedged = wedged });
            RuntimeLog.ExactlyOnce(log, k.EffectiveTransactionalId, k.TransactionCommitIntervalMs);
            return new DeliveryMode(Decorate(transactional, decorate), output, telemetry);
        }
        catch
        {
            // In reverse: a strategy before its producer.
            for (var i = built.Count - 1; i >= 0; i--) built[i].Dispose();
            throw;
        }
    }

    private static T Own<T>(List<IDisposable> built, T disposable) where T : IDisposable
    {
        built.Add(disposable);
        return disposable;
    }

    /// <summary>Time the last commit may add to a graceful shutdown (exactly-once: one transaction timeout, plus an abort).</summary>
    public static TimeSpan ShutdownAllowance(KafkaOptions k) =>
        k.Delivery == DeliveryGuarantee.ExactlyOnce ? TimeSpan.FromMilliseconds(2.0 * k.TransactionTimeoutMs) : TimeSpan.Zero;

    /// <summary>The settings each mode adds its own checks for.</summary>
    public static void Validate(KafkaOptions k, List<string> errors)
    {
        if (!Enum.IsDefined(k.Delivery)) errors.Add($"Kafka:Delivery must be AtLeastOnce or ExactlyOnce (was {k.Delivery}).");
        if (k.Delivery == DeliveryGuarantee.ExactlyOnce && k.Producer.EnableIdempotence == false)
            errors.Add("Kafka:Producer:EnableIdempotence=false cannot be combined with Kafka:Delivery=ExactlyOnce.");
    }

    /// <summary>
    /// End of a run, whichever way it ended: deliver the drift reports still queued on a telemetry producer of
    /// its own (exactly-once). At-least-once shares the output producer, which the strategy's close flushed.
    /// </summary>
    public void FlushTelemetry(TimeSpan timeout) => _ownTelemetry?.Flush(timeout);

    public void Dispose()
    {
        // The strategy first: exactly-once aborts an open transaction through the output producer.
        Commit.Dispose();
        Output.Dispose();
        _ownTelemetry?.Dispose();
    }

    private static ICommitStrategy Decorate(ICommitStrategy commit, Func<ICommitStrategy, ICommitStrategy>? decorate) =>
        decorate is null ? commit : decorate(commit);

    private static IProducer<byte[], byte[]> Build(ProducerConfig config, ILogger log) =>
        new ProducerBuilder<byte[], byte[]>(config)
            .SetErrorHandler((_, e) => RuntimeLog.ProducerError(log, e.Code.ToString(), e.Reason))
            .Build();
}
