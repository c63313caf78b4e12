using System.Diagnostics;
using Prometheus;
using StreamInference.DevServices.Synthetic;
using StreamInference.Infrastructure.Avro;
using StreamInference.Infrastructure.Processing;
using Xunit.Abstractions;
using AvroSchema = Avro.Schema;

namespace StreamInference.IntegrationTests;

/// <summary>Exactly-once mode against the Kafka-protocol cluster: transactions, read_committed readers.</summary>
[Collection(ServicesCollection.Name)]
public sealed class ExactlyOnceTests(ServicesFixture services, ITestOutputHelper output)
{
    private static readonly Avro.RecordSchema Writer = ServicesFixture.PaymentEventSchema;

    [Fact]
    public async Task ExactlyOnce_ReadCommittedReaderSeesEachInputOnce_AcrossARestart()
    {
        var input = await services.CreateTopicAsync("payments", 4);
        var predictions = await services.CreateTopicAsync("predictions", 4);
        var dlq = await services.CreateTopicAsync("dlq", 1);
        var group = "g-" + Guid.NewGuid().ToString("N");
        ProcessorOptions Options()
        {
            var o = services.ProcessorOptions(input, predictions, dlq, group);
            o.Kafka.Delivery = DeliveryGuarantee.ExactlyOnce;
            o.Kafka.TransactionalId = "eos-test-" + group;
            return o;
        }

        using var registry = new SchemaRegistryClient(new SchemaRegistryOptions { Url = services.SchemaRegistryUrl });
        using var audit = new PredictionAudit(services.BootstrapServers, registry, predictions, dlq);
        using var stopAudit = new CancellationTokenSource();
        var auditing = audit.RunAsync(stopAudit.Token);

        // First run: half the input, then a graceful stop (final transaction committed).
        var first = await ProduceAsync(input, 2000, seed: 71);
        await RunUntilAsync(Options(), () => audit.Predicted + audit.DeadLettered >= first.Produced, TimeSpan.FromSeconds(90));
        // Second run with the same transactional id: the rest, from the offsets the transactions committed.
        var second = await ProduceAsync(input, 2000, seed: 72);
        var total = first.Produced + second.Produced;
        await RunUntilAsync(Options(), () => audit.Predicted + audit.DeadLettered >= total, TimeSpan.FromSeconds(90));
        await Task.Delay(500);
        await stopAudit.CancelAsync();
        await auditing;

        var all = first.Records.Concat(second.Records).ToList();
        var lost = audit.Unaccounted(all);
        output.WriteLine($"inputs {all.Count}: predicted {audit.Predicted}, dead-lettered {audit.DeadLettered}, lost {lost}, duplicates {audit.Duplicates}");
        Assert.Equal(0, lost);
        Assert.Equal(0, audit.Duplicates);
        Assert.Equal(all.Count(r => r.BadKind is not null), audit.DeadLettered);
    }

    private async Task RunUntilAsync(ProcessorOptions options, Func<bool> done, TimeSpan timeout)
    {
        var processor = new StreamProcessor(options, new TestLoggerFactory(output), Metrics.WithCustomRegistry(Metrics.NewCustomRegistry())) { DecorateCommit = services.DecorateCommit };
        using var stop = new CancellationTokenSource();
        var run = processor.RunAsync(stop.Token);
        var sw = Stopwatch.StartNew();
        while (!done() && !run.IsCompleted && sw.Elapsed < timeout) await Task.Delay(50);
        await stop.CancelAsync();
        await run.WaitAsync(TimeSpan.FromSeconds(60));
        Assert.True(done(), $"not done within {timeout.TotalSeconds} s");
    }

    private async Task<ProduceSummary> ProduceAsync(string topic, int events, int seed)
    {
        using var registry = new SchemaRegistryClient(new SchemaRegistryOptions { Url = services.SchemaRegistryUrl });
        return await SyntheticPaymentProducer.ProduceAsync(services.BootstrapServers, registry, Writer,
            new ProduceOptions { Topic = topic, Events = events, BadRate = 0.02, Seed = seed }, null, CancellationToken.None);
    }
}
