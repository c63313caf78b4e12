using StreamInference.Infrastructure.Kafka;

namespace StreamInference.IntegrationTests;

/// <summary>Time and offset positions resolve per partition, also where the broker has no ListOffsets by timestamp.</summary>
[Collection(ServicesCollection.Name)]
public sealed class TopicOffsetsTests(ServicesFixture services, Xunit.Abstractions.ITestOutputHelper output)
{
    private static readonly DateTimeOffset T0 = new(2026, 5, 1, 12, 0, 0, TimeSpan.Zero);

    [Fact]
    public async Task Positions_ResolveToTheFirstRecordAtOrAfterATime_InEveryPartition()
    {
        var topic = await services.CreateTopicAsync("offsets", 3);
        // Per partition, records one second apart with explicit timestamps; partitions start at different times.
        var timestamps = new Dictionary<int, List<long>> { [0] = [], [1] = [], [2] = [] };
        using (var producer = new ProducerBuilder<byte[], byte[]>(new ProducerConfig { BootstrapServers = services.BootstrapServers }).Build())
        {
            for (var p = 0; p < 3; p++)
            {
                for (var i = 0; i < 200 + 50 * p; i++)
                {
                    var t = T0 + TimeSpan.FromSeconds(i + 37 * p);
                    timestamps[p].Add(t.ToUnixTimeMilliseconds());
                    producer.Produce(new TopicPartition(topic, p), new Message<byte[], byte[]> { Key = [1], Value = [2], Timestamp = new Timestamp(t) });
                }
            }
            producer.Flush(TimeSpan.FromSeconds(30));
        }

        using var offsets = new TopicOffsets(services.BootstrapServers, topic);
        Assert.Equal([0, 1, 2], offsets.Partitions);

        foreach (var at in new[] { T0 - TimeSpan.FromHours(1), T0 + TimeSpan.FromSeconds(100), T0 + TimeSpan.FromSeconds(100.5), T0 + TimeSpan.FromSeconds(180), T0 + TimeSpan.FromDays(1) })
        {
            var resolved = offsets.Resolve(at.ToString("O"));
            output.WriteLine($"{at:O}: {string.Join(", ", resolved.Select(r => $"{r.Partition}:{r.Offset} ({r.Source})"))}");
            foreach (var position in resolved)
            {
                var list = timestamps[position.Partition];
                var expected = list.FindIndex(ts => ts >= at.ToUnixTimeMilliseconds());
                Assert.Equal(expected < 0 ? list.Count : expected, position.Offset);
                Assert.True(position.Source is OffsetSource.Broker or OffsetSource.Search);
            }
        }

        Assert.All(offsets.Resolve("beginning"), p => Assert.Equal(0, p.Offset));
        Assert.Equal([200L, 250, 300], offsets.Resolve("now").Select(p => p.Offset));
        Assert.Equal([10L, 250, 7], offsets.Resolve("0:10,2:7").Select(p => p.Offset));   // unnamed partitions: their end
        Assert.Throws<ArgumentException>(() => offsets.Resolve("9:1"));
        Assert.Throws<ArgumentException>(() => offsets.Resolve("yesterday-ish"));
    }
}
