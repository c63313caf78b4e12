namespace StreamInference.IntegrationTests;

/// <summary>
/// A deployment with a shadow model (issue 18, acceptance 1): the same input processed by the champion alone and by
/// the champion with a shadow gives the same champion predictions; the shadow's go to their own topic, one per event.
/// </summary>
[Collection(ServicesCollection.Name)]
public sealed class DeploymentShadowTests(ServicesFixture services, ITestOutputHelper output) : TempDirectoryTest("si-deploy-")
{
    [Fact]
    public async Task ShadowOnOrOff_TheChampionsPredictionsAreTheSame_AndTheShadowPublishesApart()
    {
        const int events = 800;
        var topics = await services.CreateTopicsAsync(2);
        // At a simulated daytime: at night the synthetic world is mostly fraud, both models' scores crowd near 1 and the
        // per-window rank correlation below says little.
        var produced = await services.ProduceAsync(new ProduceOptions { Topic = topics.Input, Events = events, Seed = 1818, ClockOffset = ServicesFixture.DaytimeClockOffset() });
        Assert.Equal(events, produced.Produced);
        using var registry = services.RegistryClient();

        var comparisons = "";
        // Each run keeps its window state in its own Redis database, so both compute the same features.
        async Task<(List<Avro.Generic.GenericRecord> Champion, List<Avro.Generic.GenericRecord> Shadow)> RunAsync(int database, string deployment, bool shadowExpected)
        {
            using (var admin = await ConnectionMultiplexer.ConnectAsync($"{services.Redis},allowAdmin=true"))
                foreach (var endpoint in admin.GetEndPoints()) await admin.GetServer(endpoint).FlushDatabaseAsync(database);
            var predictions = await services.CreateTopicAsync("predictions", 2);
            var shadow = await services.CreateTopicAsync("shadow", 2);
            comparisons = await services.CreateTopicAsync("comparison", 1);
            var options = services.ProcessorOptions(topics with { Predictions = predictions });
            options.Redis.Configuration = $"{services.Redis},defaultDatabase={database}";
            options.Model.Name = "fraud-gbm";
            options.Model.Version = "1";
            options.Model.Deployment = deployment;
            options.Kafka.ShadowTopic = shadow;
            options.Kafka.ComparisonTopic = comparisons;
            options.Model.ComparisonWindowEvents = 200;
            await using var processor = await ProcessorHarness.StartAsync(options, output);
            var champion = await PredictionReader.ReadAsync(services.BootstrapServers, registry, predictions, events);
            var shadows = !shadowExpected ? [] : await PredictionReader.ReadAsync(services.BootstrapServers, registry, shadow, events);
            if (shadowExpected)
            {
                // Shadow output is counted by model and result.
                var delivered = processor.Metrics.ShadowPredictions.WithLabels("fraud-logreg@3", "delivered");
                await processor.WaitUntilAsync(() => delivered.Value >= events, TimeSpan.FromSeconds(10));
                Assert.Equal(events, delivered.Value);
                Assert.Equal(0, processor.Metrics.ShadowPredictions.WithLabels("fraud-logreg@3", "failed").Value);
            }
            await processor.StopAsync();
            return (champion, shadows);
        }

        // The same deployment version with and without the shadow: the champion's predictions carry it either way.
        var without = Path.Combine(TempDir, "champion-only.yaml");
        File.WriteAllText(without, """
            version: 1
            champion: fraud-gbm@1
            """);
        var alone = await RunAsync(database: 5, deployment: without, shadowExpected: false);
        var file = Path.Combine(TempDir, "deployment.yaml");
        File.WriteAllText(file, """
            version: 1
            champion: fraud-gbm@1
            shadows:
              - model: fraud-logreg@3
            """);
        var withShadow = await RunAsync(database: 6, deployment: file, shadowExpected: true);

        Assert.Equal(events, alone.Champion.Count);
        Assert.Equal(events, withShadow.Champion.Count);
        var before = alone.Champion.ToDictionary(r => (string)r["event_id"]);
        var fields = alone.Champion[0].Schema.Fields.Select(f => f.Name).Where(n => n != "scored_at").ToArray();
        foreach (var record in withShadow.Champion)
        {
            var same = before[(string)record["event_id"]];
            foreach (var field in fields)
            {
                if (record[field] is object[] array) Assert.Equal((object[])same[field], array);
                else Assert.Equal(same[field], record[field]);
            }
        }

        // The shadow: one prediction per event, by its own model, on its own topic, never on the champion's.
        Assert.Equal(events, withShadow.Shadow.Count);
        Assert.All(withShadow.Shadow, r => Assert.Equal(("fraud-logreg", "3"), ((string)r["model_name"], (string)r["model_version"])));
        Assert.All(withShadow.Champion, r => Assert.Equal("fraud-gbm", (string)r["model_name"]));
        Assert.All(withShadow.Champion, r => Assert.Equal(("champion", 1L), ((string)r["arm"], (long)r["deployment_version"]!)));
        Assert.All(withShadow.Shadow, r => Assert.Equal("shadow", (string)r["arm"]));
        Assert.Equal(before.Keys.Order(), withShadow.Shadow.Select(r => (string)r["event_id"]).Order());
        var champion = withShadow.Champion.ToDictionary(r => (string)r["event_id"], r => (double)r["score"]);
        Assert.Contains(withShadow.Shadow, r => Math.Abs((double)r["score"] - champion[(string)r["event_id"]]) > 1e-6);   // another model's scores

        // The live comparison: one Avro report per 200 events, matching the published scores pair by pair.
        var reports = await PredictionReader.ReadAsync(services.BootstrapServers, registry, comparisons, events / 200, keyedByEntity: false);
        Assert.Equal(events / 200, reports.Count);
        Assert.All(reports, r => Assert.Equal(("fraud-gbm@1", "fraud-logreg@3", "shadow", 1L, 200), ((string)r["champion"], (string)r["challenger"], (string)r["arm"], (long)r["deployment_version"], (int)r["events"])));
        var shadowScores = withShadow.Shadow.ToDictionary(r => (string)r["event_id"], r => (double)r["score"]);
        var agree = champion.Count(x => x.Value > 0.5 == shadowScores[x.Key] > 0.5) / (double)events;
        var reported = reports.Sum(r => (double)r["agreement"] * (int)r["events"]) / events;
        output.WriteLine($"agreement over {events} events: {agree:P2} from the predictions, {reported:P2} from {reports.Count} reports");
        Assert.Equal(agree, reported, 9);
        Assert.All(reports, r => Assert.InRange((double)r["rank_correlation"]!, 0.5, 1.0));
    }
}
