using Confluent.Kafka;
using Microsoft.Extensions.Logging;
using StreamInference.Infrastructure.Processing;

namespace StreamInference.Infrastructure.Kafka;

/// <summary>The processor's Kafka client settings: the user's Kafka:Consumer / Kafka:Producer properties plus the processor's defaults.</summary>
public static class KafkaConfigs
{
    /// <summary>Producer of predictions and dead letters (the delivery mode adds its own settings, see <see cref="Commit.DeliveryMode"/>).</summary>
    public static ProducerConfig Producer(KafkaOptions k)
    {
        var config = new ProducerConfig(k.Producer.ToDictionary())
        {
            BootstrapServers = k.BootstrapServers,
        };
        // Idempotence keeps retries from duplicating or reordering predictions; acks=all is implied.
        config.EnableIdempotence ??= true;
        config.LingerMs ??= 5;
        config.CompressionType ??= CompressionType.Lz4;
        config.ClientId ??= "streaminference-processor";
        return config;
    }

    /// <summary>Consumer of the input topic; the commit strategy adjusts a copy (isolation level, auto-commit).</summary>
    public static ConsumerConfig Consumer(KafkaOptions k)
    {
        var config = new ConsumerConfig(k.Consumer.ToDictionary())
        {
            BootstrapServers = k.BootstrapServers,
            GroupId = k.GroupId,
            EnableAutoOffsetStore = false,
        };
        config.AutoOffsetReset ??= AutoOffsetReset.Earliest;
        config.AutoCommitIntervalMs ??= 1000;
        config.ClientId ??= "streaminference-processor";
        return config;
    }

    /// <summary>A copy that shares nothing with <paramref name="config"/> (Confluent's copy constructor shares the property dictionary).</summary>
    public static ConsumerConfig Copy(ConsumerConfig config) => new(config.ToDictionary(p => p.Key, p => p.Value));

    /// <summary>Commits <paramref name="offsets"/> now; a failure is logged (the next owner then re-processes from the previous commit).</summary>
    public static void TryCommit(IConsumer<byte[], byte[]> consumer, List<TopicPartitionOffset> offsets, ILogger log)
    {
        if (offsets.Count == 0) return;
        try
        {
            consumer.Commit(offsets);
        }
        catch (KafkaException e)
        {
            RuntimeLog.CommitFailed(log, e.Error.Reason);
        }
    }
}
