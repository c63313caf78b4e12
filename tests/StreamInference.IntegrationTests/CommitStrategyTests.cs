using Microsoft.Extensions.Logging.Abstractions;
using StreamInference.Core.Offsets;
using StreamInference.Infrastructure.Kafka;
using StreamInference.Infrastructure.Kafka.Commit;

namespace StreamInference.IntegrationTests;

/// <summary>
/// The at-least-once commit strategy against a real Kafka-protocol cluster: what it stores and commits is
/// each partition's contiguous watermark of completed records, never an offset past an incomplete one.
/// </summary>
[Collection(ServicesCollection.Name)]
public sealed class CommitStrategyTests(ServicesFixture services)
{
    [Fact]
    public async Task AtLeastOnce_CommitsOnlyTheContiguousWatermark_BetweenPollsAndOnRevoke()
    {
        var topic = await services.CreateTopicAsync("commit", 1);
        var tp = new TopicPartition(topic, 0);
        var options = new KafkaOptions { BootstrapServers = services.BootstrapServers, GroupId = ServicesFixture.NewGroup() };
        using var producer = new ProducerBuilder<byte[], byte[]>(KafkaConfigs.Producer(options)).Build();
        using var commit = new AtLeastOnceCommit(producer, NullLogger.Instance);
        var processorConfig = KafkaConfigs.Consumer(options);
        var config = commit.ConsumerConfig(processorConfig);
        Assert.False(config.EnableAutoOffsetStore);
        Assert.True(config.EnableAutoCommit);
        Assert.Null(processorConfig.EnableAutoCommit);   // a copy: the processor's settings are left as they were
        config.EnableAutoCommit = false;   // this test commits explicitly, to read what was stored
        using var consumer = new ConsumerBuilder<byte[], byte[]>(config).Build();
        commit.Bind(consumer);
        consumer.Assign(new TopicPartitionOffset(tp, Offset.Beginning));
        var partition = new PartitionOffsets(topic, 0);
        commit.Assigned([partition]);
        var sequences = Enumerable.Range(0, 5).Select(offset => partition.Track(offset)).ToArray();

        // 0, 1 and 3 complete; 2 is still in flight: the watermark is 2.
        partition.Complete(sequences[0]);
        partition.Complete(sequences[1]);
        partition.Complete(sequences[3]);
        commit.CommitCompleted();
        consumer.Commit();
        Assert.Equal(2, Committed(consumer, tp));

        // 2 completes: the watermark jumps over the already completed 3; revoking commits it and marks the partition.
        partition.Complete(sequences[2]);
        commit.Revoking([partition]);
        Assert.Equal(4, Committed(consumer, tp));
        Assert.True(partition.IsRevoked);

        // After the revoke, late completions change nothing.
        partition.Complete(sequences[4]);
        commit.CommitCompleted();
        Assert.Equal(4, Committed(consumer, tp));
        consumer.Close();
    }

    private static long Committed(IConsumer<byte[], byte[]> consumer, TopicPartition tp) =>
        consumer.Committed([tp], TimeSpan.FromSeconds(10)).Single().Offset.Value;
}
