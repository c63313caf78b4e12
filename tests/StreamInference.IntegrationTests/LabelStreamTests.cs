using StreamInference.Core.Evaluation;

namespace StreamInference.IntegrationTests;

/// <summary>
/// The synthetic ground-truth source (issue 19): each event's label on the labels topic, keyed by its entity, after a
/// delay drawn from label.knownAfter (some later, some never), readable with the registered schema.
/// </summary>
[Collection(ServicesCollection.Name)]
public sealed class LabelStreamTests(ServicesFixture services, ITestOutputHelper output)
{
    [Fact]
    public async Task Produce_PublishesEachEventsLabel_AfterItsDelay_SomeLate_SomeNever()
    {
        const int events = 4000;
        const long knownAfter = 86_400_000;
        var input = await services.CreateTopicAsync("payments", 2);
        var labelsTopic = await services.CreateTopicAsync("labels", 2);
        var summary = await services.ProduceAsync(new ProduceOptions
        {
            Topic = input, Events = events, Seed = 1919, LabelsTopic = labelsTopic, LabelKnownAfterMs = knownAfter,
            LabelTimeScale = 1.0 / 86_400 / 4,   // a day of delay in a quarter of a second
            ClockOffset = ServicesFixture.DaytimeClockOffset(),   // the share of positives below is a daytime share
        });
        using var registry = services.RegistryClient();
        var labels = new List<(GroundTruth Label, string Key)>();
        using (var consumer = new Confluent.Kafka.ConsumerBuilder<byte[], byte[]>(new Confluent.Kafka.ConsumerConfig
               {
                   BootstrapServers = services.BootstrapServers, GroupId = "labels-" + Guid.NewGuid().ToString("N"), AutoOffsetReset = Confluent.Kafka.AutoOffsetReset.Earliest,
               }).Build())
        {
            consumer.Subscribe(labelsTopic);
            var clock = Stopwatch.StartNew();
            while (labels.Count < summary.Labels && clock.Elapsed < TimeSpan.FromSeconds(30))
            {
                var r = consumer.Consume(TimeSpan.FromMilliseconds(200));
                if (r is null) continue;
                Assert.Equal(WireHeaderStatus.Ok, ConfluentWireFormat.TryReadHeader(r.Message.Value, out var id));
                var writer = await registry.GetSchemaAsync(id, CancellationToken.None);
                labels.Add((LabelRecords.Decode(r.Message.Value, writer), System.Text.Encoding.UTF8.GetString(r.Message.Key)));
            }
            consumer.Close();
        }

        Assert.Equal(summary.Labels, labels.Count);
        Assert.Equal(labels.Count, labels.Select(l => l.Label.EventId).Distinct().Count());
        Assert.All(labels, l => Assert.Equal(l.Label.EntityKey, l.Key));
        var delays = labels.Select(l => l.Label.LabelTimeMs - l.Label.EventTimeMs!.Value).ToList();
        Assert.All(delays, d => Assert.InRange(d, 1, 3 * knownAfter));
        var never = events - labels.Count;
        var late = delays.Count(d => d > knownAfter);
        var positives = labels.Count(l => l.Label.Label);
        output.WriteLine($"{labels.Count} labels for {events} events: {never} never, {late} after knownAfter, {positives} positive; median delay {delays.Order().ElementAt(delays.Count / 2) / 3_600_000.0:0.0} h");
        // 2 % never and 5 % late, within four binomial standard deviations.
        Assert.InRange(never, events * 0.02 - 4 * Math.Sqrt(events * 0.02), events * 0.02 + 4 * Math.Sqrt(events * 0.02));
        Assert.InRange(late, events * 0.05 - 4 * Math.Sqrt(events * 0.05), events * 0.05 + 4 * Math.Sqrt(events * 0.05));
        Assert.InRange(positives, 1, labels.Count / 5);
    }
}
