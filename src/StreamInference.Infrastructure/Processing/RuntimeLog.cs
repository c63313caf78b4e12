using Microsoft.Extensions.Logging;

namespace StreamInference.Infrastructure;

/// <summary>
/// The processor runtime's log messages (runtime, supervisor, consume loop, commit strategies, delivery
/// mode), source-generated and kept together so that what an operator can read in the log is in one place.
/// Each caller passes its own logger, so the category still names the class that logs.
/// </summary>
internal static partial class RuntimeLog
{
        [LoggerMessage(Level = LogLevel.Information, Message = "Batch size autotune: serving batches of up to {BatchSize} ({EventsPerSecond:N0} events/s, p99 {P99Ms:0.###} ms per batch, budget {BudgetMs} ms); measured {Measurements}")]
        public static partial void Autotuned(ILogger logger, int batchSize, double eventsPerSecond, double p99Ms, double budgetMs, string measurements);

        [LoggerMessage(Level = LogLevel.Warning, Message = "Batch size autotune: even a batch of 1 takes {P99Ms:0.###} ms (p99), over Model:BatchLatencyBudgetMs={BudgetMs}; serving batches of 1. Raise the budget if throughput matters more.")]
        public static partial void AutotuneOverBudget(ILogger logger, double budgetMs, double p99Ms);

        [LoggerMessage(Level = LogLevel.Warning, Message = "{Warning}")]
        public static partial void ModelWarning(ILogger logger, string warning);

        [LoggerMessage(Level = LogLevel.Warning, Message = "Model:Device=auto: running on the CPU; {Reason}")]
        public static partial void DeviceFallback(ILogger logger, string reason);

        [LoggerMessage(Level = LogLevel.Information, Message = "Model {Model}@{Version} loaded from {Directory} (feature set {FeatureSet} v{FeatureSetVersion}, {Features} features, {Outputs} score column(s))")]
        public static partial void ModelLoaded(ILogger logger, string model, string version, string directory, string featureSet, int featureSetVersion, int features, int outputs);

        [LoggerMessage(Level = LogLevel.Information, Message = "Processing {Input} → {Output} (dead letters: {DeadLetters}) as consumer group {Group}")]
        public static partial void Started(ILogger logger, string input, string output, string deadLetters, string group);

        [LoggerMessage(Level = LogLevel.Information, Message = "Stopped: {Published} predictions and {DeadLettered} dead letters acknowledged")]
        public static partial void Stopped(ILogger logger, long published, long deadLettered);

        [LoggerMessage(Level = LogLevel.Warning, Message = "Drift monitoring off for {Model}: no reference profile at {Path} (run 'streaminference profile', or set Drift:Enabled=false)")]
        public static partial void DriftOff(ILogger logger, string model, string path);

        [LoggerMessage(Level = LogLevel.Warning, Message = "Drift monitoring off for {Model}: the reference profile at {Path} is {Profile}'s")]
        public static partial void DriftProfileMismatch(ILogger logger, string path, string profile, string model);

        [LoggerMessage(Level = LogLevel.Information, Message = "Drift monitoring of {Model} against {Path}: reports to {Topic} every {Window}")]
        public static partial void DriftOn(ILogger logger, string model, string path, string topic, string window);


        [LoggerMessage(Level = LogLevel.Critical, Message = "Exactly-once producer wedged: {Reason}; ending the process so it restarts (the open transaction is aborted by the broker)")]
        public static partial void ProducerWedged(ILogger logger, string reason);

        [LoggerMessage(Level = LogLevel.Error, Message = "Processor failed ({Reason}); restarting from the committed offsets in {Seconds}s")]
        public static partial void Restarting(ILogger logger, string reason, double seconds);

        [LoggerMessage(Level = LogLevel.Information, Message = "Assigned {Count} partition(s): {Partitions}")]
        public static partial void Assigned(ILogger logger, int count, string partitions);

        [LoggerMessage(Level = LogLevel.Information, Message = "{Topic}[{Partition}]: consuming from offset {Offset}")]
        public static partial void FirstRecord(ILogger logger, string topic, int partition, long offset);

        [LoggerMessage(Level = LogLevel.Information, Message = "Revoked {Count} partition(s); watermarks committed")]
        public static partial void Revoked(ILogger logger, int count);

        [LoggerMessage(Level = LogLevel.Warning, Message = "Lost {Count} partition(s); their in-flight records will be processed again by the new owner")]
        public static partial void Lost(ILogger logger, int count);

        [LoggerMessage(Level = LogLevel.Warning, Message = "Revoked {Topic}[{Partition}] with {InFlight} record(s) still in flight; the new owner will process them again")]
        public static partial void RevokedWithInFlight(ILogger logger, string topic, int partition, int inFlight);

        [LoggerMessage(Level = LogLevel.Warning, Message = "Consume error {Code}: {Reason}")]
        public static partial void ConsumeError(ILogger logger, string code, string reason);

        [LoggerMessage(Level = LogLevel.Warning, Message = "Offset commit failed: {Reason}")]
        public static partial void CommitFailed(ILogger logger, string reason);

        [LoggerMessage(Level = LogLevel.Critical, Message = "Fatal Kafka error {Code}: {Reason}")]
        public static partial void FatalError(ILogger logger, string code, string reason);

        [LoggerMessage(Level = LogLevel.Warning, Message = "Kafka error {Code}: {Reason}")]
        public static partial void TransportError(ILogger logger, string code, string reason);

        [LoggerMessage(Level = LogLevel.Warning, Message = "librdkafka {Facility}: {Message}")]
        public static partial void Librdkafka(ILogger logger, string facility, string message);

        [LoggerMessage(Level = LogLevel.Warning, Message = "Pipeline did not drain within {Seconds}s; unacknowledged records will be consumed again")]
        public static partial void DrainTimedOut(ILogger logger, double seconds);

        [LoggerMessage(Level = LogLevel.Warning, Message = "Transaction outputs not acknowledged within {Seconds}s; aborting")]
        public static partial void FlushSlow(ILogger logger, double seconds);

        [LoggerMessage(Level = LogLevel.Warning, Message = "Transactional call failed with retriable {Code}: {Reason} (attempt {Attempt})")]
        public static partial void Retrying(ILogger logger, string code, string reason, int attempt);

        [LoggerMessage(Level = LogLevel.Warning, Message = "Transaction {Step} took {Seconds:0.0}s")]
        public static partial void SlowStep(ILogger logger, string step, double seconds);

        [LoggerMessage(Level = LogLevel.Error, Message = "Aborting the transaction failed ({Code}: {Reason})")]
        public static partial void AbortFailed(ILogger logger, string code, string reason);

        [LoggerMessage(Level = LogLevel.Warning, Message = "Could not store offset {Offset} for {Topic}[{Partition}]: {Reason}")]
        public static partial void StoreFailed(ILogger logger, string topic, int partition, long offset, string reason);

        [LoggerMessage(Level = LogLevel.Information, Message = "Exactly-once delivery: transactional id {TransactionalId}, commit every {IntervalMs} ms")]
        public static partial void ExactlyOnce(ILogger logger, string transactionalId, int intervalMs);

        [LoggerMessage(Level = LogLevel.Warning, Message = "Kafka producer error {Code}: {Reason}")]
        public static partial void ProducerError(ILogger logger, string code, string reason);
}
