using System.Text;
using StreamInference.DevServices.SchemaRegistry;

namespace StreamInference.IntegrationTests;

/// <summary>
/// The schema registry goes away mid-run (its own dev registry on a fixed port, stopped and started
/// again): records whose schema the processor has cached keep being scored; records with a schema id it
/// has never seen wait for the registry (Wait) or are dead-lettered as registry-unavailable (DeadLetter).
/// </summary>
[Collection(ServicesCollection.Name)]
public sealed class RegistryOutageTests(ServicesFixture services, ITestOutputHelper output)
{
    private static readonly Avro.RecordSchema Writer = ServicesFixture.PaymentEventSchema;

    // The same event with one more optional field: a second writer schema (another id) the reader resolves.
    private static readonly Avro.RecordSchema NewerWriter = (Avro.RecordSchema)AvroSchema.Parse(
        File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "schemas", "payment-event.avsc"))
            .Replace("""{"name": "event_id", "type": "string"},""", """{"name": "event_id", "type": "string"}, {"name": "note", "type": ["null", "string"], "default": null},"""));

    [Theory]
    [InlineData(RegistryPolicy.Wait)]
    [InlineData(RegistryPolicy.DeadLetter)]
    public async Task RegistryDown_CachedSchemasKeepScoring_UnknownIdsFollowThePolicy(RegistryPolicy policy)
    {
        Assert.NotEqual(Writer.ToString(), NewerWriter.ToString());
        var port = StreamInference.DevServices.Redis.EmbeddedGarnet.FreePort();
        var registryServer = await DevSchemaRegistry.StartAsync(port);
        var topics = await services.CreateTopicsAsync(2);
        var input = topics.Input;
        var options = services.ProcessorOptions(topics);
        options.SchemaRegistry = new SchemaRegistryOptions { Url = registryServer.Url, OnUnavailable = policy, MaxAttempts = 2, RequestTimeout = TimeSpan.FromSeconds(2) };

        using var registry = new AvroSchemaRegistry(new SchemaRegistryOptions { Url = registryServer.Url });
        var knownId = await registry.RegisterAsync($"{input}-value", Writer, CancellationToken.None);
        var newId = await registry.RegisterAsync($"{input}-next-value", NewerWriter, CancellationToken.None);
        Assert.NotEqual(knownId, newId);

        using var audit = new PredictionAudit(services.BootstrapServers, registry, topics.Predictions, topics.DeadLetters);
        await using var auditing = BackgroundRun.Start(audit.RunAsync);
        await using var processor = await ProcessorHarness.StartAsync(options, output);

        var generator = new PaymentGenerator(99);
        var positions = new List<(int Partition, long Offset, bool New)>();
        using var producer = new ProducerBuilder<byte[], byte[]>(new ProducerConfig { BootstrapServers = services.BootstrapServers, LingerMs = 5 }).Build();
        void Produce(int count, bool newSchema)
        {
            for (var i = 0; i < count; i++)
            {
                var e = generator.Next(DateTimeOffset.UtcNow);
                var value = newSchema ? SyntheticPaymentProducer.Encode(NewerWriter, newId, e) : SyntheticPaymentProducer.Encode(Writer, knownId, e);
                var r = producer.ProduceAsync(input, new Message<byte[], byte[]> { Key = Encoding.UTF8.GetBytes(e.CardId), Value = value }).GetAwaiter().GetResult();
                positions.Add((r.Partition.Value, r.Offset.Value, newSchema));
            }
        }

        // Warm: the processor and the reader cache the known writer schema and the prediction schema.
        Produce(300, newSchema: false);
        await WaitAsync(() => audit.Predicted >= 300, TimeSpan.FromSeconds(60));
        await registryServer.DisposeAsync();

        // Registry down: cached schema first, then records under a schema id never seen before.
        Produce(300, newSchema: false);
        await WaitAsync(() => audit.Predicted >= 600, TimeSpan.FromSeconds(60));
        var cachedScoredWhileDown = audit.Predicted - 300;
        Produce(200, newSchema: true);
        await Task.Delay(3000);
        var accountedWhileDown = audit.Predicted + audit.DeadLettered;
        processor.AssertRunning("the processor stopped while the registry was down");

        // Back the way a registry with persistent storage comes back: knowing both ids from its first request (the
        // dev registry keeps schemas in memory, so it is given them; registering them after the start would
        // leave a moment in which it answers 404 for the new id, a definitive "unknown").
        await using var restarted = await DevSchemaRegistry.StartAsync(port, [($"{input}-value", Writer), ($"{input}-next-value", NewerWriter)]);
        using (var again = new AvroSchemaRegistry(new SchemaRegistryOptions { Url = restarted.Url }))
        {
            Assert.Equal(knownId, await again.RegisterAsync($"{input}-value", Writer, CancellationToken.None));
            Assert.Equal(newId, await again.RegisterAsync($"{input}-next-value", NewerWriter, CancellationToken.None));
        }
        await WaitAsync(() => audit.Predicted + audit.DeadLettered >= 800, TimeSpan.FromSeconds(60));
        await processor.StopAsync();
        await Task.Delay(300);
        await auditing.StopAsync();

        var newOnes = positions.Where(p => p.New).Select(p => (p.Partition, p.Offset)).ToList();
        var lost = positions.Count(p => !audit.Predictions.ContainsKey((p.Partition, p.Offset)) && !audit.DeadLetters.ContainsKey((p.Partition, p.Offset)));
        var newDeadLettered = newOnes.Count(k => audit.DeadLetters.TryGetValue(k, out var why) && why == DeadLetterReasons.RegistryUnavailable);
        var newScored = newOnes.Count(k => audit.Predictions.ContainsKey(k));
        output.WriteLine($"{policy}: cached-schema records scored while the registry was down {cachedScoredWhileDown}/300; " +
                         $"new-schema records: scored {newScored}, dead-lettered registry-unavailable {newDeadLettered}; accounted while down {accountedWhileDown}; lost {lost}");
        Assert.Equal(0, lost);
        Assert.Equal(300, cachedScoredWhileDown);
        if (policy == RegistryPolicy.Wait)
        {
            Assert.Equal(200, newScored);                 // they waited for the registry
            Assert.True(accountedWhileDown <= 600, $"{accountedWhileDown} accounted while the new schema could not be fetched");
        }
        else
        {
            Assert.Equal(200, newDeadLettered);           // dead-lettered at once, with the reason
        }
    }

    private static async Task WaitAsync(Func<bool> done, TimeSpan timeout)
    {
        var sw = Stopwatch.StartNew();
        while (!done() && sw.Elapsed < timeout) await Task.Delay(50);
        Assert.True(done(), $"not reached within {timeout.TotalSeconds} s");
    }
}
