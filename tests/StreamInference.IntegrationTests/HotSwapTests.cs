using Prometheus;

namespace StreamInference.IntegrationTests;

/// <summary>
/// Model versions appear in the repository while events stream through: one copied in slowly (its
/// model.onnx half-written for a while), then a corrupt one. The half-written file and the corrupt
/// version are rejected, the complete one is swapped in between batches, nothing is lost.
/// </summary>
[Collection(ServicesCollection.Name)]
public sealed class HotSwapTests(ServicesFixture services, ITestOutputHelper output)
{

    [Fact]
    public async Task NewVersion_IsSwappedInUnderLoad_HalfCopiedAndCorruptVersionsAreRejected_NothingLost()
    {
        var repository = Directory.CreateTempSubdirectory("models-").FullName;
        try
        {
            var source = Path.Combine(AppContext.BaseDirectory, "models", "fraud-logreg", "3");
            CopyVersion(source, Path.Combine(repository, "fraud-logreg", "2"), "2");
            var topics = await services.CreateTopicsAsync(4);
            var options = services.ProcessorOptions(topics);
            options.Model.Repository = repository;
            options.Model.Name = "fraud-logreg";
            options.Model.Version = "latest";
            options.Model.WatchIntervalMs = 200;

            using var registry = services.RegistryClient();
            using var audit = new PredictionAudit(services.BootstrapServers, registry, topics.Predictions, topics.DeadLetters);
            await using var auditing = BackgroundRun.Start(audit.RunAsync);
            await using var processor = await ProcessorHarness.StartAsync(options, output);

            var producing = Task.Run(() => services.ProduceAsync(new ProduceOptions { Topic = topics.Input, Events = 8000, Rate = 800, Seed = 3003 }));
            await Task.Delay(2500);
            // Version 3 arrives like a slow copy: manifest first, then half of model.onnx, the rest a second later.
            var v3 = Path.Combine(repository, "fraud-logreg", "3");
            Directory.CreateDirectory(v3);
            File.Copy(Path.Combine(source, "reference-profile.json"), Path.Combine(v3, "reference-profile.json"));
            WriteManifest(source, v3, "3");
            var model = await File.ReadAllBytesAsync(Path.Combine(source, "model.onnx"));
            await File.WriteAllBytesAsync(Path.Combine(v3, "model.onnx"), model[..(model.Length / 2)]);
            await Task.Delay(1000);
            await File.WriteAllBytesAsync(Path.Combine(v3, "model.onnx"), model);
            await Task.Delay(2500);
            // Version 4 is corrupt.
            var v4 = Path.Combine(repository, "fraud-logreg", "4");
            Directory.CreateDirectory(v4);
            WriteManifest(source, v4, "4");
            var garbage = new byte[model.Length];
            new Random(4).NextBytes(garbage);
            await File.WriteAllBytesAsync(Path.Combine(v4, "model.onnx"), garbage);

            var produced = await producing;
            await processor.WaitUntilAsync(() => audit.Predicted + audit.DeadLettered >= produced.Produced, TimeSpan.FromSeconds(60));
            processor.AssertRunning("the processor stopped");
            await processor.StopAsync();
            await Task.Delay(300);
            await auditing.StopAsync();

            var swaps = processor.MetricFactory.CreateCounter("streaminference_model_swaps_total", "", ["result"]);
            var lost = audit.Unaccounted(produced.Records);
            var byVersion = audit.ModelVersions.Values.GroupBy(v => v).ToDictionary(g => g.Key, g => g.Count());
            // Batches are scored in consume order, so per partition the version never goes back.
            var wentBack = audit.ModelVersions.GroupBy(p => p.Key.Partition)
                .Count(g => g.OrderBy(p => p.Key.Offset).Select(p => p.Value).Zip(g.OrderBy(p => p.Key.Offset).Select(p => p.Value).Skip(1)).Any(t => t.First == "3" && t.Second == "2"));
            output.WriteLine($"lost {lost}; predictions by version: {string.Join(", ", byVersion.Select(p => $"v{p.Key} {p.Value}"))}; " +
                             $"swaps loaded {swaps.WithLabels("loaded").Value}, rejected {swaps.WithLabels("rejected").Value}");
            Assert.Equal(0, lost);
            Assert.Equal(["2", "3"], byVersion.Keys.Order());
            Assert.True(byVersion["3"] > 1000, "version 3 served too little");
            Assert.Equal(0, wentBack);
            Assert.Equal(1, swaps.WithLabels("loaded").Value);
            Assert.True(swaps.WithLabels("rejected").Value >= 2, "the half-written v3 and the corrupt v4 must have been rejected");
        }
        finally
        {
            Directory.Delete(repository, recursive: true);
        }
    }

    private static void CopyVersion(string from, string to, string version)
    {
        Directory.CreateDirectory(to);
        foreach (var f in Directory.GetFiles(from)) File.Copy(f, Path.Combine(to, Path.GetFileName(f)));
        WriteManifest(from, to, version);
    }

    private static void WriteManifest(string from, string to, string version)
    {
        var manifest = ModelManifest.Load(Path.Combine(from, "manifest.json"));
        manifest.Version = version;
        File.WriteAllText(Path.Combine(to, "manifest.json"), manifest.ToJson());
    }
}
