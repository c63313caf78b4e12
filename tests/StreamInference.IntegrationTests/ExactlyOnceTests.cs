namespace StreamInference.IntegrationTests;

/// <summary>Exactly-once mode against the Kafka-protocol cluster: transactions, read_committed readers.</summary>
[Collection(ServicesCollection.Name)]
public sealed class ExactlyOnceTests(ServicesFixture services, ITestOutputHelper output)
{
    [Fact]
    public async Task ExactlyOnce_ReadCommittedReaderSeesEachInputOnce_AcrossARestart()
    {
        var topics = await services.CreateTopicsAsync(4);
        var input = topics.Input;
        var group = ServicesFixture.NewGroup();
        ProcessorOptions Options()
        {
            var o = services.ProcessorOptions(topics, group);
            o.Kafka.Delivery = DeliveryGuarantee.ExactlyOnce;
            o.Kafka.TransactionalId = "eos-test-" + group;
            return o;
        }

        using var registry = services.RegistryClient();
        using var audit = new PredictionAudit(services.BootstrapServers, registry, topics.Predictions, topics.DeadLetters);
        await using var auditing = BackgroundRun.Start(audit.RunAsync);

        // First run: half the input, then a graceful stop (final transaction committed).
        var first = await ProduceAsync(input, 2000, seed: 71);
        await RunUntilAsync(Options(), () => audit.Predicted + audit.DeadLettered >= first.Produced, TimeSpan.FromSeconds(90));
        // Second run with the same transactional id: the rest, from the offsets the transactions committed.
        var second = await ProduceAsync(input, 2000, seed: 72);
        var total = first.Produced + second.Produced;
        await RunUntilAsync(Options(), () => audit.Predicted + audit.DeadLettered >= total, TimeSpan.FromSeconds(90));
        await Task.Delay(500);
        await auditing.StopAsync();

        var all = first.Records.Concat(second.Records).ToList();
        var lost = audit.Unaccounted(all);
        output.WriteLine($"inputs {all.Count}: predicted {audit.Predicted}, dead-lettered {audit.DeadLettered}, lost {lost}, duplicates {audit.Duplicates}");
        Assert.Equal(0, lost);
        Assert.Equal(0, audit.Duplicates);
        Assert.Equal(all.Count(r => r.BadKind is not null), audit.DeadLettered);
    }

    private async Task RunUntilAsync(ProcessorOptions options, Func<bool> done, TimeSpan timeout)
    {
        var sw = Stopwatch.StartNew();
        await using var processor = await ProcessorHarness.StartAsync(options, output);
        await processor.WaitUntilAsync(done, timeout - sw.Elapsed);
        await processor.StopAsync();
        Assert.True(done(), $"not done within {timeout.TotalSeconds} s");
    }

    private Task<ProduceSummary> ProduceAsync(string topic, int events, int seed) =>
        services.ProduceAsync(new ProduceOptions { Topic = topic, Events = events, BadRate = 0.02, Seed = seed });
}
