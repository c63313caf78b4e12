using System.Globalization;
using Avro.Generic;

using StreamInference.Core.Evaluation;
using StreamInference.Infrastructure.Evaluation;

namespace StreamInference.IntegrationTests;

/// <summary>
/// <c>streaminference evaluate</c> as a child process, killed with SIGKILL mid-stream three times and restarted,
/// the rest read by a group of two (issue 19, acceptance 3). Its state (the join, the windows) is in Redis and every write is idempotent, so when
/// the last run has read everything, each final event-time window's report holds exactly the predictions and labels
/// of a reference computed from the produced stream: no label lost, none counted twice.
/// </summary>
[Collection(ServicesCollection.Name)]
public sealed class EvaluateKillTests(ServicesFixture services, ITestOutputHelper output)
{
    private const int Events = 20_000;
    private const long WindowMs = 60_000, HorizonMs = 86_400_000;

    private sealed record Prediction(string EventId, string Entity, string Model, string Arm, double Score, long EventTimeMs);

    [Fact]
    public async Task Sigkill_MidStream_LosesNoLabel_AndCountsNoneTwice()
    {
        var predictionsTopic = await services.CreateTopicAsync("predictions", 2);
        var shadowTopic = await services.CreateTopicAsync("shadow", 2);
        var labelsTopic = await services.CreateTopicAsync("labels", 2);
        var reportsTopic = await services.CreateTopicAsync("evaluation", 1);
        var group = "evaluate-kill-" + Guid.NewGuid().ToString("N")[..8];
        var settings = new Dictionary<string, string>
        {
            ["Kafka:BootstrapServers"] = services.BootstrapServers, ["SchemaRegistry:Url"] = services.SchemaRegistryUrl, ["Redis:Configuration"] = services.Redis,
            ["Kafka:OutputTopic"] = predictionsTopic, ["Kafka:ShadowTopic"] = shadowTopic, ["Kafka:Consumer:FetchWaitMaxMs"] = "10",
            // A killed member leaves the group after the session timeout: short, so the next run is assigned soon.
            ["Kafka:Consumer:SessionTimeoutMs"] = "6000", ["Kafka:Consumer:HeartbeatIntervalMs"] = "1000",
            ["Kafka:Consumer:AutoCommitIntervalMs"] = "200",
            ["Evaluation:LabelsTopic"] = labelsTopic, ["Evaluation:Topic"] = reportsTopic, ["Evaluation:GroupId"] = group,
            ["Evaluation:HorizonMs"] = HorizonMs.ToString(CultureInfo.InvariantCulture), ["Evaluation:WindowMs"] = WindowMs.ToString(CultureInfo.InvariantCulture),
            ["Evaluation:ReportIntervalMs"] = "200", ["Http:Port"] = "0",
        };

        // The stream: a champion's prediction for 97 % of the events, a shadow's for every other one, 1 % redelivered;
        // labels for 90 % (delays up to 20 minutes of event time, 1 % twice), and labels of 100 events never predicted.
        var random = new Random(1903);
        var start = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() / WindowMs * WindowMs;
        var run = group;
        var predictions = new List<Prediction>();
        var labels = new List<GroundTruth>();
        for (var i = 0; i < Events; i++)
        {
            var (id, entity, t) = ($"{run}-e{i}", $"card-{i % 700}", start + i * 1_000L);
            var y = random.NextDouble() < 0.08;
            var signal = y ? 0.25 : 0;
            if (random.NextDouble() < 0.97) predictions.Add(new Prediction(id, entity, "gbm@1", "champion", Math.Clamp(signal + random.NextDouble() * 0.75, 0, 1), t));
            if (i % 2 == 0) predictions.Add(new Prediction(id, entity, "logreg@3", "shadow", Math.Clamp(signal / 2 + random.NextDouble() * 0.8, 0, 1), t));
            if (random.NextDouble() < 0.9) labels.Add(new GroundTruth(id, entity, y, t + random.Next(0, 1_200_000), t));
        }
        foreach (var p in predictions.Where((_, k) => k % 100 == 7).ToList()) predictions.Add(p);
        foreach (var l in labels.Where((_, k) => k % 100 == 3).ToList()) labels.Add(l);
        for (var i = 0; i < 100; i++) labels.Add(new GroundTruth($"{run}-never{i}", $"card-{i}", i % 10 == 0, start + i * 1_000L + 5_000, start + i * 1_000L));
        await ProduceAsync(predictionsTopic, shadowTopic, labelsTopic, predictions, labels);

        var random2 = new Random(7);
        var total = predictions.Count + labels.Count;
        var committedAtKill = new List<long>();
        var clock = Stopwatch.StartNew();
        for (var k = 0; k < 3; k++)
        {
            using var child = StartEvaluate(settings);
            await child.WaitAssignedAsync(ProcessorHarness.AssignTimeout);
            // Once this run has committed something beyond the last one, at a random moment within the next half second.
            var before = committedAtKill.LastOrDefault();
            var progress = Stopwatch.StartNew();
            while (total - await BehindAsync(group, [predictionsTopic, shadowTopic, labelsTopic]) <= before && progress.Elapsed < TimeSpan.FromSeconds(30))
                await Task.Delay(50);
            await Task.Delay(random2.Next(500));
            child.Kill();
            Assert.True(await child.WaitForExitAsync(TimeSpan.FromSeconds(10)), "SIGKILL did not end the process");
            committedAtKill.Add(total - await BehindAsync(group, [predictionsTopic, shadowTopic, labelsTopic]));
        }
        output.WriteLine($"committed before each kill: {string.Join(", ", committedAtKill)} of {total} records ({clock.Elapsed.TotalSeconds:0.0} s)");
        // Mid-stream: every kill came before everything was read.
        Assert.All(committedAtKill, c => Assert.True(c < total, $"a kill came after everything was read ({string.Join(", ", committedAtKill)})"));

        var reports = new Dictionary<(string Model, string Arm, long Start), List<GenericRecord>>();
        // The rest by a group of two (each takes a partition of every topic; the windows, the join and the clock are shared in Redis).
        using (var last = StartEvaluate(settings))
        using (var peer = StartEvaluate(settings))
        {
            await last.WaitAssignedAsync(ProcessorHarness.AssignTimeout);
            await peer.WaitAssignedAsync(ProcessorHarness.AssignTimeout);
            // Everything read and committed, then one prediction per partition three days on: every window of the stream is final.
            await WaitCommittedAsync(group, [predictionsTopic, shadowTopic, labelsTopic], last);
            output.WriteLine($"all committed after {clock.Elapsed.TotalSeconds:0.0} s");
            await ProduceClockAdvanceAsync(predictionsTopic, start + 3 * 86_400_000L);
            var expectedWindows = predictions.Select(p => (p.Model, p.Arm, EvaluationWindows.WindowStart(p.EventTimeMs, WindowMs))).ToHashSet();
            await ReadReportsAsync(reportsTopic, reports, expectedWindows.Count, last);
            output.WriteLine($"all windows reported after {clock.Elapsed.TotalSeconds:0.0} s; final windows reported by each member: " +
                             $"{last.Lines.Count(l => l.Contains("(final,", StringComparison.Ordinal))}, {peer.Lines.Count(l => l.Contains("(final,", StringComparison.Ordinal))}");
            foreach (var child in new[] { last, peer })
            {
                child.Terminate();
                Assert.True(await child.WaitForExitAsync(TimeSpan.FromSeconds(60)), "SIGTERM did not stop evaluate");
                Assert.True(child.ExitCode == 0, $"exit code {child.ExitCode}:{Environment.NewLine}{child.Tail()}");
            }
        }

        // The reference: first label per event, every predicted (model, event) once.
        var labelOf = new Dictionary<string, bool>();
        foreach (var l in labels) labelOf.TryAdd(l.EventId, l.Label);
        var reference = predictions.DistinctBy(p => (p.EventId, p.Model))
            .GroupBy(p => (p.Model, p.Arm, EvaluationWindows.WindowStart(p.EventTimeMs, WindowMs)))
            .ToDictionary(g => g.Key, g => g.ToList());
        long expectedLabelled = 0, reportedLabelled = 0, repeatedReports = 0;
        foreach (var (key, window) in reference)
        {
            Assert.True(reports.TryGetValue(key, out var versions), $"no report for {key}");
            var report = versions[^1];
            repeatedReports += versions.Count - 1;
            // A window reported again (its reporter killed between publishing and marking it final) says the same.
            Assert.All(versions, v => Assert.Equal((long)report["labelled"], (long)v["labelled"]));
            var labelled = window.Where(p => labelOf.ContainsKey(p.EventId)).ToList();
            var direct = BinaryEvaluation.Compute(labelled.Select(p => p.Score).ToArray(), labelled.Select(p => labelOf[p.EventId]).ToArray());
            Assert.Equal((long)window.Count, (long)report["predicted"]);
            Assert.Equal((long)labelled.Count, (long)report["labelled"]);
            Assert.Equal((long)direct.Positives, (long)report["positives"]);
            if (double.IsFinite(direct.Auc)) Assert.Equal(direct.Auc, (double)report["auc"], 1e-9);
            if (double.IsFinite(direct.Brier)) Assert.Equal(direct.Brier, (double)report["brier"], 1e-9);
            expectedLabelled += labelled.Count;
            reportedLabelled += (long)report["labelled"];
        }
        output.WriteLine($"{predictions.Count:N0} predictions ({predictions.Count - reference.Values.Sum(w => w.Count)} redelivered), {labels.Count:N0} labels " +
                         $"(100 for events never predicted), 3 SIGKILLs: {reference.Count} final windows reported, {reportedLabelled:N0} labelled predictions " +
                         $"(reference {expectedLabelled:N0}), {repeatedReports} window(s) reported twice");
        Assert.Equal(expectedLabelled, reportedLabelled);
    }

    private static DevServices.Processes.ChildProcess StartEvaluate(IReadOnlyDictionary<string, string> settings) =>
        DevServices.Processes.ChildProcess.Start(TestCli.Command, ["evaluate", .. DevServices.Processes.ChildProcess.SetArguments(settings)], new DevServices.Processes.ChildProcessOptions
        {
            Name = "evaluate", KeepLines = int.MaxValue, DropEnvironment = TestCli.IsSettingsVariable,
            Environment = new Dictionary<string, string> { ["DOTNET_gcServer"] = "0" },
        });

    private async Task ProduceAsync(string predictionsTopic, string shadowTopic, string labelsTopic, List<Prediction> predictions, List<GroundTruth> labels)
    {
        using var registry = services.RegistryClient();
        var predictionId = await registry.RegisterAsync($"{predictionsTopic}-value", Infrastructure.Avro.PredictionWriter.Schema, CancellationToken.None);
        var shadowId = await registry.RegisterAsync($"{shadowTopic}-value", Infrastructure.Avro.PredictionWriter.Schema, CancellationToken.None);
        var labelRecords = new LabelRecords(await registry.RegisterAsync($"{labelsTopic}-value", LabelRecords.Schema, CancellationToken.None));
        using var producer = new ProducerBuilder<byte[], byte[]>(new ProducerConfig { BootstrapServers = services.BootstrapServers, EnableIdempotence = true, LingerMs = 5 }).Build();
        var failed = 0;
        void Send(string topic, string key, byte[] value) =>
            producer.Produce(topic, new Message<byte[], byte[]> { Key = System.Text.Encoding.UTF8.GetBytes(key), Value = value }, r => { if (r.Error.IsError) Interlocked.Increment(ref failed); });
        // In arrival order: a prediction at its event time, a label at its label time.
        var arrivals = predictions.Select(p => (At: p.EventTimeMs, Send: (Action)(() =>
                Send(p.Arm == "shadow" ? shadowTopic : predictionsTopic, p.Entity, EncodePrediction(p, p.Arm == "shadow" ? shadowId : predictionId)))))
            .Concat(labels.Select(l => (At: l.LabelTimeMs, Send: (Action)(() => Send(labelsTopic, l.EntityKey, labelRecords.Encode(l))))))
            .OrderBy(a => a.At);
        foreach (var a in arrivals) a.Send();
        producer.Flush(TimeSpan.FromSeconds(30));
        Assert.Equal(0, failed);
    }

    private static byte[] EncodePrediction(Prediction p, int schemaId)
    {
        var schema = (global::Avro.RecordSchema)Infrastructure.Avro.PredictionWriter.Schema;
        var r = new GenericRecord(schema);
        var at = p.Model.IndexOf('@');
        r.Add("event_id", p.EventId);
        r.Add("entity_key", p.Entity);
        r.Add("model_name", p.Model[..at]);
        r.Add("model_version", p.Model[(at + 1)..]);
        r.Add("score", p.Score);
        r.Add("scores", new object[] { 1 - p.Score, p.Score });
        r.Add("label", null);
        r.Add("features_defaulted", 0);
        r.Add("event_time", DateTimeOffset.FromUnixTimeMilliseconds(p.EventTimeMs).UtcDateTime);
        r.Add("scored_at", DateTimeOffset.FromUnixTimeMilliseconds(p.EventTimeMs + 5).UtcDateTime);
        r.Add("source_partition", 0);
        r.Add("source_offset", 0L);
        r.Add("degraded", null);
        r.Add("arm", p.Arm);
        r.Add("deployment_version", 1L);
        return Infrastructure.Avro.ConfluentWireFormat.Frame(new GenericDatumWriter<GenericRecord>(schema), r, schemaId);
    }

    private async Task ProduceClockAdvanceAsync(string topic, long eventTimeMs)
    {
        using var registry = services.RegistryClient();
        var id = await registry.RegisterAsync($"{topic}-value", Infrastructure.Avro.PredictionWriter.Schema, CancellationToken.None);
        using var producer = new ProducerBuilder<byte[], byte[]>(new ProducerConfig { BootstrapServers = services.BootstrapServers }).Build();
        for (var partition = 0; partition < 2; partition++)
        {
            var p = new Prediction($"clock-{partition}", "clock", "gbm@1", "champion", 0.5, eventTimeMs);
            await producer.ProduceAsync(new TopicPartition(topic, partition), new Message<byte[], byte[]> { Key = [], Value = EncodePrediction(p, id) });
        }
    }

    /// <summary>Records of <paramref name="topics"/> (two partitions each) past the group's committed offsets.</summary>
    private Task<long> BehindAsync(string group, string[] topics)
    {
        using var consumer = new ConsumerBuilder<byte[], byte[]>(new ConsumerConfig { BootstrapServers = services.BootstrapServers, GroupId = group, EnableAutoCommit = false }).Build();
        var partitions = topics.SelectMany(t => Enumerable.Range(0, 2).Select(p => new TopicPartition(t, p))).ToList();
        var committed = consumer.Committed(partitions, TimeSpan.FromSeconds(10));
        return Task.FromResult(committed.Sum(c => Math.Max(0, consumer.QueryWatermarkOffsets(c.TopicPartition, TimeSpan.FromSeconds(10)).High.Value - Math.Max(0, c.Offset.Value))));
    }

    /// <summary>Until the group's committed offsets reach the high watermarks of every partition of <paramref name="topics"/>.</summary>
    private async Task WaitCommittedAsync(string group, string[] topics, DevServices.Processes.ChildProcess child)
    {
        var limit = Stopwatch.StartNew();
        while (true)
        {
            Assert.False(child.HasExited, $"evaluate ended:{Environment.NewLine}{child.Tail()}");
            var behind = await BehindAsync(group, topics);
            if (behind == 0) return;
            Assert.True(limit.Elapsed < TimeSpan.FromMinutes(3), $"{behind} records still not committed after 3 minutes:{Environment.NewLine}{child.Tail()}");
            await Task.Delay(500);
        }
    }

    private async Task ReadReportsAsync(string topic, Dictionary<(string, string, long), List<GenericRecord>> reports, int windows, DevServices.Processes.ChildProcess child)
    {
        using var registry = services.RegistryClient();
        using var consumer = new ConsumerBuilder<byte[], byte[]>(new ConsumerConfig
        {
            BootstrapServers = services.BootstrapServers, GroupId = "reports-" + Guid.NewGuid().ToString("N"), AutoOffsetReset = AutoOffsetReset.Earliest,
        }).Build();
        consumer.Subscribe(topic);
        var limit = Stopwatch.StartNew();
        while (reports.Count < windows)
        {
            Assert.True(limit.Elapsed < TimeSpan.FromMinutes(2), $"{reports.Count} of {windows} windows reported after 2 minutes:{Environment.NewLine}{child.Tail()}");
            var r = consumer.Consume(TimeSpan.FromMilliseconds(200));
            if (r is null) continue;
            Assert.Equal(WireHeaderStatus.Ok, ConfluentWireFormat.TryReadHeader(r.Message.Value, out var id));
            var writer = await registry.GetSchemaAsync(id, CancellationToken.None);
            using var stream = new MemoryStream(r.Message.Value, ConfluentWireFormat.HeaderSize, r.Message.Value.Length - ConfluentWireFormat.HeaderSize);
            var record = new GenericDatumReader<GenericRecord>(writer, EvaluationTelemetry.Schema).Read(null!, new global::Avro.IO.BinaryDecoder(stream));
            if (((GenericEnum)record["kind"]).Value != "EVENT_TIME") continue;
            var start = new DateTimeOffset(DateTime.SpecifyKind((DateTime)record["window_start"], DateTimeKind.Utc)).ToUnixTimeMilliseconds();
            var key = ((string)record["model"], (string)record["arm"], start);
            if (!reports.TryGetValue(key, out var list)) reports[key] = list = [];
            list.Add(record);
        }
        consumer.Close();
    }
}
