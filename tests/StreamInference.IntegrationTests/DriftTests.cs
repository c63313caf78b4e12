using Avro.Generic;
using Avro.IO;
using Prometheus;
using StreamInference.Infrastructure.Drift;

namespace StreamInference.IntegrationTests;

/// <summary>The processor, fed shifted events through Kafka, reports the shifted features on the drift topic and in its gauges.</summary>
[Collection(ServicesCollection.Name)]
public sealed class DriftTests(ServicesFixture services, ITestOutputHelper output)
{
    private static readonly FeaturePlan Plan = ServicesFixture.CardPaymentsPlan;

    [Fact]
    public async Task ShiftedEvents_AreReportedOnTheDriftTopic_AndInTheGauges()
    {
        const int window = 1500;
        var topics = await services.CreateTopicsAsync(4);
        var driftTopic = await services.CreateTopicAsync("drift", 1);
        // At a daytime hour (events and the warm start's "now" alike): at night the usual world is mostly fraud, whose amounts the shift moves less.
        var clock = ServicesFixture.DaytimeClockOffset();
        using (var redis = await ConnectionMultiplexer.ConnectAsync(services.Redis))
            await WarmStart.MaterializeAsync(redis.GetDatabase(), Plan, now: DateTimeOffset.UtcNow + clock);

        var options = services.ProcessorOptions(topics, ServicesFixture.NewGroup("drift"));
        options.Drift = new DriftOptions { Topic = driftTopic, WindowEvents = window };
        var sw = Stopwatch.StartNew();
        await using var processor = await ProcessorHarness.StartAsync(options, output);
        Assert.NotNull(processor.Drift);

        async Task Produce(int seed, int? driftAt)
        {
            var produced = await services.ProduceAsync(new ProduceOptions { Topic = topics.Input, Events = window, Seed = seed, DriftAt = driftAt, ClockOffset = clock });
            Assert.Equal(0, produced.Failed);
        }
        // One window of the usual world, then one of the shifted world (amounts ×2.2, more online payments).
        await Produce(seed: 41, driftAt: null);
        while (processor.Drift!.WindowsClosed < 1 && sw.Elapsed < TimeSpan.FromSeconds(120)) await Task.Delay(50);
        await Produce(seed: 42, driftAt: 0);
        while (processor.Drift!.WindowsClosed < 2 && sw.Elapsed < TimeSpan.FromSeconds(150)) await Task.Delay(50);
        Assert.Equal(2, processor.Drift.WindowsClosed);

        var text = await ExportAsync(processor.MetricRegistry);
        await processor.StopAsync();

        // The reports, decoded from the drift topic.
        var reports = ReadReports(driftTopic, expected: 2);
        Assert.Equal(2, reports.Count);
        var before = Feature(reports[0], "log_amount");
        var after = Feature(reports[1], "log_amount");
        output.WriteLine($"log_amount before: {Describe(before)}; after: {Describe(after)}");
        Assert.Equal(window, (long)reports[1]["events"]);
        Assert.NotEqual("ALERT", ((GenericEnum)before["severity"]).Value);
        Assert.Equal("ALERT", ((GenericEnum)after["severity"]).Value);
        Assert.True((double)after["psi"]! > 0.25);
        Assert.True((double)after["ks_p_value"]! < 0.01);
        Assert.Equal("ALERT", ((GenericEnum)Feature(reports[1], "is_online")["severity"]).Value);
        Assert.Equal("ALERT", ((GenericEnum)reports[1]["max_severity"]).Value);

        // The gauges show the same, labelled by the model and its role.
        Assert.Contains("streaminference_drift_severity{model=\"fraud-gbm@1\",role=\"champion\",feature=\"log_amount\"} 2", text);
        var psiLine = text.Split('\n').Single(l => l.StartsWith("streaminference_drift{model=\"fraud-gbm@1\",role=\"champion\",feature=\"log_amount\",statistic=\"psi\"}", StringComparison.Ordinal));
        Assert.Equal((double)after["psi"]!, double.Parse(psiLine.Split(' ')[1], System.Globalization.CultureInfo.InvariantCulture), 6);
    }

    private static string Describe(GenericRecord f) => $"{((GenericEnum)f["severity"]).Value} psi {f["psi"]} ks {f["ks"]} p {f["ks_p_value"]}";

    private static GenericRecord Feature(GenericRecord report, string name) =>
        ((object[])report["features"]).Cast<GenericRecord>().Single(f => (string)f["name"] == name);

    private static async Task<string> ExportAsync(CollectorRegistry registry)
    {
        using var stream = new MemoryStream();
        await registry.CollectAndExportAsTextAsync(stream);
        return System.Text.Encoding.UTF8.GetString(stream.ToArray());
    }

    private List<GenericRecord> ReadReports(string topic, int expected)
    {
        using var consumer = new ConsumerBuilder<byte[], byte[]>(new ConsumerConfig
        {
            BootstrapServers = services.BootstrapServers, GroupId = "read-" + Guid.NewGuid().ToString("N"), AutoOffsetReset = AutoOffsetReset.Earliest,
        }).Build();
        consumer.Subscribe(topic);
        var reader = new GenericDatumReader<GenericRecord>(DriftReportWriter.Schema, DriftReportWriter.Schema);
        var reports = new List<GenericRecord>();
        var sw = Stopwatch.StartNew();
        while (reports.Count < expected && sw.Elapsed < TimeSpan.FromSeconds(60))
        {
            var r = consumer.Consume(TimeSpan.FromMilliseconds(200));
            if (r is null) continue;
            Assert.Equal(WireHeaderStatus.Ok, ConfluentWireFormat.TryReadHeader(r.Message.Value, out _));
            using var stream = new MemoryStream(r.Message.Value, ConfluentWireFormat.HeaderSize, r.Message.Value.Length - ConfluentWireFormat.HeaderSize);
            reports.Add(reader.Read(null!, new BinaryDecoder(stream)));
        }
        consumer.Close();
        return reports;
    }
}
